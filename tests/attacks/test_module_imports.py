"""The attack modules import one another in one direction only (issue 24:
``pgd.py`` used to reach back into ``fgsm.py`` and ``trades.py``, which
subclass PGD), and each imports on its own, without the package
``__init__`` having loaded the others first."""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ATTACKS = ROOT / "atalp_keras" / "attacks"
PACKAGE = "atalp_keras.attacks"
MODULES = sorted(p.stem for p in ATTACKS.glob("*.py") if p.stem != "__init__")


def _imported_attack_modules(path):
    """The ``atalp_keras.attacks`` modules a file imports, anywhere in it
    (function-level imports too); ``"__init__"`` for names taken from the
    package itself, which imports every attack."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:
                for alias in node.names:
                    found.add(alias.name if alias.name in MODULES else "__init__")
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name.split(".")[2])
    return found


def _cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_attack_modules_import_each_other_without_a_cycle():
    graph = {name: _imported_attack_modules(ATTACKS / f"{name}.py") for name in MODULES}
    graph["__init__"] = set(MODULES)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"pgd": {"fgsm"}, "fgsm": {"pgd"}}) == ["fgsm", "pgd", "fgsm"]
    assert _cycle({"fgsm": {"pgd"}, "pgd": set()}) is None


# In one fresh interpreter, imports each atalp_keras.attacks.<name> with the
# package's __init__ replaced by an empty package and every attack module
# loaded before it dropped, so nothing but the module's own imports is loaded
# first (one process for all: starting one per module costs minutes here).
_ALONE = """
import importlib, sys, types
import atalp_keras
for name in {names!r}:
    for loaded in [m for m in sys.modules if m.startswith("atalp_keras.attacks")]:
        del sys.modules[loaded]
    package = types.ModuleType("atalp_keras.attacks")
    package.__path__ = [{path!r}]
    sys.modules["atalp_keras.attacks"] = package
    importlib.import_module("atalp_keras.attacks." + name)
    print("imported", name)
"""


def test_each_attack_module_imports_alone():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", _ALONE.format(path=str(ATTACKS), names=MODULES)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [word for name in MODULES for word in ("imported", name)]
