"""Architecture rules read from the source itself: the bus, imports, environment reads, layering, docs.

Every check parses the code (AST), so a comment or a string that merely mentions a name cannot pass or fail it.
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


# Reads of the environment the code may make besides Settings, and why (paths under the project).
ENV_READ_ALLOWED = {
    "include/driftloop/core/settings.py": "Settings.from_env: the one reader",
    "include/driftloop/core/tracking.py": "mlflow_scope saves and restores the MLFLOW_* variables MLflow rewrites",
}
# Writing the environment is not reading it: os.environ[k] = v, del os.environ[k], os.environ.update(...).
ENV_WRITE_METHODS = {"update", "setdefault", "pop", "__setitem__", "__delitem__"}


def environment_reads(tree: ast.Module) -> list[int]:
    """Lines where ``tree`` reads the environment: any use of ``os.environ``/``os.getenv``/``os.environb`` (or
    the names imported from ``os``) other than a write, so aliasing (``env = os.environ; env.get(...)``),
    copying (``{**os.environ}``) and passing it on (``f(os.environ)``) all count."""
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "os"
        for alias in node.names
        if alias.name in ("environ", "environb", "getenv", "getenvb")
    }
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    lines = []
    for node in ast.walk(tree):
        is_env = (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "environb", "getenv", "getenvb")
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ) or (isinstance(node, ast.Name) and node.id in imported)
        if not is_env:
            continue
        parent = parents.get(node)
        writes = (
            isinstance(parent, ast.Attribute)
            and parent.attr in ENV_WRITE_METHODS
            and isinstance(parents.get(parent), ast.Call)
        ) or (isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store | ast.Del))
        if not writes:
            lines.append(node.lineno)
    return lines


def test_environment_reads_are_found_through_aliases():
    aliased = "import os\nenv = os.environ\nvalue = env.get('X')\n"
    imported = "from os import environ as e, getenv\nvalue = getenv('X') or e['Y']\n"
    writes = "import os\nos.environ['X'] = '1'\nos.environ.update(Y='2')\nos.environ.setdefault('Z', '3')\n"
    assert environment_reads(ast.parse(aliased)) == [2]
    assert environment_reads(ast.parse(imported)) == [2, 2]
    assert environment_reads(ast.parse(writes)) == []


def test_settings_is_the_only_reader_of_the_environment():
    offenders = [
        f"{path.relative_to(PROJECT_DIR)}:{line}"
        for path in python_files("include/driftloop", "plugins")
        if str(path.relative_to(PROJECT_DIR)) not in ENV_READ_ALLOWED
        for line in environment_reads(ast.parse(path.read_text()))
    ]
    assert offenders == [], "read settings through driftloop.core.settings.Settings:\n" + "\n".join(offenders)


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
