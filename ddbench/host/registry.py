"""Look-ups over what the plugins registered, with errors that list what is installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ddbench.host.plugins import ENTRY_POINT_GROUP, PluginInfo, entry_point_names, load_plugins, plugin_info, report_error
from ddbench.plugin_base import Distiller, Evaluator

KINDS = {
    # kind: (hook name, what a user calls one of them)
    "distillers": ("register_distillers", "method"),
    "evaluators": ("register_evaluators", "evaluator"),
    "datasets": ("register_datasets", "dataset"),
    "architectures": ("register_architectures", "architecture"),
}


# what a registered item of each kind must be an instance of (optional abilities are methods of these)
BASES: dict[str, type] = {"distillers": Distiller, "evaluators": Evaluator}


class UnknownNameError(LookupError):
    """A name that no installed plugin registered."""


class DuplicateNameError(ValueError):
    """Two plugins registered the same name."""


@dataclass(frozen=True)
class Registered:
    item: Any
    plugin: PluginInfo


_COLLECTED: dict[tuple, dict[str, Registered]] = {}


def registered(kind: str) -> dict[str, Registered]:
    """Everything of ``kind`` the loaded plugins register, by name, in registration order.

    Collected once per plugin manager and set of hook implementations: a look-up does not run
    the plugins' hooks again (registering another plugin collects afresh)."""
    hook_name, noun = KINDS[kind]
    pm = load_plugins()
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    key = (id(pm), kind, tuple(id(impl.function) for impl in impls))
    if key in _COLLECTED:
        return dict(_COLLECTED[key])
    found: dict[str, Registered] = {}
    # hookimpls come last-registered first; reverse so built-ins list first.
    for impl in reversed(impls):
        info = plugin_info(impl.plugin)

        def register(item: Any, _info: PluginInfo = info) -> None:
            name = getattr(item, "name", None)
            if not isinstance(name, str) or not name:
                raise TypeError(f"plugin {_info.name!r} registered a {noun} without a name: {item!r}")
            if name in found:
                raise DuplicateNameError(
                    f"{noun} {name!r} is registered twice: by {found[name].plugin.name!r} and by {_info.name!r}"
                )
            base = BASES.get(kind)
            if base is not None and not isinstance(item, base):  # skipped, named; the rest still load
                report_error(_info.name, f"{noun} {name!r} is a {type(item).__name__}, which does not subclass "
                                         f"ddbench.api.{base.__name__}, so it is not registered: declare it as "
                                         f"class {type(item).__name__}(ddbench.api.{base.__name__}) (docs/plugins.md)")
                return
            found[name] = Registered(item, _info)

        impl.function(register=register)
    _COLLECTED[key] = found
    return dict(found)


def get(kind: str, name: str) -> Any:
    """The registered item called ``name``, or an error that lists the installed ones."""
    items = registered(kind)
    if name not in items:
        noun = KINDS[kind][1]
        import difflib

        installed = ", ".join(sorted(items)) or "(none)"
        close = difflib.get_close_matches(str(name), sorted(items), n=1, cutoff=0.6)
        guess = f" Did you mean {close[0]!r}?" if close else ""
        uninstalled = "" if entry_point_names() else (
            f" No package with {ENTRY_POINT_GROUP!r} entry points is installed, so only the built-ins load: "
            f"ddbench's own methods (lic, sre2l, squeeze, rded, dm) come with installing it (pip install -e . "
            f"in a checkout), not with a checkout on PYTHONPATH.")
        raise UnknownNameError(
            f"unknown {noun} {name!r}.{guess} Installed {kind}: {installed}. "
            f"Run 'ddbench plugins' to see where each comes from.{uninstalled}"
        )
    return items[name].item


def get_distiller(name: str) -> Any:
    return get("distillers", name)


def get_evaluator(name: str) -> Any:
    return get("evaluators", name)


def get_dataset(name: str) -> Any:
    return get("datasets", name)


def get_architecture(name: str) -> Any:
    return get("architectures", name)


def default_arch(dataset: str) -> str | None:
    """The observer architecture a run on ``dataset`` uses when none is named (its spec's
    ``default_arch``); None for a dataset that is not installed, which the run's plan then
    refuses by name, listing the installed ones."""
    found = registered("datasets").get(dataset)
    return found.item.default_arch if found else None
