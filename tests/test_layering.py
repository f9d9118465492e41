"""The package's layering: the library never imports its command line.

Data flows one way (flags -> settings -> library); a settings module that
imports `atalp_keras.cli` pulls absl's flag machinery and the entry points'
error boundary into every library user, and makes a cycle as soon as the CLI
imports that settings module back (issue 24). The value parsers the settings
need live in `atalp_keras.parsing`.
"""

import ast
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "atalp_keras")
CLI = "atalp_keras.cli"


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join(rel)


def _imported_modules(source, module, is_package):
    """Every module name an import statement in ``source`` may load, relative
    imports resolved against ``module``; ``from a import b`` yields both ``a``
    and ``a.b`` (``b`` may be a submodule, as in ``from atalp_keras import cli``)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__")):
            yield node.args[0].value


def _imports_cli(source, module, is_package=False):
    return sorted({name for name in _imported_modules(source, module, is_package)
                   if name == CLI or name.startswith(CLI + ".")})


def _library_files():
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


@pytest.mark.parametrize("source, module, is_package", [
    ("from atalp_keras.cli.common import parse_eps", "atalp_keras.training.config", False),
    ("import atalp_keras.cli", "atalp_keras.x", False),
    ("from atalp_keras import cli", "atalp_keras.x", False),
    ("def f():\n    from atalp_keras.cli import parse_eps", "atalp_keras.x", False),
    ("from ..cli import common", "atalp_keras.training.config", False),
    ("from .. import cli", "atalp_keras.evaluation.settings", False),
    ("from . import cli", "atalp_keras", True),
    ("import importlib\nimportlib.import_module('atalp_keras.cli.train')",
     "atalp_keras.x", False),
])
def test_the_scan_sees_every_spelling_of_a_cli_import(source, module, is_package):
    # Without this the layering test below could pass on a scan that misses
    # relative or lazy imports.
    assert _imports_cli(source, module, is_package)


@pytest.mark.parametrize("source, module, is_package", [
    ("from atalp_keras.parsing import parse_eps", "atalp_keras.training.config", False),
    ("from . import client", "atalp_keras", True),
    ("from .cli_like import x", "atalp_keras.evaluation.settings", False),
    ("import atalp_keras.client", "atalp_keras.x", False),
])
def test_the_scan_does_not_flag_other_modules(source, module, is_package):
    assert not _imports_cli(source, module, is_package)


def test_nothing_outside_the_cli_package_imports_it():
    offenders = {}
    cli_folder = os.path.join(PACKAGE, "cli") + os.sep
    files = list(_library_files())
    assert any(f.endswith(os.path.join("training", "config.py")) for f in files)
    for path in files:
        if path.startswith(cli_folder):
            continue
        with open(path, encoding="utf-8") as f:
            found = _imports_cli(f.read(), _module_name(path),
                                 os.path.basename(path) == "__init__.py")
        if found:
            offenders[os.path.relpath(path, ROOT)] = found
    assert not offenders, f"The library imports the command line: {offenders}"


def test_importing_the_settings_loads_no_cli_module():
    # The run-time view of the same rule: also catches an import the scan
    # cannot read (a computed module name).
    code = textwrap.dedent("""
        import sys
        import atalp_keras.training.config, atalp_keras.evaluation.settings
        import atalp_keras.analysis.settings, atalp_keras.reproduction.settings
        import atalp_keras.parsing
        from atalp_keras.training import TrainConfig
        TrainConfig(eps="8/255", image_size="8").validate()
        print(sorted(m for m in sys.modules if m.startswith("atalp_keras.cli")))
    """)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[]"
