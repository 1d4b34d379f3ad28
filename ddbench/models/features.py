"""Read a model's intermediate features by ``named_modules`` name.

A forward hook on the named submodule captures its output. By default the hook then
raises a private exception that stops the forward pass, so the layers after the chosen
one are never computed (a real saving when LIC reads shallow features many times).
The captured output keeps its autograd graph, so gradients flow back to the input.
Hooks are always removed, also when the forward fails.
"""

from __future__ import annotations

import torch
from torch import nn

# The memory format methods give an observer's inputs: channels-last runs convolutions faster on
# the CPU (oneDNN) and the GPU (cuDNN); ``benchmarks/test_channels_last.py`` measures it.
OBSERVER_MEMORY_FORMAT = torch.channels_last


class _StopForward(Exception):
    """Raised from the hook to skip the rest of the forward pass; never escapes this module."""


def layer_names(model: nn.Module) -> list[str]:
    """The names ``read_features`` accepts for ``model`` (the root, named ``""``, left out)."""
    return [name for name, _ in model.named_modules() if name]


def _named_modules(model: nn.Module, names: list[str]) -> dict[str, nn.Module]:
    """``model``'s submodules called ``names`` (the first time each is named), or a ValueError
    that lists the valid names."""
    modules = dict(model.named_modules())
    unknown = [name for name in names if not name or name not in modules]
    if unknown or not names:
        raise ValueError(f"{type(model).__name__} has no layer named {unknown[0] if unknown else ''!r}; "
                         f"valid names: {', '.join(layer_names(model))}")
    return {name: modules[name] for name in names}


def _capture(model: nn.Module, modules: dict[str, nn.Module], x: torch.Tensor,
             stop_early: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """One forward of ``x`` through ``model`` with a hook on each of ``modules``: the first output
    of each (by name) and the model's output, ``None`` when ``stop_early`` ended the pass once
    every module had run. The hooks are removed, also when the forward fails."""
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            captured.setdefault(name, output)
            if stop_early and len(captured) == len(modules):
                raise _StopForward
        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
    output = None
    try:
        output = model(x)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in modules if name not in captured]
    if missing:
        raise RuntimeError(f"layer {missing[0]!r} of {type(model).__name__} did not run in the forward pass")
    return captured, output


class FeatureReader:
    """Reads the output of ``model``'s submodule ``layer_name``: ``reader(x) -> Tensor``.

    With ``stop_early`` (the default) the forward stops right after that submodule; the
    result is the same as a full forward's. If the submodule runs more than once in a
    forward, its first output is returned.
    """

    def __init__(self, model: nn.Module, layer_name: str, stop_early: bool = True) -> None:
        self.model = model
        self.layer_name = layer_name
        self.module = _named_modules(model, [layer_name])[layer_name]
        self.stop_early = stop_early

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x, self.stop_early)[0]

    def with_output(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the layer's output, the model's output) from one whole forward pass."""
        return self._forward(x, stop_early=False)

    def _forward(self, x: torch.Tensor, stop_early: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        captured, output = _capture(self.model, {self.layer_name: self.module}, x, stop_early)
        return captured[self.layer_name], output


def read_features(model: nn.Module, layer_name: str, x: torch.Tensor, stop_early: bool = True) -> torch.Tensor:
    """The output of ``model``'s submodule ``layer_name`` for input ``x`` (differentiable)."""
    return FeatureReader(model, layer_name, stop_early=stop_early)(x)


def read_layers(model: nn.Module, names: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of several submodules of ``model`` for input ``x`` from ONE forward pass,
    in the order of ``names`` (differentiable); the forward stops once all have run."""
    captured, _ = _capture(model, _named_modules(model, names), x, stop_early=True)
    return [captured[name] for name in names]


@torch.no_grad()
def layer_output_sizes(model: nn.Module, x: torch.Tensor, stop_at: str | None = None) -> list[int]:
    """Bytes of every leaf layer's output in one forward of ``x`` (up to ``stop_at`` when given):
    what a backward pass would keep, for memory estimates."""
    sizes: list[int] = []
    hooks = [module.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size())
                                          if isinstance(o, torch.Tensor) else None)
             for name, module in model.named_modules() if name and not list(module.children())]
    try:
        if stop_at:
            read_features(model, stop_at, x, stop_early=True)
        else:
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes
