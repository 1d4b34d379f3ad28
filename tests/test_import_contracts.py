"""Import contracts (import-linter, configured in pyproject.toml): method plugins import the
public plugin API ``ddbench.api`` only, and the host's layers never import upwards. A plugin
that imports a private host module breaks the contract."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint(config: Path, *paths: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (*paths, ROOT))}
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", script, str(config), "--no-cache"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def plugin_contract(tmp_path: Path, package: str) -> Path:
    config = tmp_path / f"{package}.toml"
    config.write_text(textwrap.dedent(f"""
        [tool.importlinter]
        root_packages = ["ddbench", "{package}"]

        [[tool.importlinter.contracts]]
        name = "{package} imports ddbench.api only"
        type = "forbidden"
        source_modules = ["{package}"]
        forbidden_modules = ["ddbench.*"]
        ignore_imports = ["{package}.** -> ddbench.api", "{package} -> ddbench.api"]
        allow_indirect_imports = true
        unmatched_ignore_imports_alerting = "none"
    """))
    return config


def test_the_repository_keeps_its_import_contracts():
    result = lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken" in result.stdout


def test_the_example_plugin_imports_the_public_api_only(tmp_path):
    package = tmp_path / "class_mean_example"  # the example is one module: checked as a package's only module
    package.mkdir()
    source = (ROOT / "examples" / "ddbench-class-mean" / "ddbench_class_mean.py").read_text()
    (package / "__init__.py").write_text(source)
    result = lint(plugin_contract(tmp_path, "class_mean_example"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


def test_a_plugin_importing_a_private_module_breaks_the_contract(tmp_path):
    package = tmp_path / "sneaky_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("from ddbench.api import hookimpl\nfrom ddbench.tiles import squeeze\n")
    result = lint(plugin_contract(tmp_path, "sneaky_plugin"), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and "sneaky_plugin -> ddbench.tiles" in result.stdout


def test_no_host_module_is_over_300_lines():
    long = {str(path.relative_to(ROOT)): n for path in (ROOT / "ddbench").rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 300}
    assert not long, f"split these modules: {long}"
