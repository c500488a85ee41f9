"""Simulator: turns a dataset into a reference period and a stream of batches dropped into the landing zone.

Batches can carry injected drift (covariate shift on chosen columns, a shifted category mix, label shift), and
their labels arrive later than their features: ``simulate_batch`` keeps the labels aside and
``simulate_labels`` delivers them to the labels landing zone when asked.

Everything is seeded, so the same call writes the same bytes (a rerun is a replay, not new data). The landing
zone is a local folder or an object-store prefix; each file appears whole (a rename, or one PUT).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from driftloop.core.config import DatasetConfig, load_dataset_config
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.storage import StoragePath, atomic_path, is_file, open_input, write_bytes_atomic
from driftloop.core.task_types import BINARY, REGRESSION

REFERENCE_NAME = "reference"


def _split_pools(cfg: DatasetConfig, reference_share: float, seed: int) -> tuple[Any, Any]:
    from driftloop.data.sources import load_source_frame

    frame = load_source_frame(cfg).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cut = int(round(len(frame) * reference_share))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def _pending_labels_dir(paths: StatePaths) -> StoragePath:
    return paths.root / "simulator" / "pending_labels"


def _write_csv_atomic(frame: Any, path: StoragePath) -> None:
    # Written whole (a rename, or one PUT): a poller never reads a half-written batch from the landing zone.
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def simulate_reference(
    cfg: DatasetConfig, reference_share: float = 0.5, seed: int = 7, settings: Settings | None = None
) -> dict[str, Any]:
    """Drop the labelled reference period (the first training data) into the landing zone.

    Args:
        cfg: Dataset config.
        reference_share: Share of the dataset that forms the reference period; the rest feeds batches.
        seed: Shuffle seed shared with :func:`simulate_batch`, so reference and batches never overlap.
        settings: Process settings (default: from the environment).

    Returns:
        ``{"path", "rows"}`` of the landing file.
    """
    paths = StatePaths.for_dataset(cfg, settings)
    reference, _ = _split_pools(cfg, reference_share, seed)
    path = paths.landing_dir / f"{REFERENCE_NAME}.csv"
    _write_csv_atomic(reference, path)
    return {"path": str(path), "rows": len(reference)}


def _integer_columns(cfg: DatasetConfig, frame: Any) -> set[str]:
    """Columns whose drifted values must stay whole: integer in the source, or ``int64`` in the contract."""
    from driftloop.data.contract.schema import ContractError, load_contract

    integer = {c for c in frame.columns if frame[c].dtype.kind in "iu"}
    try:
        contract = load_contract(cfg)
    except (
        ContractError
    ):  # no contract yet (it is bootstrapped from the same source): the source dtype decides
        return integer
    return integer | {c for c, rule in contract.columns.items() if rule.dtype == "int64"}


def _affine(values: Any, scale: float, shift: float, integer: bool) -> Any:
    """``values * scale + shift``, clipped at 0 when no value was negative, whole again when ``integer``."""
    moved = values.astype(float) * scale + shift
    if (values.dropna() >= 0).all():
        moved = moved.clip(lower=0)  # charges, counts and prices stay plausible
    return moved.round().astype("Int64") if integer else moved.round(2)


def _class_shares(cfg: DatasetConfig, labels: Any, spec: Any) -> dict[str, float]:
    """Every class's share after a label shift: named shares as given, the other classes keep their
    proportions.

    ``spec`` is ``{label: share}``, or one number: the positive class's share (binary) or the rarest class's
    share (multiclass).

    Raises:
        ValueError: A label is not in ``labels``, a share is outside [0, 1], or the shares cannot add up to 1.
    """
    seen = labels.astype(str).value_counts(normalize=True)
    if isinstance(spec, dict):
        named = {str(k): float(v) for k, v in spec.items()}
    else:
        named = {cfg.positive_label if cfg.task == BINARY else str(seen.idxmin()): float(spec)}
    unknown = sorted(set(named) - set(seen.index))
    if unknown:
        raise ValueError(
            f"label shift: {unknown} not among the labels {sorted(seen.index)} of {cfg.target!r}"
        )
    rest = seen.drop(list(named))
    total = sum(named.values())
    if (
        any(not 0 <= v <= 1 for v in named.values())
        or total > 1 + 1e-9
        or (rest.empty and abs(total - 1) > 1e-9)
    ):
        raise ValueError(
            f"label shift: shares {named} must lie in [0, 1] and add up to 1 with the other classes"
        )
    return {**named, **(rest / rest.sum() * (1 - total)).to_dict()} if not rest.empty else named


def _resample_classes(out: Any, cfg: DatasetConfig, shares: dict[str, float], seed: int) -> Any:
    """Resample rows so each class reaches its share (label shift: features given the class are unchanged)."""
    import numpy as np
    import pandas as pd

    labels = out[cfg.target].astype(str)
    exact = np.array([shares[c] * len(out) for c in shares])
    counts = np.floor(exact).astype(int)
    # Largest remainders get the rows rounding left over, so the batch keeps its size.
    counts[np.argsort(counts - exact)[: len(out) - counts.sum()]] += 1
    parts = [
        out[labels == label].sample(n=int(n), replace=n > (labels == label).sum(), random_state=seed)
        for label, n in zip(shares, counts, strict=True)
        if n
    ]
    out = pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    # Resampling with replacement repeats entities; give repeats fresh ids so ids stay unique.
    dup = out[cfg.id_column].duplicated()
    out.loc[dup, cfg.id_column] = [f"{v}-r{i}" for i, v in enumerate(out.loc[dup, cfg.id_column])]
    return out


def _shift_target_values(out: Any, cfg: DatasetConfig, spec: Any, integer: bool) -> Any:
    """A regression target moved to ``y * scale + shift`` (``spec``: a scale, or ``{"scale", "shift"}``)."""
    spec = spec if isinstance(spec, dict) else {"scale": spec}
    unknown = sorted(set(spec) - {"scale", "shift"})
    if unknown:
        raise ValueError(f"label shift of a regression target takes scale and shift, not {unknown}")
    out = out.copy()
    out[cfg.target] = _affine(
        out[cfg.target], float(spec.get("scale", 1.0)), float(spec.get("shift", 0.0)), integer
    )
    return out


def _mix_categories(out: Any, frame: Any, cfg: DatasetConfig, category_mix: dict[str, Any], rng: Any) -> None:
    for col, mix in category_mix.items():
        if col not in cfg.categorical_features:
            raise ValueError(f"category-mix drift on {col!r}: not a categorical feature of {cfg.name}")
        for category, share in mix.items():
            seen = set(frame[col].dropna().unique())
            value = type(next(iter(seen)))(category) if seen else category
            if value not in seen:
                raise ValueError(
                    f"category-mix drift: {category!r} is not a category of {col!r} ({sorted(seen)})"
                )
            mask = rng.random(len(out)) < float(share)
            out.loc[mask, col] = value


def apply_drift(frame: Any, cfg: DatasetConfig, drift: dict[str, Any], seed: int) -> Any:
    """Return a copy of ``frame`` with the drift described by ``drift`` injected.

    Integer columns stay integer (drifted values are rounded); float columns stay float.

    ``drift`` keys (all optional):
        ``covariate``: ``{column: {"scale": s, "shift": d}}`` — numeric ``x * s + d`` (clipped at 0 when the
            column was non-negative, so charges and tenure stay plausible).
        ``category_mix``: ``{column: {category: share}}`` — that share of rows is set to that category.
        ``label_shift``, per task: binary, the positive class's share; multiclass, ``{label: share}`` (other
            classes keep their relative proportions) or one number, the rarest class's share (classes are
            reached by resampling rows); regression, ``{"scale": s, "shift": d}`` or one number (a scale)
            applied to the target values.
        ``preset``: ``"strong"`` — every numeric column shifted by one standard deviation and every
            categorical column concentrated on its rarest category for 70% of rows.

    Raises:
        ValueError: A named column is not a feature, a category or label is not seen in the data, or the label
            shift does not fit the task.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    out = frame.copy()
    covariate = dict(drift.get("covariate", {}))
    category_mix = dict(drift.get("category_mix", {}))
    if drift.get("preset") == "strong":
        for col in cfg.numeric_features:
            covariate.setdefault(col, {"shift": float(frame[col].std())})
        for col in cfg.categorical_features:
            rarest = frame[col].value_counts().idxmin()
            category_mix.setdefault(col, {rarest: 0.7})
    shifts_values = "label_shift" in drift and cfg.task == REGRESSION
    integer = _integer_columns(cfg, frame) if covariate or shifts_values else set()
    if shifts_values:
        out = _shift_target_values(out, cfg, drift["label_shift"], cfg.target in integer)
    elif "label_shift" in drift:
        out = _resample_classes(out, cfg, _class_shares(cfg, out[cfg.target], drift["label_shift"]), seed)
    for col, spec in covariate.items():
        if col not in cfg.numeric_features:
            raise ValueError(f"covariate drift on {col!r}: not a numeric feature of {cfg.name}")
        out[col] = _affine(
            out[col], float(spec.get("scale", 1.0)), float(spec.get("shift", 0.0)), col in integer
        )
    _mix_categories(out, frame, cfg, category_mix, rng)
    return out


