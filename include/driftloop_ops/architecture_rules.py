"""Architecture rules in one place: the tests enforce these constants and the docs are written from them.

``tests/dags/test_architecture.py`` and ``tests/dags/test_layout.py`` check the code against the constants;
:func:`driftloop_ops.doc_tables.rules_section` writes the ``rules`` section of ``docs/architecture.md`` from
the same constants and from the facts below (read from the code by AST), so a rule, its test and its
description cannot differ. A rule changes here, nowhere else.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]

# ---- Module size
MAX_MODULE_LINES = 450
SIZE_CHECKED_DIRS = ("include/driftloop", "include/driftloop_ops", "plugins")
# Modules allowed more lines: path from the project root -> (limit, why).
LONGER_MODULES = {
    "include/driftloop/core/bus.py": (
        600,
        "the bus is a table of names, one per line, kept in one module so each is defined exactly once",
    ),
}

# ---- Heavy libraries: never imported at module level (only inside functions, or under TYPE_CHECKING), so
# parsing a DAG file loads none of them (tests/dags/test_dag_integrity.py imports each DAG file in a fresh
# interpreter and looks).
HEAVY_MODULES = (
    "pycaret",
    "mlflow",
    "shap",
    "evidently",
    "ydata_profiling",
    "sklearn",
    "pandas",
    "numpy",
    "pyarrow",
)
HEAVY_CHECKED_DIRS = ("include/driftloop", "include/driftloop_ops", "plugins", "dags")

# ---- Environment: Settings reads it; other reads in the package and the plugin, and why.
ENV_READ_ALLOWED = {
    "include/driftloop/core/settings.py": "Settings.from_env: the one reader",
    "include/driftloop/training/pycaret_env.py": "sets PyCaret's own log path (setdefault), reads nothing",
    "plugins/driftloop_airflow/preload.py": "sets PyCaret's own log path (setdefault) before preloading it",
    "include/driftloop/core/tracking.py": "mlflow_scope restores the MLFLOW_* variables MLflow rewrites",
}

# ---- Layers inside the package: stages over a core that imports no stage.
STAGES = ("data", "training", "governance", "monitoring", "serving")
# (importing module, imported module) -> why the dependency is on a stage and not on core.
CROSS_STAGE_IMPORTS = {
    ("training.train", "data.snapshots"): "a training run reads a training snapshot and records its lineage",
    (
        "training.loss_estimator",
        "monitoring.estimation",
    ): "the loss model's band is widened at training with the very band monitoring computes (estimation.dle)",
    (
        "training.train",
        "governance.evidence",
    ): "the governance evidence of a version is computed once, at training",
    (
        "training.train",
        "governance.audit",
    ): "a training key's one version is registered under the promotion lock of the audit store",
    (
        "governance.verdict_evidence",
        "monitoring.sensor",
    ): "the gate's rule follows whether the champion's newest monitoring result crossed the thresholds",
    ("governance.lineage", "data.snapshots"): "lineage walks from a version to the snapshot and its batches",
    ("governance.model_card", "data.snapshots"): "the card states the training snapshot's rows and hash",
    (
        "governance.promotion",
        "training.training_results",
    ): "the gate judges what a training registered (its typed result; a type-checking import only)",
    (
        "monitoring.samples",
        "data.contract.ids",
    ): "batch rows are sampled and joined to late labels by the contract's entity id hashes",
    (
        "monitoring.attribution",
        "governance.explain",
    ): "drifted features are ranked by the champion's importance",
    ("monitoring.attribution", "governance.model_card"): "attribution drift refreshes the champion's card",
    ("monitoring.live", "governance.fairness"): "live fairness reuses the training-time group metrics",
    ("serving.online.export", "data.contract"): "served windows are written with the contract's Arrow schema",
    ("serving.online.service", "data.contract"): "requests are validated against the dataset's contract",
    ("serving.online.validation", "data.contract"): "PII in requests is hashed as ingestion hashes it",
    ("serving.scoring_parts", "governance.audit"): "the audit reconciler runs before every inference run",
    ("serving.chunk_scoring", "governance.explain"): "each scored chunk carries its top-k SHAP reasons",
    (
        "serving.scoring_results",
        "governance.governance_results",
    ): "a scoring plan carries the champion audit entries the reconciler recorded (AuditEntry)",
    (
        "serving.online.serving_results",
        "governance.governance_results",
    ): "an A/B promotion's result carries its champion audit entries (AuditEntry)",
    (
        "serving.online.rollout",
        "governance.governance_results",
    ): "a rollout's result carries its rollout and champion audit entries (RolloutEntry, AuditEntry)",
    (
        "serving.chunk_scoring",
        "governance.row_reasons",
    ): "the reasons are computed on the chunk's one replayed transform, shared with the prediction",
    (
        "serving.chunk_scoring",
        "governance.tree_paths",
    ): "a forest is walked once per chunk: its leaves give the prediction and the path attributions",
    (
        "serving.online.ab_decision",
        "governance.promotion",
    ): "an A/B decision promotes through the audited gate path",
    (
        "serving.online.ab_decision",
        "governance.delong",
    ): "the shadow AUC difference uses the gate's paired comparison (DeLong)",
    (
        "serving.online.rollout_cli",
        "governance.rollout_state",
    ): "a person starts a rollout from a shell through the governance path the gate uses",
    (
        "serving.online.rollout",
        "governance.audit",
    ): "a rollout's stage changes are serialised by the audit lock",
    (
        "serving.online.rollout",
        "governance.rollout_state",
    ): "the stage a challenger is in and the rollout audit log belong to governance",
    (
        "serving.online.rollout",
        "governance.promotion",
    ): "the last stage moves champion through the audited promotion path",
    (
        "serving.online.rollout",
        "monitoring.estimated",
    ): "the estimated-accuracy guardrail reads the versions' calibration maps as monitoring does",
}

# ---- The Airflow side: the plugin and the DAG files above the package.
AIRFLOW_SIDE = ("plugins", "dags")
PACKAGE = "driftloop"
OPS_PACKAGE = "driftloop_ops"  # never imported by the Airflow side, nor by the package
# Packages each Airflow-side folder may import besides the standard library and its own modules, and why.
# Public names of `driftloop` only: a `_private` module or name is refused.
AIRFLOW_SIDE_IMPORTS = {
    "plugins": {
        "airflow": "operators, sensors, triggers, notifiers, the executor and the UI plugin",
        "driftloop": "the package its tasks, triggers and view call",
        "fastapi": "the Driftloop view is a FastAPI app mounted by Airflow",
        "requests": "the webhook channel of alerts",
        "s3fs": "a task's object-store credentials replace the cached client's",
        "celery": "the worker_init hook that preloads the stack",
        "pycaret": "silencing PyCaret's warning capture after preloading it",
    },
    "dags": {
        "airflow": "the DAG and task decorators",
        "driftloop": "the bus and the stage functions each task calls",
        "driftloop_airflow": "run_stage, the DAG defaults and factory, the sensors",
    },
}
# A module-level tuple of module names the plugin imports by name (importlib), outside any DAG parse.
PRELOADED_BY_NAME = ("plugins/driftloop_airflow/preload.py", "PRELOAD_MODULES")


def python_files(*folders: str) -> list[Path]:
    """Every ``.py`` file under the given folders (paths from the project root), sorted."""
    return sorted(p for folder in folders for p in (PROJECT_DIR / folder).rglob("*.py"))


def relative(path: Path) -> str:
    """``path`` from the project root, as the rules spell it."""
    return str(path.relative_to(PROJECT_DIR))


def module_limit(path: Path) -> int:
    """The most lines ``path`` may have."""
    return LONGER_MODULES.get(relative(path), (MAX_MODULE_LINES, ""))[0]


def module_lengths() -> dict[str, int]:
    """Lines of every size-checked module, by path from the project root."""
    return {relative(p): len(p.read_text().splitlines()) for p in python_files(*SIZE_CHECKED_DIRS)}


def _in_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_with_depth(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """``(dotted name, line, at module level)`` of every absolute import in ``tree``: statements at any depth,
    and ``importlib.import_module("literal")``/``__import__("literal")``. Imports under ``if TYPE_CHECKING``
    are left out (they never run)."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.If) and _in_type_checking(node.test):
            for branch in node.orelse:
                visit(branch, top)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, top) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno, top))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.args[0].value, node.lineno, top))
        inner = top and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, True)
    return found


