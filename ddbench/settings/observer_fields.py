"""What a command's settings (a RunConfig, the CLI's arguments, a bench worker's spec) say about
its observer: the recipe fields they override (None: the dataset's default, see
:func:`ddbench.observer.default_recipe`), by setting name, and the rest. Every command reads them
through here, so a new recipe setting is one entry of ``RECIPE_SETTINGS`` (and its flag)."""

from __future__ import annotations

RECIPE_SETTINGS = {"epochs": "observer_epochs", "shift": "observer_shift", "low_res": "observer_low_res"}
OBSERVER_SETTINGS = ("observer_seed", *RECIPE_SETTINGS.values(), "observer_checkpoint", "cache_dir")


def observer_settings(source) -> dict[str, object]:
    """``source``'s observer settings (every name in ``OBSERVER_SETTINGS``), to pass on as keywords."""
    return {name: getattr(source, name) for name in OBSERVER_SETTINGS}


def recipe_settings(source) -> dict[str, object]:
    """``source``'s settings that override recipe fields (the names in ``RECIPE_SETTINGS``), as keywords."""
    return {name: getattr(source, name) for name in RECIPE_SETTINGS.values()}


def recipe_overrides(settings) -> dict[str, object]:
    """The recipe fields ``settings`` override (None: the dataset's default), for :func:`ddbench.observer.run_recipe`."""
    return {field: getattr(settings, name) for field, name in RECIPE_SETTINGS.items()}