def simulate_batch(
    cfg: DatasetConfig,
    index: int,
    rows: int = 1000,
    drift: dict[str, Any] | None = None,
    reference_share: float = 0.5,
    seed: int = 7,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Drop scoring batch ``index`` (features only) into the landing zone and keep its labels for later.

    Args:
        cfg: Dataset config.
        index: Batch number (1, 2, …); names the file ``batch_<index:03d>.csv``.
        rows: Rows in the batch: slice ``index`` of the shuffled non-reference pool while it lasts, a
            resample with fresh ids after that.
        drift: Drift to inject (see :func:`apply_drift`); None for a clean batch.
        reference_share: As in :func:`simulate_reference`.
        seed: As in :func:`simulate_reference`.
        settings: Process settings.

    Returns:
        ``{"path", "rows", "batch_name", "drift"}``.
    """
    paths = StatePaths.for_dataset(cfg, settings)
    _, pool = _split_pools(cfg, reference_share, seed)
    # Consecutive batches take consecutive slices of the shuffled pool, so a customer appears in one batch
    # only (late labels of one batch never label another) until the pool runs out; after that, rows repeat
    # with fresh ids.
    start = (index - 1) * rows
    if start + rows <= len(pool):
        batch = pool.iloc[start : start + rows].reset_index(drop=True)
    else:
        batch = pool.sample(n=rows, replace=rows > len(pool), random_state=seed + index).reset_index(
            drop=True
        )
        batch[cfg.id_column] = [f"{v}-b{index}-{i}" for i, v in enumerate(batch[cfg.id_column])]
    if drift:
        batch = apply_drift(batch, cfg, drift, seed=seed + index)
    name = f"batch_{index:03d}"
    _write_csv_atomic(batch.drop(columns=[cfg.target]), paths.landing_dir / f"{name}.csv")
    pending = _pending_labels_dir(paths) / f"{name}.csv"
    _write_csv_atomic(batch[[cfg.id_column, cfg.target]], pending)
    return {
        "path": str(paths.landing_dir / f"{name}.csv"),
        "rows": len(batch),
        "batch_name": name,
        "drift": drift,
    }


def simulate_labels(cfg: DatasetConfig, index: int, settings: Settings | None = None) -> dict[str, Any]:
    """Deliver the labels of batch ``index`` to the labels landing zone (they arrive after the features).

    Raises:
        FileNotFoundError: Batch ``index`` was never simulated.
    """
    paths = StatePaths.for_dataset(cfg, settings)
    name = f"batch_{index:03d}"
    pending = _pending_labels_dir(paths) / f"{name}.csv"
    if not is_file(pending):
        raise FileNotFoundError(f"no pending labels for {name}: simulate the batch first ({pending})")
    target = paths.labels_landing_dir / f"labels_{name}.csv"
    with open_input(pending) as handle:
        content = handle.read()
    write_bytes_atomic(target, content)
    return {"path": str(target), "batch_name": name}


def _parse_label_shift(text: str) -> float | dict[str, float]:
    """``0.6`` or ``LABEL=SHARE,...`` (classes) or ``scale=S,shift=D`` (regression)."""
    if "=" not in text:
        return float(text)
    return {key.strip(): float(value) for key, _, value in (item.rpartition("=") for item in text.split(","))}


def _parse_drift(args: argparse.Namespace) -> dict[str, Any] | None:
    drift: dict[str, Any] = {}
    if args.drift_preset:
        drift["preset"] = args.drift_preset
    for item in args.covariate or []:
        col, _, spec = item.partition("=")
        scale, _, shift = spec.partition(",")
        drift.setdefault("covariate", {})[col] = {"scale": float(scale or 1), "shift": float(shift or 0)}
    for item in args.category_mix or []:
        col, _, spec = item.partition("=")
        category, _, share = spec.rpartition("@")
        drift.setdefault("category_mix", {}).setdefault(col, {})[category] = float(share)
    if args.label_shift is not None:
        drift["label_shift"] = _parse_label_shift(args.label_shift)
    if args.drift_json:
        drift.update(json.loads(args.drift_json))
    return drift or None


def _cmd_simulate(args: argparse.Namespace) -> int:
    from driftloop.core.commands import print_result

    cfg = load_dataset_config(args.dataset)
    if args.what == "reference":
        print_result(simulate_reference(cfg, reference_share=args.reference_share))
    elif args.what == "batch":
        print_result(
            simulate_batch(
                cfg,
                args.index,
                rows=args.rows,
                drift=_parse_drift(args),
                reference_share=args.reference_share,
            )
        )
    else:
        print_result(simulate_labels(cfg, args.index))
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop simulate reference|batch|labels``."""
    from driftloop.core.commands import dataset_parent

    parser = subparsers.add_parser(
        "simulate", parents=[dataset_parent()], help="drop simulated reference data, batches or late labels"
    )
    parser.add_argument("what", choices=["reference", "batch", "labels"])
    parser.add_argument("--index", type=int, default=1, help="batch number (batch, labels)")
    parser.add_argument("--rows", type=int, default=1000, help="rows per batch")
    parser.add_argument("--reference-share", type=float, default=0.5)
    parser.add_argument("--drift-preset", choices=["strong"], help="shift every feature")
    parser.add_argument("--covariate", action="append", metavar="COL=SCALE[,SHIFT]", help="e.g. tenure=3,0")
    parser.add_argument(
        "--category-mix",
        action="append",
        metavar="COL=CATEGORY@SHARE",
        help="e.g. contract=Month-to-month@0.9",
    )
    parser.add_argument(
        "--label-shift",
        metavar="SHARE|LABEL=SHARE,...|scale=S,shift=D",
        help="binary: positive share; multiclass: rarest class's share or shares per label; "
        "regression: target scale (and shift)",
    )
    parser.add_argument("--drift-json", help="drift spec as JSON (see driftloop.data.simulate.apply_drift)")
    parser.set_defaults(func=_cmd_simulate)
