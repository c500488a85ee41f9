"""The bus reference: Markdown tables of every tag, artifact and metric name in :mod:`driftloop.core.bus`.

``python -m driftloop.core.bus_reference`` prints them; ``python -m driftloop.core.bus_reference docs/architecture.md``
rewrites that document's section between ``<!-- bus:begin -->`` and ``<!-- bus:end -->``. A test keeps the
document equal to the module.
"""

from __future__ import annotations

import sys

from driftloop.core import bus

_SECTIONS = (
    ("Run keys", "_TAG", ("SNAPSHOT_HASH", "TRIGGER_ID", "BATCH_ID", "INFERENCE_RUN_ID")),
    (
        "Lineage and training",
        "_TAG",
        (
            "SNAPSHOT_URI",
            "TRIGGER_REASON",
            "AIRFLOW_DAG_ID",
            "AIRFLOW_RUN_ID",
            "MONITORING_RUN_ID",
            "GIT_COMMIT",
            "BEST_MODEL",
            "EXPLAIN_TOP_FEATURES",
            "EXPLAIN_ERROR",
        ),
    ),
    ("Data runs", "_TAG", ("DATASET", "BATCH_COUNT", "PROFILE_SAMPLED", "PROFILE_HTML")),
    (
        "Inference runs",
        "_TAG",
        ("BATCH_URI", "PREDICTIONS_URI", "MODEL_NAME", "MODEL_VERSION", "MODEL_RUN_ID"),
    ),
    (
        "Monitoring runs",
        "_TAG",
        (
            "CHAMPION_VERSION",
            "REFERENCE_RUN_ID",
            "CURRENT_SAMPLE",
            "LABELS_FINGERPRINT",
            "DRIFTED_COLUMN_NAMES",
            "DRIFT_METHODS",
            "DRIFT_ROOT_CAUSE",
            "ATTRIBUTION_TOP",
        ),
    ),
    (
        "Drift sensor",
        "_TAG",
        ("SENSOR_FIRED_AT", "SENSOR_TRIGGER_RUN_ID", "SENSOR_SUPPRESSED", "RETRAIN_WAITING"),
    ),
    (
        "Gate (model version)",
        "_TAG",
        (
            "GATE",
            "GATE_REASON",
            "GATE_CANDIDATE_METRIC",
            "GATE_CHAMPION_METRIC",
            "GATE_CHAMPION_VERSION",
            "GATE_FAILED_CHECKS",
            "READY_FOR_CHAMPION",
            "PROMOTION_INTENT",
        ),
    ),
    (
        "Decision (version and training run)",
        "_TAG",
        ("TASK", "CLASSES", "THRESHOLD", "THRESHOLD_OBJECTIVE", "SELECTION", "LIVE_DROP_METRIC"),
    ),
    (
        "Artifacts",
        "_ARTIFACT",
        (
            "LEADERBOARD",
            "HOLDOUT",
            "REFERENCE",
            "MODEL",
            "DRIFT_REPORT",
            "DRIFT_SUMMARY",
            "LINEAGE_BATCHES",
            "LINEAGE_SNAPSHOT",
            "AB_SUMMARY",
        ),
    ),
    (
        "Serving",
        "_TAG",
        (
            "SERVED_WINDOW",
            "AB_EXPERIMENT",
            "AB_INPUT_FINGERPRINT",
            "AB_DECISION",
            "AB_DECISION_REASON",
            "AB_DECIDED_BY",
            "AB_PROMOTION",
            "CHALLENGER_VERSION",
        ),
    ),
)


