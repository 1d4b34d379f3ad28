"""The plugin manager: default plugins, then the ``ddbench`` entry points, loaded once.

``DDBENCH_LOAD_PLUGINS`` restricts which external plugins load: a comma-separated list of
entry-point names (empty: none). A plugin that fails to import is recorded by name in
``load_errors()`` and the others still load.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from importlib import metadata

import pluggy

from ddbench.host import hookspecs

ENTRY_POINT_GROUP = "ddbench"
LOAD_PLUGINS_ENV = "DDBENCH_LOAD_PLUGINS"

DEFAULT_PLUGINS = (
    "ddbench.default_plugins.datasets",
    "ddbench.default_plugins.architectures",
    "ddbench.default_plugins.evaluators",
    "ddbench.default_plugins.random_distiller",
)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    origin: str  # "builtin" or the distribution name


@dataclass(frozen=True)
class PluginLoadError:
    name: str
    error: str


pm = pluggy.PluginManager("ddbench")
pm.add_hookspecs(hookspecs)
_loaded = False
_infos: dict[object, PluginInfo] = {}
_errors: list[PluginLoadError] = []


def _allowed_names() -> set[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def entry_point_names() -> list[str]:
    """The names of every installed ``ddbench`` entry point, loaded or not."""
    return [entry_point.name for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP)]


def load_plugins() -> pluggy.PluginManager:
    """Register the default plugins and the entry points once; later calls are free."""
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    from ddbench.version import __version__

    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        _infos[module] = PluginInfo(module_name.rsplit(".", 1)[-1], __version__, "builtin")

    allowed = _allowed_names()
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and entry_point.name not in allowed:
            continue
        if pm.get_plugin(entry_point.name) is not None:
            continue
        dist = getattr(entry_point, "dist", None)
        version = dist.version if dist is not None else "unknown"
        origin = dist.metadata["Name"] if dist is not None else entry_point.value
        try:
            plugin = entry_point.load()
            pm.register(plugin, name=entry_point.name)
        except Exception as exc:  # a broken plugin must not take the others down
            _errors.append(PluginLoadError(entry_point.name, f"{type(exc).__name__}: {exc}"))
            print(f"ddbench: plugin {entry_point.name!r} ({origin}) failed to load: {exc}", file=sys.stderr)
            continue
        _infos[plugin] = PluginInfo(entry_point.name, version, origin)
    pm.check_pending()
    return pm


def plugin_info(plugin: object) -> PluginInfo:
    info = _infos.get(plugin)
    if info is None:  # registered directly with pm.register (tests, notebooks)
        name = pm.get_name(plugin) or getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(str(name), "unregistered", "direct")
    return info


def report_error(plugin: str, message: str) -> None:
    """A plugin's fault found after loading (e.g. a registered item of the wrong kind): kept for
    ``load_errors()`` and printed once; the plugin's other items and the other plugins still load."""
    error = PluginLoadError(plugin, message)
    if error not in _errors:
        _errors.append(error)
        print(f"ddbench: plugin {plugin!r}: {message}", file=sys.stderr)


def load_errors() -> list[PluginLoadError]:
    load_plugins()
    return list(_errors)
