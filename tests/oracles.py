"""Independent checks of the gate: what the rule says, recomputed by the test with sklearn, not with
driftloop."""

from __future__ import annotations

import tempfile
from typing import Any

from driftloop.core import bus


def holdout_auc(client: Any, cfg: Any, model_version: str, on_version: str) -> float:
    """AUC of ``model_version`` on the holdout logged by ``on_version``'s training run, computed with
    sklearn."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from driftloop.core.registry import load_model

    name = cfg.registered_model_name
    run_id = client.get_model_version(name, on_version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        holdout = pd.read_parquet(client.download_artifacts(run_id, bus.HOLDOUT_ARTIFACT, tmp))
    model = load_model(bus.model_version_uri(name, model_version))
    proba = model.predict_proba(holdout[cfg.features].reset_index(drop=True))[:, 1]
    return float(roc_auc_score(holdout[cfg.target].astype(str) == cfg.positive_label, proba))


def expected_champion(client: Any, cfg: Any, incumbent: str, candidate: str) -> str:
    """Which version must serve after the gate judged ``candidate`` against ``incumbent``.

    Floors and the head-to-head on the candidate's holdout are recomputed here with sklearn. The gate's other
    checks (fairness limits, behavioural tests, latency, size) are taken from the version's recorded failures:
    each of those has unit tests of its own with models of known behaviour.
    """
    from driftloop.core.task_types import gate_metric_key

    version = client.get_model_version(cfg.registered_model_name, candidate)
    metrics = client.get_run(version.run_id).data.metrics
    meets_floors = all(
        metrics.get(gate_metric_key(m), float("nan")) >= floor for m, floor in cfg.gates.floors.items()
    )
    better = holdout_auc(client, cfg, candidate, candidate) >= (
        holdout_auc(client, cfg, incumbent, candidate) + cfg.gates.min_improvement
    )
    failed = [c for c in (version.tags.get(bus.GATE_FAILED_CHECKS_TAG) or "").split(",") if c]
    others_pass = all(c.startswith(("floor.", "beats_champion")) for c in failed)
    return candidate if meets_floors and better and others_pass else incumbent