METRICS = (
    *bus.HOLDOUT_METRICS,
    bus.TRAIN_SECONDS,
    *bus.TRAIN_PHASE_METRICS,
    bus.SELECTION_ROWS,
    bus.THRESHOLD_METRIC,
    bus.THRESHOLD_OBJECTIVE_VALUE,
    bus.TRAIN_ROWS,
    bus.HOLDOUT_ROWS,
    bus.ROWS,
    bus.POSITIVE_RATE,
    bus.PREDICTION_MEAN,
    bus.TARGET_MEAN,
    bus.ROWS_PER_S,
    bus.SOURCE_ROWS_RECEIVED,
    bus.SOURCE_ROWS_QUARANTINED,
    bus.DRIFT_SHARE,
    bus.DRIFTED_COLUMNS,
    bus.PREDICTION_DRIFT_SCORE,
    bus.PREDICTION_DRIFTED,
    bus.ROWS_COMPARED,
    bus.REFERENCE_ROWS,
    bus.LIVE_F1,
    bus.LIVE_AUC,
    bus.LIVE_DROP,
    bus.LABELLED_ROWS,
    bus.AB_MIN_ENTITIES_PER_ARM,
    bus.AB_FIXED_P_VALUE,
    bus.AB_SEQUENTIAL_P_VALUE,
    bus.AB_ACCURACY_DIFF,
    bus.SHADOW_PAIRS,
    bus.SHADOW_MCNEMAR_P_VALUE,
    bus.SHADOW_ACCURACY_DIFF,
    bus.SHADOW_AUC_DIFF,
    bus.SHADOW_AUC_DIFF_LOW,
    bus.SHADOW_AUC_DIFF_HIGH,
)


def reference_markdown() -> str:
    """The Markdown tables of every tag and artifact constant (embedded in ``docs/architecture.md``)."""
    lines = []
    for title, suffix, names in _SECTIONS:
        lines += [f"**{title}**", "", "| constant | value |", "|---|---|"]
        lines += [f"| `bus.{name}{suffix}` | `{getattr(bus, name + suffix)}` |" for name in names]
        lines.append("")
    lines += [
        "**Metrics**: " + ", ".join(f"`{m}`" for m in METRICS) + ", `drift_score.<column>`, "
        "`class_share.<label>`, "
        + ", ".join(f"`{bus.arm_metric(m, '<arm>')}`" for m in bus.AB_ARM_METRICS)
        + ".",
        "",
    ]
    lines += [
        "**Formats**: experiment `"
        + bus.experiment_name("<dataset>", "training").replace("training", "<stage>")
        + "`; drift-triggered training run id `"
        + bus.drift_trigger_run_id("<monitoring_run_id>")
        + "`; asset `"
        + bus.asset_uri("<dataset>", "snapshot").replace("training-snapshot", "<kind>")
        + "` with kinds "
        + ", ".join(f"`{v}`" for v in bus.ASSET_KINDS.values())
        + "; Airflow DAG id `"
        + bus.dag_id("<dataset>", bus.DATA_PIPELINE).replace(bus.DATA_PIPELINE, "<dag name>")
        + "` with names "
        + ", ".join(f"`{name}`" for name in bus.DAG_NAMES)
        + "; models `"
        + bus.model_alias_uri("<name>", "<alias>")
        + "` (aliases `"
        + bus.CHAMPION
        + "`, `"
        + bus.CHALLENGER
        + "`)"
        + "; served batch id `"
        + bus.served_batch_id("<window start>", "<version>")
        + "`; A/B experiment `"
        + bus.ab_experiment_id("<champion>", "<challenger>")
        + "`; A/B decisions "
        + ", ".join(f"`{d}`" for d in bus.AB_DECISIONS)
        + ".",
        "",
    ]
    return "\n".join(lines)


def write_reference(doc_path: str) -> bool:
    """Replace the ``<!-- bus:begin -->`` … ``<!-- bus:end -->`` section of ``doc_path``; True when it changed."""
    from pathlib import Path

    path = Path(doc_path)
    text = path.read_text()
    start, end = text.index("<!-- bus:begin -->\n"), text.index("<!-- bus:end -->")
    updated = text[: start + len("<!-- bus:begin -->\n")] + reference_markdown() + "\n" + text[end:]
    path.write_text(updated)
    return updated != text


if __name__ == "__main__":
    # python -m driftloop.core.bus_reference [docs/architecture.md]: print the table, or rewrite that document's section.
    if len(sys.argv) > 1:
        print("updated" if write_reference(sys.argv[1]) else "up to date")
    else:
        print(reference_markdown())
