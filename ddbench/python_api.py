"""The Python API: ``ddbench.run`` and ``ddbench.evaluate`` return the results dict that
``ddbench run`` / ``ddbench eval`` write to ``results.json``.

.. code-block:: python

    import ddbench
    from lic_plugin.options import LICOptions

    results = ddbench.run("lic", baselines=["sre2l"], dataset="digits", ipc=10,
                          options={"lic": LICOptions(lr=0.01)}, budget={"epochs": 300})
    print(results["methods"]["lic"]["accuracy"])      # {'mean': ..., 'std': ..., 'per_seed': [...]}

Options are typed: a method's options dataclass (or a dict of its fields) per method, the
evaluator's options dataclass or dict, a budget preset name plus a dict of fields (or an
``EvalBudget``). Defaults are the command line's. Like the command line, a call tunes glibc's
``malloc`` for this process to keep freed blocks for reuse (:mod:`ddbench.runtime.host_allocator`).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Sequence


def _assignments(values: Any) -> list[str]:
    """``KEY=VALUE`` strings from an options dataclass or a dict (None values left out)."""
    from ddbench.settings.config_file import option_text

    if values is None:
        return []
    if dataclasses.is_dataclass(values) and not isinstance(values, type):
        values = {f.name: getattr(values, f.name) for f in dataclasses.fields(values)}
    if not isinstance(values, dict):
        raise TypeError(f"options must be a dataclass instance or a dict, got {type(values).__name__}")
    return [f"{key}={option_text(value)}" for key, value in values.items() if value is not None]


def _budget(budget: Any, fields: dict[str, Any] | None):
    from ddbench.settings.budget import EvalBudget, resolve_budget

    if isinstance(budget, EvalBudget):
        return budget if not fields else dataclasses.replace(budget, **fields)
    if isinstance(budget, dict):
        budget, fields = "quick", {**budget, **(fields or {})}
    return resolve_budget(budget, _assignments(fields))


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]


def _config(methods: list[str], *, dataset: str, data_root: str | None, ipc: int, arch: str | None, verifier: str | None,
            evaluator: str, seeds: Any, budget: Any, budget_fields: dict | None, options: dict | None,
            eval_options: Any, out: str | Path | None, cache_dir: str | Path | None, device: str, **fields: Any):
    from ddbench.runner import RunConfig

    method_options = {name: _assignments(values) for name, values in (options or {}).items()}
    return RunConfig(methods=methods, dataset=dataset, data_root=data_root, ipc=ipc, arch=arch, verifier=verifier,
                     evaluator=evaluator, seeds=_seeds(seeds), budget=_budget(budget, budget_fields),
                     method_options=method_options, evaluator_options=_assignments(eval_options),
                     out=None if out is None else str(out), cache_dir=None if cache_dir is None else str(cache_dir),
                     device=device, command="ddbench.run (Python API)", **fields)


def _execute(config: Any, progress: bool) -> dict:
    """Run ``config`` as the command line does: glibc's malloc keeps freed blocks for reuse
    (:mod:`ddbench.runtime.host_allocator`), progress shown only if asked."""
    from ddbench.reporting.console import ConsoleUI
    from ddbench.runner import run as run_config
    from ddbench.runtime.host_allocator import keep_freed_host_memory

    keep_freed_host_memory()
    with ConsoleUI(quiet=not progress) as ui:
        return run_config(config, ui)


def run(method: str, baselines: Sequence[str] = (), *, dataset: str = "digits", data_root: str | None = None,
        ipc: int = 10, arch: str | None = None, verifier: str | None = None, evaluator: str = "relabel",
        seeds: int | Sequence[int] = 3, budget: Any = "quick", budget_fields: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None, eval_options: Any = None, out: str | Path | None = None,
        cache_dir: str | Path | None = None, device: str = "auto", progress: bool = False, **fields: Any) -> dict:
    """Distil with ``method`` and each baseline on one observer, evaluate, and return the results
    dict (also written to ``<out>/results.json``). ``fields``: any other ``RunConfig`` field
    (``image_size``, ``validation_per_class``, ``distill_seeds``, ``compare_random``, ...)."""
    config = _config([method, *baselines], dataset=dataset, data_root=data_root, ipc=ipc, arch=arch, verifier=verifier,
                     evaluator=evaluator, seeds=seeds, budget=budget, budget_fields=budget_fields, options=options,
                     eval_options=eval_options, out=out, cache_dir=cache_dir, device=device, **fields)
    return _execute(config, progress)


def evaluate(sets: Any, *, dataset: str = "digits", data_root: str | None = None, labels: Any = None,
             arch: str | None = None, verifier: str | None = None, evaluator: str = "relabel",
             seeds: int | Sequence[int] = 3, budget: Any = "quick", budget_fields: dict[str, Any] | None = None,
             eval_options: Any = None, out: str | Path | None = None, cache_dir: str | Path | None = None,
             device: str = "auto", progress: bool = False, **fields: Any) -> dict:
    """Evaluate distilled sets as they are and return the results dict. ``sets``: a path, a list
    of paths (any format ``ddbench eval`` reads), or an images tensor ``[K, C, H, W]`` in the
    dataset's normalised space with ``labels`` ``[K]``."""
    import torch

    if isinstance(sets, torch.Tensor):
        if labels is None:
            raise ValueError("evaluate(images, labels=...): a tensor of images needs its labels")
        from ddbench.store.io import save_tensors

        folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="ddbench-evaluate-"))
        path = folder / "inputs" / "images.safetensors"
        save_tensors(path, {"images": sets.detach().float().cpu().contiguous(),
                            "labels": torch.as_tensor(labels, dtype=torch.int64).cpu()}, {})
        sets, out = [str(path)], folder
    paths = [str(sets)] if isinstance(sets, (str, Path)) else [str(p) for p in sets]
    ipc = fields.pop("ipc", 1)
    config = _config([], dataset=dataset, data_root=data_root, ipc=ipc, arch=arch, verifier=verifier,
                     evaluator=evaluator, seeds=seeds, budget=budget, budget_fields=budget_fields, options=None,
                     eval_options=eval_options, out=out, cache_dir=cache_dir, device=device, saved_sets=paths, **fields)
    return _execute(config, progress)
