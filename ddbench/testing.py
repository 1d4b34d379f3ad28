"""A contract checker a plugin author calls from their own tests.

.. code-block:: python

    from ddbench.testing import check_distiller
    from my_plugin import MyDistiller

    def test_my_distiller_keeps_the_contract():
        check_distiller(MyDistiller(), options={"iterations": 3}, bad_options={"iterations": -1})

:func:`check_distiller` checks, in about a second on a CPU, that the method

1. is registered under its name (when installed: its entry point in the ``ddbench`` group),
2. has options that round-trip through the command line's ``KEY=VALUE`` form,
3. distils a tiny dataset made in memory (3 classes, 16 px colour images, an untrained
   BatchNorm observer) into a valid set: finite float32 images of the dataset's shape, int64
   labels with exactly IPC images per class, a known soft-label kind,
4. gives bit-identical images for the same seed,
5. refuses each bad option value by raising ``ValueError`` naming the option.

It raises ``AssertionError`` naming the first broken clause; it returns the distilled set.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ddbench.contracts import DistilledSet, DistillTask, Normalization, options_to_dict
from ddbench.data.base import Dataset, TensorSource
from ddbench.plugin_base import Distiller

CLASSES, SIZE, CHANNELS = 3, 16, 3
OBSERVER = "convnet2-bn"


def tiny_dataset(per_class: int = 24, seed: int = 0) -> Dataset:
    """3 classes of 16 px colour images that differ in mean colour (plus noise), made in memory."""
    generator = torch.Generator().manual_seed(seed)
    norm = Normalization((0.5,) * CHANNELS, (0.25,) * CHANNELS)

    def split(count: int) -> TensorSource:
        labels = torch.arange(CLASSES).repeat_interleave(count)
        base = (labels.float() + 1) / (CLASSES + 1)
        noise = 0.1 * torch.randn(len(labels), CHANNELS, SIZE, SIZE, generator=generator)
        return TensorSource((base.view(-1, 1, 1, 1) + noise).clamp(0, 1), labels, norm, SIZE)

    return Dataset("contract-check", split(per_class), split(4), tuple(f"class{i}" for i in range(CLASSES)), CHANNELS,
                   SIZE, norm, source="ddbench.testing")


def _options(distiller: Any, values: dict[str, Any]) -> Any:
    return dataclasses.replace(distiller.options_class(), **values) if values else distiller.options_class()


def _distill(distiller: Any, dataset: Dataset, options: Any, ipc: int, seed: int) -> DistilledSet:
    from ddbench.host.registry import get_architecture

    arch = get_architecture(OBSERVER)
    torch.manual_seed(0)
    observer = arch.build(dataset.channels, dataset.num_classes, dataset.image_size).eval()
    for parameter in observer.parameters():
        parameter.requires_grad_(False)
    distiller.check_observer(arch)
    distiller.check_setup(options, dataset.image_shape, ipc)
    task = DistillTask(dataset=dataset, observer=observer, observer_arch=arch, ipc=ipc, device=torch.device("cpu"),
                       seed=seed, options=options)
    total = distiller.total_work(task)
    assert isinstance(total, int) and total >= 0, f"total_work returned {total!r}: a number of progress units"
    return distiller.distill(task)


def check_distiller(distiller: Any, *, options: dict[str, Any] | None = None,
                    bad_options: dict[str, Any] | None = None, ipc: int = 2, installed: bool = True,
                    seed: int = 0) -> DistilledSet:
    """Check ``distiller`` against the plugin contract (see the module docstring).

    ``options``: option values for the check's distillations (e.g. fewer iterations);
    ``bad_options``: ``{option: value}`` pairs the options class must refuse; ``installed``:
    whether the method's package is installed, so its entry point can be checked.
    """
    from ddbench.settings.config_file import option_text
    from ddbench.settings.options import apply_overrides
    from ddbench.runner import RunError, check_distilled

    assert isinstance(distiller, Distiller), \
        f"{type(distiller).__name__} must subclass ddbench.api.Distiller (the registry refuses it otherwise)"
    name = getattr(distiller, "name", None)
    assert isinstance(name, str) and name, "a distiller needs a non-empty string name"
    assert dataclasses.is_dataclass(getattr(distiller, "options_class", None)), \
        f"{name}: options_class must be a dataclass"
    if installed:
        from ddbench.host import registry

        found = registry.get_distiller(name)
        assert type(found) is type(distiller), f"{name}: registered as {type(found).__name__}, not {type(distiller).__name__}"

    chosen = _options(distiller, options or {})
    as_text = [f"{key}={option_text(value)}" for key, value in options_to_dict(chosen).items()]
    again = apply_overrides(distiller.options_class(), as_text, what=f"method {name!r}")
    assert again == chosen, f"{name}: options do not round-trip through KEY=VALUE: {chosen} became {again}"

    dataset = tiny_dataset()
    first = _distill(distiller, dataset, chosen, ipc, seed)
    try:
        check_distilled(first, name, dataset, ipc)
    except RunError as exc:
        raise AssertionError(str(exc)) from None
    second = _distill(distiller, dataset, chosen, ipc, seed)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels), \
        f"{name}: two distillations with seed {seed} differ: derive every random draw from task.seed"

    for key, value in (bad_options or {}).items():
        try:
            _options(distiller, {key: value})
        except ValueError as exc:
            assert key in str(exc), f"{name}: refusing {key}={value!r}, the message does not name {key!r}: {exc}"
        else:
            raise AssertionError(f"{name}: option {key}={value!r} was accepted; refuse it in __post_init__")
    return first