def module_level_heavy_imports() -> list[str]:
    """``path:line imports name`` of every heavy library imported at module level."""
    return [
        f"{relative(path)}:{line} imports {name}"
        for path in python_files(*HEAVY_CHECKED_DIRS)
        for name, line, top in imports_with_depth(ast.parse(path.read_text()))
        if top and name.split(".")[0] in HEAVY_MODULES
    ]


def airflow_side_packages(folder: str) -> dict[str, list[tuple[str, bool]]]:
    """Top-level packages outside the standard library that ``folder`` imports -> ``(module path, at module
    level)`` of each importing module (the folder's own packages left out)."""
    root = PROJECT_DIR / folder
    own = {p.name for p in root.iterdir() if p.is_dir()} | {p.stem for p in root.glob("*.py")}
    found: dict[str, dict[str, bool]] = {}
    for path in python_files(folder):
        for name, _, top in imports_with_depth(ast.parse(path.read_text())):
            package = name.split(".")[0]
            if package in sys.stdlib_module_names or package in own:
                continue
            where = found.setdefault(package, {})
            where[str(path.relative_to(root))] = where.get(str(path.relative_to(root)), False) or top
    return {package: sorted(where.items()) for package, where in sorted(found.items())}


def preloaded_packages() -> list[str]:
    """Top-level packages of the modules the plugin imports by name (:data:`PRELOADED_BY_NAME`)."""
    path, constant = PRELOADED_BY_NAME
    for node in ast.parse((PROJECT_DIR / path).read_text()).body:
        if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == constant for t in targets):
                names: tuple[str, ...] = ast.literal_eval(node.value)
                return sorted({name.split(".")[0] for name in names})
    raise ValueError(f"{path} defines no {constant}")


