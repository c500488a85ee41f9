"""Independent checks of the gate: what the rule says, recomputed by the test with sklearn, not with
driftloop."""

from __future__ import annotations

import tempfile
from typing import Any

from driftloop.core import bus


def holdout_scores(client: Any, cfg: Any, model_version: str, on_version: str) -> tuple[Any, Any]:
    """(0/1 truth, positive-class scores of ``model_version``) on the holdout logged by ``on_version``'s
    run."""
    import pandas as pd

    from driftloop.core.registry import load_model

    name = cfg.registered_model_name
    run_id = client.get_model_version(name, on_version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        holdout = pd.read_parquet(client.download_artifacts(run_id, bus.HOLDOUT_ARTIFACT, tmp))
    model = load_model(bus.model_version_uri(name, model_version))
    proba = model.predict_proba(holdout[cfg.features].reset_index(drop=True))[:, 1]
    return (holdout[cfg.target].astype(str) == cfg.positive_label).to_numpy(), proba


def holdout_auc(client: Any, cfg: Any, model_version: str, on_version: str) -> float:
    """AUC of ``model_version`` on the holdout logged by ``on_version``'s training run, computed with
    sklearn."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(*holdout_scores(client, cfg, model_version, on_version)))


def delong_slow(labels: Any, score_a: Any, score_b: Any) -> tuple[float, float]:
    """(AUC difference b - a, its DeLong standard error) from the Mann-Whitney kernel over every pair: O(n^2).

    DeLong, DeLong & Clarke-Pearson (1988): psi(x, y) = 1 if x > y, 1/2 if equal, 0 otherwise; V10 of a
    positive is its mean kernel against the negatives, V01 of a negative its mean against the positives.
    """
    import numpy as np

    y = np.asarray(labels).astype(bool)
    components = []
    for s in (np.asarray(score_a, float), np.asarray(score_b, float)):
        pos, neg = s[y][:, None], s[~y][None, :]
        psi = (pos > neg) + 0.5 * (pos == neg)
        components.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = components
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    contrast = np.array([-1.0, 1.0])
    var = contrast @ s10 @ contrast / y.sum() + contrast @ s01 @ contrast / (~y).sum()
    return float(auc_b - auc_a), float(np.sqrt(var))


def beats_by_rule(client: Any, cfg: Any, version: Any, incumbent: str, candidate: str) -> bool:
    """The gate's documented head-to-head rule on the candidate's holdout, recomputed independently."""
    from statistics import NormalDist

    y, champion = holdout_scores(client, cfg, incumbent, candidate)
    _, challenger = holdout_scores(client, cfg, candidate, candidate)
    diff, se = delong_slow(y, champion, challenger)
    low = diff - NormalDist().inv_cdf(0.5 + cfg.gates.confidence / 2) * se
    trigger = version.tags.get(bus.TRIGGER_REASON_TAG) or client.get_run(version.run_id).data.tags.get(
        bus.TRIGGER_REASON_TAG
    )
    drift = trigger in ("drift", "performance")
    rule = cfg.gates.rule or (cfg.gates.rule_on_drift if drift else cfg.gates.rule_on_new_data)
    return low > (cfg.gates.min_improvement if rule == "superiority" else -cfg.gates.margin)


def expected_champion(client: Any, cfg: Any, incumbent: str, candidate: str) -> str:
    """Which version must serve after the gate judged ``candidate`` against ``incumbent``.

    Floors and the head-to-head on the candidate's holdout are recomputed here with sklearn and the O(n^2)
    DeLong formula (:func:`delong_slow`), decided by the dataset's rule for the version's trigger. The gate's
    other checks (production window, fairness limits, behavioural tests, latency, size) are taken from the
    version's recorded failures: each of those has unit tests of its own with models of known behaviour.
    """
    from driftloop.core.task_types import gate_metric_key

    version = client.get_model_version(cfg.registered_model_name, candidate)
    metrics = client.get_run(version.run_id).data.metrics
    meets_floors = all(
        metrics.get(gate_metric_key(m), float("nan")) >= floor for m, floor in cfg.gates.floors.items()
    )
    better = beats_by_rule(client, cfg, version, incumbent, candidate)
    failed = [c for c in (version.tags.get(bus.GATE_FAILED_CHECKS_TAG) or "").split(",") if c]
    # The production-window comparison uses the same tested comparison on rows that later steps may relabel:
    # like the other checks, its recorded verdict is taken.
    others_pass = all(c.startswith("floor.") or c == "beats_champion" for c in failed)
    return candidate if meets_floors and better and others_pass else incumbent
