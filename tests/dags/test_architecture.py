"""Architecture rules read from the source itself: the bus, imports, environment reads, layering, docs.

Every check parses the code (AST), so a comment or a string that merely mentions a name cannot pass or fail
it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from driftloop.core import bus
from driftloop_ops import architecture_rules as rules

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


# Reads of the environment the package may make besides Settings: rules.ENV_READ_ALLOWED.
ENV_READERS = {"getenv", "getenvb", "environ", "environb"}


def environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read the environment: ``os.environ`` in any form (aliased, ``.get``, ``[...]``, ``in``,
    passed on), ``os.getenv``, and ``from os import environ/getenv``. Only assigning or deleting
    ``os.environ[key]`` is not a read."""
    writes = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del)
    }
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ENV_READERS and id(node) not in writes:
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(alias.name in ENV_READERS for alias in node.names):
                lines.append(node.lineno)
    return sorted(set(lines))


@pytest.mark.parametrize(
    "code",
    [
        "import os\nenv = os.environ\nvalue = env.get('X')",
        "from os import environ\nvalue = environ['X']",
        "from os import getenv\nvalue = getenv('X')",
        "import os as system\nvalue = system.getenv('X')",
        "import os\nvalue = os.environ.get('X', '')",
        "import os\nflag = 'X' in os.environ",
        "import os\nsnapshot = dict(os.environ)",
    ],
)
def test_the_environment_rule_sees_aliased_reads(code):
    assert environment_reads(ast.parse(code)), f"an environment read went unnoticed:\n{code}"


def test_the_environment_rule_lets_writes_pass():
    assert environment_reads(ast.parse("import os\nos.environ['X'] = '1'\ndel os.environ['X']")) == []


def test_settings_is_the_only_reader_of_the_environment():
    offenders = [
        f"{path.relative_to(PROJECT_DIR)}:{line}"
        for path in python_files("include/driftloop", "plugins")
        if str(path.relative_to(PROJECT_DIR)) not in rules.ENV_READ_ALLOWED
        for line in environment_reads(ast.parse(path.read_text()))
    ]
    assert offenders == [], "read settings through driftloop.core.settings.Settings:\n" + "\n".join(offenders)


def test_no_bare_base_exception_handlers():
    """``except BaseException`` (or a bare ``except:``) swallows Ctrl-C and SystemExit unless it re-raises."""
    offenders = []
    for path in python_files("include", "plugins", "dags"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ExceptHandler):
                continue
            caught = node.type
            names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
            broad = caught is None or any(isinstance(n, ast.Name) and n.id == "BaseException" for n in names)
            reraises = any(isinstance(n, ast.Raise) and n.exc is None for n in ast.walk(node))
            if broad and not reraises:
                offenders.append(f"{path.relative_to(PROJECT_DIR)}:{node.lineno}")
    assert offenders == [], "catch Exception, or re-raise with a bare `raise`:\n" + "\n".join(offenders)


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
    "path", rules.python_files(*rules.SIZE_CHECKED_DIRS), ids=lambda p: str(p.relative_to(PROJECT_DIR))
)
def test_modules_stay_small_and_public_functions_are_documented(path):
    lines = path.read_text().splitlines()
    limit = rules.module_limit(path)  # MAX_MODULE_LINES, or the LONGER_MODULES entry with its reason
    assert len(lines) <= limit, f"{path.name} has {len(lines)} lines (limit {limit}): split it by job"
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
    commands = parser._subparsers._group_actions[0].choices  # argparse has no public accessor
    for name, sub in commands.items():
        leaf_parsers = [sub]
        if sub._subparsers is not None:
            leaf_parsers = list(sub._subparsers._group_actions[0].choices.values())
        for leaf in leaf_parsers:
            handler = leaf.get_default("func")
            assert handler.__name__.startswith("_cmd_"), f"{name}: handler {handler.__name__}"
            assert any("--dataset" in action.option_strings for action in leaf._actions), name


def test_generated_doc_sections_match_the_code():
    from driftloop_ops.doc_tables import stale_sections

    stale = stale_sections()
    assert stale == [], (
        f"generated doc sections out of date: {stale}; run `python -m driftloop_ops.doc_tables`"
    )


