"""The plugin host: default plugins through the hooks, check_pending, the load filter,
broken plugins reported by name, duplicate and unknown names."""

from __future__ import annotations

import textwrap

import pluggy
import pytest

from ddbench import hookimpl
from ddbench.api import Distiller
from ddbench.host import registry
from ddbench.host.plugins import pm
from tests.conftest import run_cli

BUILTIN = {
    "distillers": {"random"},
    "evaluators": {"train"},
    "datasets": {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder"},
    "architectures": {"convnet3", "convnet3-bn", "convnet4", "convnet4-bn", "resnet18", "mobilenetv2"},
}


@pytest.mark.parametrize("kind", sorted(BUILTIN))
def test_builtins_register_through_the_hooks(kind):
    found = registry.registered(kind)
    assert BUILTIN[kind] <= set(found)
    for name in BUILTIN[kind]:
        assert found[name].plugin.origin == "builtin"


def test_a_registered_plugin_is_found_and_removed():
    class Toy(Distiller):
        name = "toy-method"
        options_class = object

    class ToyPlugin:
        @hookimpl
        def register_distillers(self, register):
            register(Toy())

    plugin = ToyPlugin()
    pm.register(plugin, name="toy")
    try:
        assert registry.get_distiller("toy-method").name == "toy-method"
        assert registry.registered("distillers")["toy-method"].plugin.name == "toy"
    finally:
        pm.unregister(plugin)
    assert "toy-method" not in registry.registered("distillers")


def test_a_distiller_that_does_not_subclass_the_base_is_named_and_skipped(capsys):
    """Optional abilities are methods of ddbench.api.Distiller, called without probing: a
    duck-typed distiller would break at the first call, so the registry refuses it up front,
    names the plugin and the fix, and still registers everything else."""
    from ddbench.host.plugins import load_errors

    class Duck:
        name = "duck-method"
        options_class = object

        def distill(self, task):
            raise AssertionError("never called")

    class Fine(Distiller):
        name = "fine-method"
        options_class = object

    class DuckPlugin:
        @hookimpl
        def register_distillers(self, register):
            register(Duck())
            register(Fine())

    plugin = DuckPlugin()
    pm.register(plugin, name="duck")
    try:
        found = registry.registered("distillers")
        assert "duck-method" not in found and "fine-method" in found and "lic" in found
        message = capsys.readouterr().err
        assert "plugin 'duck'" in message and "'duck-method'" in message
        assert "does not subclass ddbench.api.Distiller" in message and "class Duck(ddbench.api.Distiller)" in message
        assert any(error.name == "duck" and "duck-method" in error.error for error in load_errors())
        with pytest.raises(registry.UnknownNameError, match="duck-method"):
            registry.get_distiller("duck-method")
    finally:
        pm.unregister(plugin)


def test_misspelled_hook_fails_check_pending():
    class Misspelled:
        @hookimpl
        def register_distiller(self, register):  # missing the final "s"
            pass

    plugin = Misspelled()
    pm.register(plugin, name="misspelled")
    try:
        with pytest.raises(pluggy.PluginValidationError, match="register_distiller"):
            pm.check_pending()
    finally:
        pm.unregister(plugin)


def test_duplicate_names_are_refused():
    class Shadow:
        @hookimpl
        def register_distillers(self, register):
            from ddbench.distillers.random import RandomDistiller

            register(RandomDistiller())

    plugin = Shadow()
    pm.register(plugin, name="shadow")
    try:
        with pytest.raises(registry.DuplicateNameError, match="'random' is registered twice"):
            registry.registered("distillers")
    finally:
        pm.unregister(plugin)


def test_unknown_name_lists_installed():
    with pytest.raises(registry.UnknownNameError) as info:
        registry.get_distiller("nosuch")
    message = str(info.value)
    assert "nosuch" in message and "random" in message
    assert "entry points" not in message  # installed: the project's own plugins are there


def test_unknown_name_says_when_no_plugin_package_is_installed(monkeypatch):
    """A checkout on PYTHONPATH without installing it loads only the built-ins: the error says so."""
    monkeypatch.setattr(registry, "entry_point_names", lambda: [])
    with pytest.raises(registry.UnknownNameError) as info:
        registry.get_distiller("lic-nosuch")
    message = str(info.value)
    assert "No package with 'ddbench' entry points is installed" in message and "pip install -e ." in message


def _fake_distribution(site, name: str, module_source: str) -> None:
    """An installed distribution (dist-info with a ddbench entry point) made by hand."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[ddbench]\n{name} = {name}\n")


def test_broken_plugin_is_named_and_others_still_load(tmp_path):
    _fake_distribution(tmp_path, "broken_plugin", "raise ImportError('needs a package that is not installed')\n")
    _fake_distribution(tmp_path, "good_plugin", """
        from ddbench.api import Distiller, hookimpl
        class Good(Distiller):
            name = "good-method"
            options_class = object
        @hookimpl
        def register_distillers(register):
            register(Good())
    """)
    result = run_cli("plugins", env={"PYTHONPATH": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "broken_plugin" in result.stderr and "needs a package that is not installed" in result.stderr
    assert "good-method" in result.stdout and "1.2.3" in result.stdout
    assert "random" in result.stdout


def test_load_filter_environment_variable(tmp_path):
    _fake_distribution(tmp_path, "good_plugin", """
        from ddbench.api import Distiller, hookimpl
        class Good(Distiller):
            name = "good-method"
            options_class = object
        @hookimpl
        def register_distillers(register):
            register(Good())
    """)
    env = {"PYTHONPATH": str(tmp_path), "COLUMNS": "200"}
    assert "good-method" in run_cli("plugins", env=env).stdout
    none = run_cli("plugins", env={**env, "DDBENCH_LOAD_PLUGINS": ""})
    assert "good-method" not in none.stdout and "random" in none.stdout
    only = run_cli("plugins", env={**env, "DDBENCH_LOAD_PLUGINS": "good_plugin"})
    assert "good-method" in only.stdout


def test_the_registry_collects_once_per_set_of_plugins():
    from ddbench.host import registry

    first = registry.get_distiller("lic")
    assert registry.get_distiller("lic") is first  # not built again by a second look-up
    assert set(registry.registered("distillers")) >= {"lic", "sre2l", "squeeze", "random", "rded", "dm"}
