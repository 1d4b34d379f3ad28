"""The ddbench hook specifications.

Every hook receives a ``register`` callable and returns nothing: call ``register(spec)``
once for each thing the plugin provides. The host's own datasets, architectures,
evaluators and the ``random`` distiller come in through exactly these hooks.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("ddbench")
hookimpl = pluggy.HookimplMarker("ddbench")


@hookspec
def register_distillers(register):
    """Register distillation methods: ``register(distiller)`` with an instance of a ``ddbench.api.Distiller`` subclass."""


@hookspec
def register_evaluators(register):
    """Register evaluators: ``register(evaluator)`` with an instance of a ``ddbench.api.Evaluator`` subclass."""


@hookspec
def register_datasets(register):
    """Register datasets: ``register(spec)`` with a ``ddbench.contracts.DatasetSpec``."""


@hookspec
def register_architectures(register):
    """Register architectures: ``register(spec)`` with a ``ddbench.contracts.ArchitectureSpec``."""