# MLflow calls that write a metric or tag key: name -> position of the key argument when called on a client
# (``client.log_metric(run_id, key, value)``); on the ``mlflow`` module the key comes first.
KEY_WRITERS = {"log_metric": 1, "set_tag": 1, "set_model_version_tag": 2, "set_registered_model_tag": 1}
DICT_WRITERS = {"log_metrics", "set_tags"}
# bus functions that build a key from a name: the name must be a bus constant too.
KEY_BUILDERS = {"live_metric", "arm_metric", "holdout_version_tag"}
METRIC_DICT_NAME = re.compile(r"(^|_)(metrics|timings)$")


def _literal_keys(node: ast.AST) -> list[ast.Constant]:
    """String-literal keys of a dict display, through ``**{...}`` spreads, and keywords of ``dict(...)``."""
    if isinstance(node, ast.Dict):
        found = [k for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                found += _literal_keys(value)
        return found
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return [ast.Constant(value=kw.arg, lineno=node.lineno) for kw in node.keywords if kw.arg]
    return []


def _is_str(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _keys_given_to(scope: ast.AST, name: str) -> list[ast.Constant]:
    """Literal keys put into the dict ``name`` inside ``scope``: ``name = {...}``, ``name["k"] = v``,
    ``name.update({...})``."""
    keys = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
                keys += _literal_keys(node.value)
            keys += [
                t.slice
                for t in targets
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == name
                if _is_str(t.slice)
            ]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == name
            and node.args
        ):
            keys += _literal_keys(node.args[0])
    return keys


def _call_keys(node: ast.Call, tree: ast.Module) -> list[ast.Constant]:
    """Literal keys written by one MLflow call or given to one bus key builder."""
    if not isinstance(node.func, ast.Attribute):
        return []
    attr, receiver = node.func.attr, node.func.value
    on_module = isinstance(receiver, ast.Name) and receiver.id in ("mlflow", "bus")
    if attr in KEY_WRITERS:
        args = [*node.args, *(kw.value for kw in node.keywords if kw.arg == "key")]
        index = 0 if on_module else KEY_WRITERS[attr]
        return [args[index]] if len(args) > index and _is_str(args[index]) else []
    if attr in KEY_BUILDERS and on_module and node.args:
        return [node.args[0]] if _is_str(node.args[0]) else []
    if attr not in DICT_WRITERS or not node.args:
        return []
    found = _literal_keys(node.args[0])
    if isinstance(node.args[0], ast.Name):
        enclosing = [
            f
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            and f.lineno <= node.lineno <= (f.end_lineno or f.lineno)
        ]
        found += _keys_given_to(enclosing[-1] if enclosing else tree, node.args[0].id)
    return found


def literal_bus_keys(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, key) of every metric or tag key written as a string literal instead of a bus constant."""
    found = [key for node in ast.walk(tree) if isinstance(node, ast.Call) for key in _call_keys(node, tree)]
    metric_dicts = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and METRIC_DICT_NAME.search(n.id)}
    for name in metric_dicts:
        found += _keys_given_to(tree, name)
    return sorted({(k.lineno, k.value) for k in found})


def test_literal_metric_and_tag_keys_are_found():
    source = """
import mlflow
def log(client, run_id, extra):
    mlflow.log_metric("surrogate_fidelity", 0.9)
    client.set_tag(run_id, "owner", "me")
    client.set_tag(run_id, bus.GATE_TAG, "passed")
    values = {bus.ROWS: 1, "rows_dropped": 2}
    values["late_rows"] = 3
    values.update({"more": 4, **{"nested": 5}})
    mlflow.log_metrics(values)
    mlflow.set_tags({**extra, "inline": "x"})
    timings = {}
    timings["setup_seconds"] = 1.0
    return bus.arm_metric("ab_f1", "champion"), bus.live_metric(bus.LIVE_F1)
"""
    keys = [key for _, key in literal_bus_keys(ast.parse(source))]
    expected = ["surrogate_fidelity", "owner", "rows_dropped", "late_rows", "more", "nested", "inline"]
    assert sorted(keys) == sorted([*expected, "setup_seconds", "ab_f1"])


def test_metric_and_tag_keys_are_bus_constants_not_literals():
    offenders = [
        f"{path.relative_to(PROJECT_DIR)}:{line}: {key!r}"
        for path in python_files("include/driftloop", "plugins")
        if path != PACKAGE_DIR / "core" / "bus.py"
        for line, key in literal_bus_keys(ast.parse(path.read_text()))
    ]
    assert offenders == [], "define the key in driftloop.core.bus and import it:\n" + "\n".join(offenders)


# ---- The rules of driftloop_ops.architecture_rules that the docs' rules section states.
def test_no_heavy_library_is_imported_at_module_level():
    offenders = rules.module_level_heavy_imports()
    assert offenders == [], "import heavy libraries inside the functions that use them:\n" + "\n".join(
        offenders
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import pandas", [True]),
        ("from mlflow.tracking import MlflowClient", [True]),
        ("try:\n    import pandas\nexcept ImportError:\n    pandas = None", [True]),
        ("import importlib\nmodule = importlib.import_module('sklearn.metrics')", [True]),
        ("def load():\n    import pandas", [False]),
        ("class Reader:\n    def read(self):\n        from pyarrow import parquet", [False]),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas", []),
    ],
)
def test_the_heavy_import_rule_tells_module_level_from_lazy_imports(code, expected):
    """``True`` for each heavy import at module level, ``False`` for one inside a function."""
    found = rules.imports_with_depth(ast.parse(code))
    assert [top for name, _, top in found if name.split(".")[0] in rules.HEAVY_MODULES] == expected


@pytest.mark.parametrize("folder", rules.AIRFLOW_SIDE)
def test_the_airflow_side_imports_only_the_standard_library_and_its_listed_packages(folder):
    found = rules.airflow_side_packages(folder)
    allowed = rules.AIRFLOW_SIDE_IMPORTS[folder]
    unlisted = {package: where for package, where in found.items() if package not in allowed}
    assert unlisted == {}, f"{folder}/ imports packages not in AIRFLOW_SIDE_IMPORTS (add one with its reason)"
    stale = sorted(set(allowed) - set(found))
    assert stale == [], f"AIRFLOW_SIDE_IMPORTS lists packages {folder}/ no longer imports: {stale}"


def test_every_exception_to_a_rule_is_still_needed():
    lengths = rules.module_lengths()
    unneeded = [p for p in rules.LONGER_MODULES if lengths.get(p, 0) <= rules.MAX_MODULE_LINES]
    assert unneeded == [], f"LONGER_MODULES entries within MAX_MODULE_LINES (or gone): {unneeded}"
    gone = [p for p in rules.ENV_READ_ALLOWED if not (PROJECT_DIR / p).is_file()]
    assert gone == [], f"ENV_READ_ALLOWED names files that no longer exist: {gone}"


@pytest.mark.parametrize(
    ("constant", "value"),
    [
        ("MAX_MODULE_LINES", 500),
        ("HEAVY_MODULES", ("pandas",)),
        ("CROSS_STAGE_IMPORTS", {("training.train", "data.snapshots"): "a new reason"}),
        ("AIRFLOW_SIDE_IMPORTS", {"plugins": {"airflow": "x"}, "dags": {"airflow": "y"}}),
    ],
)
def test_changing_a_rule_makes_the_docs_rules_section_stale(monkeypatch, constant, value):
    from driftloop_ops.doc_tables import stale_sections

    monkeypatch.setattr(rules, constant, value)
    assert "docs/architecture.md#rules" in stale_sections()


def test_every_alert_kind_a_dag_declares_is_in_the_senders_table():
    """Each ``alerts=alerts.<builder>`` of a DAG file shows up as its task's row, read independently here."""
    senders = rules.alert_senders()
    named = {
        (path.stem, node.value.attr)
        for path in python_files("dags")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.keyword) and node.arg == "alerts" and isinstance(node.value, ast.Attribute)
    }
    assert named, "no DAG file declares alerts: the senders table would be empty"
    for dag, builder in sorted(named):
        assert any(s.startswith(f"{dag}.") for rows in senders.values() for s in rows), (dag, builder)
