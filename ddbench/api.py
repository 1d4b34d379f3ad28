"""The public plugin API: the one module a method plugin imports.

Everything a plugin may use is named here; every other ``ddbench`` module is private to the
host and may change without notice. An import-linter contract (``pyproject.toml``, checked by
``tests/test_import_contracts.py``) keeps the in-tree plugins (``lic_plugin``, ``baselines``) and
the example plugin on this module alone.

What is here:

- registration: :data:`hookimpl` (mark ``register_distillers(register)`` and the other hooks);
- contracts: :class:`DistillTask` (what a method gets), :class:`DistilledSet` (what it
  returns), :class:`ArchitectureSpec`, :class:`Normalization`, and :class:`Distiller`, a base
  class whose optional abilities are documented, overridable methods (the registry refuses a
  distiller that does not subclass it), and :class:`Evaluator`, the same for evaluators;
- errors: :class:`NonFiniteLossError` (a loss turned NaN or infinite: the host names the method
  and the others go on);
- building blocks shared by methods: tiles (:func:`squeeze`, :func:`expand`, :func:`as_tiles`,
  :func:`check_tiles_fit`), DSA augmentation (:class:`DSA`, :data:`DEFAULT_STRATEGY`,
  :func:`parse_strategy`), cutmix's box (:func:`cutmix_box`, :func:`paste_box`, as the relabel
  evaluator mixes), reading an observer's features (:func:`read_features`, :func:`read_layers` for several at once,
  :class:`FeatureReader`, whose ``with_output`` also returns the logits of the same pass,
  :func:`layer_output_sizes`, and :data:`OBSERVER_MEMORY_FORMAT`, the memory format to give an
  observer its inputs in), units of work that resume and shard (:func:`run_units`,
  :func:`unit_generator`, :class:`ImageBatch`, :func:`class_major_batches`; :data:`UNIT_SECONDS`, the
  metadata key of a saved part's seconds), the estimates a
  method's ``plan_stages`` is written with (:func:`stage`, :func:`inference_memory`,
  :func:`layer_output_bytes`, :func:`parameter_bytes`), and registered plugins
  (:func:`registered_names`, :func:`get_architecture`).

Test a plugin with :func:`ddbench.testing.check_distiller`; the guide is ``docs/plugins.md``.
"""

from __future__ import annotations

from ddbench.augment.cutmix import cutmix_box, paste_box
from ddbench.augment.dsa import DEFAULT_STRATEGY, DSA, parse_strategy
from ddbench.contracts import UNIT_SECONDS, ArchitectureSpec, DistilledSet, DistillTask, Normalization, options_to_dict
from ddbench.evaluators.training import NonFiniteLossError
from ddbench.host.hookspecs import hookimpl
from ddbench.models.features import OBSERVER_MEMORY_FORMAT, FeatureReader, layer_output_sizes, read_features, read_layers
from ddbench.store.partials import ImageBatch, class_major_batches, run_units, unit_generator
from ddbench.plugin_base import (Ablation, AblationPoint, AblationSetting, Distiller, Evaluator,
                                 ReferenceFigure)
from ddbench.pipeline.planner import inference_memory, layer_output_bytes, parameter_bytes, stage
from ddbench.tiles import SHRINK_MODES, as_tiles, check_tiles_fit, expand, squeeze

__all__ = [
    "hookimpl", "Distiller", "Evaluator", "DistillTask", "UNIT_SECONDS", "DistilledSet", "ArchitectureSpec", "Normalization", "options_to_dict",
    "NonFiniteLossError", "squeeze", "expand", "as_tiles", "SHRINK_MODES", "check_tiles_fit", "DSA", "DEFAULT_STRATEGY", "parse_strategy",
    "cutmix_box", "paste_box",
    "read_features", "read_layers", "FeatureReader", "layer_output_sizes", "OBSERVER_MEMORY_FORMAT", "run_units", "unit_generator", "ImageBatch", "class_major_batches",
    "registered_names", "get_architecture", "stage", "inference_memory", "layer_output_bytes", "parameter_bytes",
    "Ablation", "AblationPoint", "AblationSetting", "ReferenceFigure",
]


def get_architecture(name: str) -> ArchitectureSpec:
    """A registered architecture by name (``.build(channels, classes, size)`` makes a fresh network)."""
    from ddbench.host import registry

    return registry.get_architecture(name)


def registered_names(kind: str) -> list[str]:
    """The names registered for ``kind`` (``distillers``, ``evaluators``, ``datasets``, ``architectures``)."""
    from ddbench.host import registry

    return sorted(registry.registered(kind))