# ---- Alerts: a DAG task declares the alerts it sends (`run_stage(..., alerts=alerts.<builder>)`); the plugin
# sends the rest itself (a failed task, an overdue approval, a verdict that is an event).
ALERTS_MODULE = "include/driftloop/core/alerts.py"


def _alert_kinds_reached() -> dict[str, set[str]]:
    """Module-level name of ``driftloop.core.alerts`` -> the alert kinds it can produce: a kind constant its
    own value, a function or table every kind its body reaches through other names of the module."""
    from driftloop.core import alerts

    tree = ast.parse((PROJECT_DIR / ALERTS_MODULE).read_text())
    uses: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        else:
            continue
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        for name in names:
            uses[name] = used - {name}
    kinds = {
        name: {value} for name, value in vars(alerts).items() if name.isupper() and value in alerts.KINDS
    }
    reached: dict[str, set[str]] = {}

    def reach(name: str, seen: frozenset[str]) -> set[str]:
        if name in kinds:
            return kinds[name]
        if name not in reached:
            reached[name] = set().union(
                *(reach(n, seen | {name}) for n in uses.get(name, set()) if n not in seen and n != "KINDS")
            )
        return reached[name]

    return {name: reach(name, frozenset()) for name in uses}


def _dag_name(tree: ast.Module, default: str) -> str:
    """The DAG name a DAG file passes to ``bus.dag_id(dataset, bus.<NAME>)``."""
    from driftloop.core import bus

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "dag_id" and len(node.args) == 2:
            name = node.args[1]
            if isinstance(name, ast.Attribute):
                return str(getattr(bus, name.attr))
    return default


def _alert_names(node: ast.AST) -> set[str]:
    """Names of ``driftloop.core.alerts`` that ``node`` uses as ``alerts.<name>``."""
    return {
        n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "alerts"
    }


def _dag_task_builders() -> list[tuple[str, str]]:
    """``(<dag>.<task>, builder)`` of each ``run_stage(..., alerts=alerts.<builder>)`` call in the DAGs."""
    found = []
    for path in python_files("dags"):
        tree = ast.parse(path.read_text())
        dag = _dag_name(tree, path.stem)
        tasks = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "run_stage":
                task = min(
                    (t for t in tasks if t.lineno <= node.lineno <= (t.end_lineno or t.lineno)),
                    key=lambda t: (t.end_lineno or t.lineno) - t.lineno,
                )
                found += [
                    (f"{dag}.{task.name}", name)
                    for keyword in node.keywords
                    if keyword.arg == "alerts"
                    for name in _alert_names(keyword.value)
                ]
    return found


def alert_senders() -> dict[str, list[str]]:
    """Alert kind -> who sends it: ``<dag>.<task>`` for a task whose ``run_stage`` call names an alert builder
    (``alerts=alerts.move_alerts``), and ``driftloop_airflow.<module>.<name>`` for a plugin function or class
    that builds one itself. Every kind of ``driftloop.core.alerts.KINDS`` is a key."""
    from driftloop.core import alerts

    reached = _alert_kinds_reached()
    senders: dict[str, set[str]] = {kind: set() for kind in alerts.KINDS}
    named = _dag_task_builders()
    for path in python_files("plugins"):
        module = ".".join(path.relative_to(PROJECT_DIR / "plugins").with_suffix("").parts)
        named += [
            (f"{module}.{node.name}", name)
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            for name in _alert_names(node)
        ]
    for sender, name in named:
        for kind in reached.get(name, set()):
            senders[kind].add(sender)
    return {kind: sorted(found) for kind, found in senders.items()}
