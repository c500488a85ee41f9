"""The package layout shows the architecture: stage subpackages over a core that imports no stage.

Imports are read from the AST (lazy imports inside functions included). A stage may import ``driftloop.core``;
``driftloop.core`` imports no stage; an import from one stage into another is allowed only when listed in
:data:`driftloop_ops.architecture_rules.CROSS_STAGE_IMPORTS` with the reason it belongs there rather
than in core. Above the package, the Airflow plugin and the DAG files import its public names only, and never
the ops package ``driftloop_ops``.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

# The rules live in one module, which the rules section of docs/architecture.md is generated from.
from driftloop_ops.architecture_rules import AIRFLOW_SIDE, CROSS_STAGE_IMPORTS, OPS_PACKAGE, STAGES

PROJECT_DIR = Path(__file__).resolve().parents[2]
PACKAGE_DIR = PROJECT_DIR / "include" / "driftloop"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _driftloop_imports(path: Path) -> set[str]:
    """Every ``driftloop.*`` module ``path`` imports, without the ``driftloop.`` prefix."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    package = PACKAGE_DIR.name + "."
    return {name.removeprefix(package) for name in names if name.startswith(package)}


def _stage_of(module: str) -> str:
    return module.split(".", 1)[0]


def _edges() -> set[tuple[str, str]]:
    """(importer, imported) pairs across subpackages, the imported side cut to a module of the package."""
    modules = _modules()
    edges = set()
    for name, path in modules.items():
        for imported in _driftloop_imports(path):
            while imported not in modules and "." in imported:  # `from pkg.mod import function`
                imported = imported.rpartition(".")[0]
            # A stage package itself (`from driftloop.data import snapshots` also names `data`) holds only a
            # docstring.
            if imported in modules and "." in imported and _stage_of(imported) != _stage_of(name):
                edges.add((name, imported))
    return edges


def test_every_module_lives_in_core_or_a_stage():
    packages = {"core", *STAGES}
    loose = [name for name in _modules() if "." not in name and name not in ("", "cli", *packages)]
    assert loose == [], f"modules outside core/ and the stage folders {STAGES}: {loose}"
    assert set(_stage_of(n) for n in _modules() if "." in n) <= {"core", *STAGES}


def test_core_imports_no_stage():
    offenders = sorted(
        f"{a} -> {b}" for a, b in _edges() if _stage_of(a) == "core" and _stage_of(b) != "core"
    )
    assert offenders == [], "core must not import a stage:\n" + "\n".join(offenders)


def test_cross_stage_imports_are_listed_with_a_reason():
    found = {(a, b) for a, b in _edges() if _stage_of(a) in STAGES and _stage_of(b) in STAGES}
    unlisted = sorted(f"{a} -> {b}" for a, b in found if (a, b) not in CROSS_STAGE_IMPORTS)
    assert unlisted == [], (
        "cross-stage imports not in CROSS_STAGE_IMPORTS (add one with its reason, or move the "
        "shared code to core):\n" + "\n".join(unlisted)
    )
    stale = sorted(f"{a} -> {b}" for a, b in CROSS_STAGE_IMPORTS if (a, b) not in found)
    assert stale == [], "CROSS_STAGE_IMPORTS lists imports that no longer exist:\n" + "\n".join(stale)


def test_module_names_are_not_reused_across_folders():
    leaves = Counter(name.rpartition(".")[2] for name in _modules() if name and not name.endswith("__init__"))
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    # `cli` is the one shared name: each folder's command-line glue, registered in
    # driftloop.cli.COMMAND_MODULES.
    allowed = {"cli"} | {p.rpartition(".")[2] for p in packages}
    reused = sorted(leaf for leaf, count in leaves.items() if count > 1 and leaf not in allowed)
    assert reused == [], (
        f"module names used in more than one folder (a reader cannot tell them apart): {reused}"
    )


IMPORTERS = {"import_module", "__import__"}  # importlib.import_module("name"), __import__("name")


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _imported_names(node: ast.AST) -> list[str]:
    """The dotted names one node imports: modules, and ``module.name`` for ``from module import name``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:  # relative: the plugin's own
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called in IMPORTERS and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def airflow_side_offences(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every import the Airflow side may not make: ``driftloop_ops`` or one of its modules,
    and a private part of ``driftloop`` (a ``_module`` on the path, or a ``_name`` imported from a module)."""
    found = set()
    for node in ast.walk(tree):
        for name in _imported_names(node):
            top, *rest = name.split(".")
            private = top == PACKAGE_DIR.name and any(map(_is_private, rest))
            reported = any(name.startswith(n + ".") for line, n in found if line == node.lineno)
            if (top == OPS_PACKAGE or private) and not reported:
                found.add((node.lineno, name))
    return sorted(found)


@pytest.mark.parametrize(
    "code",
    [
        "import driftloop_ops",
        "import driftloop_ops.airflow_api as api",
        "from driftloop_ops import demo",
        "from driftloop_ops.airflow_api import AirflowClient",
        "def note():\n    from driftloop_ops.airflow_api import AirflowClient",
        "import importlib\nclient = importlib.import_module('driftloop_ops.airflow_api')",
        "from driftloop.core.bus import _private_name",
        "from driftloop.core._internal import helper",
        "import driftloop.governance._cache",
        "def page():\n    from driftloop.governance.overview import _duration_s",
    ],
)
def test_the_airflow_side_rule_sees_ops_and_private_imports(code):
    assert airflow_side_offences(ast.parse(code)), f"a forbidden import went unnoticed:\n{code}"


def test_the_airflow_side_rule_lets_public_names_pass():
    code = """
from __future__ import annotations
import driftloop.core.bus
from driftloop import __version__
from driftloop.core import bus as _bus
from driftloop.governance.overview import build_overview
from driftloop_airflow import run_stage
from . import view
import importlib
importlib.import_module("pycaret.classification")
"""
    assert airflow_side_offences(ast.parse(code)) == []


def test_plugins_and_dags_import_only_public_names_of_the_package_and_never_the_ops_package():
    paths = sorted(p for folder in AIRFLOW_SIDE for p in (PROJECT_DIR / folder).rglob("*.py"))
    assert any(p.is_relative_to(PROJECT_DIR / "plugins") for p in paths), "no plugin module found"
    offenders = [
        f"{path.relative_to(PROJECT_DIR)}:{line} imports {name}"
        for path in paths
        for line, name in airflow_side_offences(ast.parse(path.read_text()))
    ]
    assert offenders == [], (
        "plugins and DAG files import public names of `driftloop` and Airflow only; move what they need from "
        "`driftloop_ops` into the package (or make it public there):\n" + "\n".join(offenders)
    )
