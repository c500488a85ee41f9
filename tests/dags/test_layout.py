"""The package layout shows the architecture: stage subpackages over a core that imports no stage.

Imports are read from the AST (lazy imports inside functions included). A stage may import ``driftloop.core``;
``driftloop.core`` imports no stage; an import from one stage into another is allowed only when listed in
:data:`CROSS_STAGE_IMPORTS` with the reason it belongs there rather than in core.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "include" / "driftloop"
STAGES = ("data", "training", "governance", "monitoring", "serving")

# (importing module, imported module) -> why the dependency is on a stage and not on core.
CROSS_STAGE_IMPORTS = {
    ("training.train", "data.snapshots"): "a training run reads a training snapshot and records its lineage",
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
        "monitoring.partitions",
        "data.contract.ids",
    ): "batch rows are joined to late labels by the contract's entity ids",
    (
        "monitoring.attribution",
        "governance.explain",
    ): "drifted features are ranked by the champion's importance",
    ("monitoring.attribution", "governance.model_card"): "attribution drift refreshes the champion's card",
    ("monitoring.live", "governance.fairness"): "live fairness reuses the training-time group metrics",
    ("serving.online.export", "data.contract"): "served windows are written with the contract's Arrow schema",
    ("serving.online.service", "data.contract"): "requests are validated against the dataset's contract",
    ("serving.online.validation", "data.contract"): "PII in requests is hashed as ingestion hashes it",
    ("serving.batch_scoring", "governance.audit"): "the audit reconciler runs before every inference run",
    ("serving.batch_scoring", "governance.explain"): "batch predictions carry their top-k SHAP reasons",
    (
        "serving.online.ab_decision",
        "governance.promotion",
    ): "an A/B decision promotes through the audited gate path",
    (
        "serving.online.ab_decision",
        "governance.delong",
    ): "the shadow AUC difference uses the gate's paired comparison (DeLong)",
}


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
