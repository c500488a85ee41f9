"""Architecture rules read from the source itself: the bus, imports, environment reads, layering, docs.

Every check parses the code (AST), so a comment or a string that merely mentions a name cannot pass or fail
it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from driftloop.core import bus, bus_reference

PROJECT_DIR = Path(__file__).resolve().parents[2]
PACKAGE_DIR = PROJECT_DIR / "include" / "driftloop"
OPS_DIR = PROJECT_DIR / "include" / "driftloop_ops"
SOURCE_DIRS = ("include", "dags", "plugins", "tests", "bench")


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (PROJECT_DIR / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_DIR / "include").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(module, line) of every import in ``path``, at any depth (lazy imports inside functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def test_the_ml_package_imports_no_airflow():
    offenders = [
        f"{p.relative_to(PROJECT_DIR)}:{line} imports {name}"
        for p in python_files("include/driftloop")
        for name, line in imported_modules(p)
        if name == "airflow" or name.startswith("airflow.")
    ]
    assert offenders == [], "the driftloop package must be usable without Airflow:\n" + "\n".join(offenders)


def test_the_ml_package_does_not_depend_on_the_ops_package():
    offenders = [
        f"{p.relative_to(PROJECT_DIR)}:{line}"
        for p in python_files("include/driftloop")
        for name, line in imported_modules(p)
        if name.startswith("driftloop_ops")
    ]
    assert offenders == [], offenders


def test_no_import_cycles_inside_the_package():
    modules = {module_name(p): p for p in python_files("include/driftloop")}
    graph = {
        name: {
            imp
            for imp, _ in imported_modules(path)
            if imp in modules and imp != name and not name.startswith(imp + ".")
        }  # a submodule importing its own package's __init__ is fine
        for name, path in modules.items()
    }
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in stack:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in done:
                visit(nxt, [*stack, nxt], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], done)
    assert cycles == [], "import cycles:\n" + "\n".join(sorted(set(cycles)))


def _is_module_path(value: str) -> bool:
    """True when ``value`` names a module or a module attribute (``driftloop.data.simulate``), not a tag."""
    import importlib

    candidate = value.removesuffix("()")
    if not re.fullmatch(r"[A-Za-z_][\w.]*", candidate):
        return False
    try:
        if importlib.util.find_spec(candidate) is not None:
            return True
    except (ImportError, ValueError):
        pass
    module, _, attr = candidate.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def test_bus_names_are_literals_only_in_the_bus_module():
    bus_values = {
        v for k, v in vars(bus).items() if k.isupper() and isinstance(v, str) and v.startswith(bus.PREFIX)
    }
    offenders = []
    for path in python_files(*SOURCE_DIRS):
        if path == PACKAGE_DIR / "core" / "bus.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                is_tag = value in bus_values or (value.startswith(bus.PREFIX) and not _is_module_path(value))
                if is_tag:
                    offenders.append(f"{path.relative_to(PROJECT_DIR)}:{node.lineno}: {value!r}")
    assert offenders == [], "use the constants of driftloop.core.bus:\n" + "\n".join(offenders)


# Reads of the environment the package may make besides Settings, and why.
ENV_READ_ALLOWED = {
    "config.py": "Settings.from_env: the one reader",
    "tracking.py": "mlflow_scope saves and restores the MLFLOW_* variables MLflow itself rewrites",
}


def test_settings_is_the_only_reader_of_the_environment():
    offenders = []
    for path in python_files("include/driftloop"):
        if path.name in ENV_READ_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            reads = (
                isinstance(node, ast.Attribute)
                and node.attr == "getenv"
                or isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "environ"
                or isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "environ"
                and isinstance(node.ctx, ast.Load)
            )
            if reads:
                offenders.append(f"{path.relative_to(PROJECT_DIR)}:{node.lineno}")
    assert offenders == [], "read settings through driftloop.core.config.Settings:\n" + "\n".join(offenders)


def test_aliases_are_set_only_by_the_registry_module():
    offenders = [
        f"{p.relative_to(PROJECT_DIR)}:{node.lineno}"
        for p in python_files("include/driftloop")
        if p.name != "registry.py"
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr in ("set_registered_model_alias", "delete_registered_model_alias")
    ]
    assert offenders == [], offenders


@pytest.mark.parametrize(
    "path",
    python_files("include/driftloop", "include/driftloop_ops", "plugins"),
    ids=lambda p: str(p.relative_to(PROJECT_DIR)),
)
def test_modules_stay_small_and_public_functions_are_documented(path):
    lines = path.read_text().splitlines()
    assert len(lines) <= 450, f"{path.name} has {len(lines)} lines: split it by job"
    undocumented = [
        node.name
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
        and not node.name.startswith("_")
        and not ast.get_docstring(node)
    ]
    assert undocumented == [], f"{path.name}: public names without a docstring: {undocumented}"


def test_cli_handlers_share_one_naming_scheme_and_every_command_takes_dataset():
    from driftloop.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public accessor
    for name, sub in commands.items():
        leaf_parsers = [sub]
        if sub._subparsers is not None:  # noqa: SLF001
            leaf_parsers = list(sub._subparsers._group_actions[0].choices.values())  # noqa: SLF001
        for leaf in leaf_parsers:
            handler = leaf.get_default("func")
            assert handler.__name__.startswith("_cmd_"), f"{name}: handler {handler.__name__}"
            assert any("--dataset" in action.option_strings for action in leaf._actions), name  # noqa: SLF001


def test_architecture_doc_carries_the_bus_reference_table():
    doc = (PROJECT_DIR / "docs" / "architecture.md").read_text()
    match = re.search(r"<!-- bus:begin -->\n(.*?)<!-- bus:end -->", doc, re.S)
    assert match, "docs/architecture.md lacks the <!-- bus:begin --> ... <!-- bus:end --> section"
    assert match.group(1).strip() == bus_reference.reference_markdown().strip(), (
        "docs/architecture.md is out of date with driftloop.core.bus: regenerate the section with "
        "`python -m driftloop.core.bus_reference docs/architecture.md`"
    )


def test_generated_doc_sections_match_the_code():
    from driftloop_ops.reference import stale_sections

    stale = stale_sections()
    assert stale == [], (
        f"generated doc sections out of date: {stale}; run `python -m driftloop_ops.reference`"
    )
