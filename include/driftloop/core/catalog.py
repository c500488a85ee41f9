"""The dataset catalog: which dataset configs one deployment serves, each usable or refused with a reason.

The Airflow DAG factory (``driftloop_airflow.factory``) reads it when a DAG file is parsed, so it stays cheap
and pure: PyYAML (its C loader when present) and the package's config validation, no I/O beyond reading the
configs. ``DRIFTLOOP_CONFIG_OVERRIDES`` is not applied here; it is applied when a task loads its config, so a
bad override fails tasks, not parsing.

A dataset config is ``<config_dir>/<name>.yaml``. Files named ``<name>.<kind>.yaml`` are companions of a
config (``telco_churn.contract.yaml``, ``telco_churn.behaviour.yaml``), and so is any file a config names as
its ``contract.path`` or ``gates.behaviour``. A config is refused, with a message naming its file and the key,
when:

* it does not parse or validate (:func:`driftloop.core.config.parse_dataset_config`);
* its ``name`` differs from its file name: DAG ids, ``--dataset`` and ``load_dataset_config`` find a dataset
  by its file name, while MLflow experiments and the state folder use ``name``, so the two must agree;
* its file name is not a dataset name (letters, digits, ``_`` and ``-``; it becomes part of DAG ids and URIs);
* another config registers the same model (``model_name``, or the default derived from ``name``) or keeps its
  state in the same folder: then both are refused, each message naming both files, because either would
  overwrite the other's champion or data. Names are compared case-insensitively.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from driftloop.core.config import DatasetConfig, parse_dataset_config
from driftloop.core.errors import ConfigError
from driftloop.core.settings import Settings
from driftloop.core.storage import is_remote_uri, location

DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
DATASETS_ENV = "DRIFTLOOP_DATASETS"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster, same safe subset


@dataclass(frozen=True)
class CatalogEntry:
    """One dataset config file and what became of it.

    Attributes:
        name: The file name without ``.yaml``: the dataset's name in DAG ids.
        path: The config file.
        config: The validated config (without ``DRIFTLOOP_CONFIG_OVERRIDES``); None when refused.
        error: Why the config is refused (names the file and the key); empty when usable.
    """

    name: str
    path: Path
    config: DatasetConfig | None = None
    error: str = ""

    @property
    def usable(self) -> bool:
        """True when the deployment builds DAGs for this config."""
        return self.config is not None and not self.error


@dataclass(frozen=True)
class Catalog:
    """The dataset configs of a deployment.

    Attributes:
        config_dir: Where the configs were read.
        entries: One entry per selected config file, by name.
        problems: Problems that belong to no config file (``DRIFTLOOP_DATASETS`` naming a missing config).
    """

    config_dir: Path
    entries: tuple[CatalogEntry, ...]
    problems: tuple[str, ...] = ()

    @property
    def datasets(self) -> list[str]:
        """Names of the usable configs, sorted."""
        return [entry.name for entry in self.entries if entry.usable]

    @property
    def refused(self) -> list[CatalogEntry]:
        """The refused configs."""
        return [entry for entry in self.entries if not entry.usable]

    def describe_problems(self) -> str:
        """Every refused config and catalog problem, one per line; empty when there is none."""
        lines = [*self.problems, *(entry.error for entry in self.refused)]
        return "\n".join(f"- {line}" for line in lines)


def list_config_paths(config_dir: Path) -> list[Path]:
    """Candidate dataset configs in ``config_dir``: ``*.yaml`` files whose name has no inner dot, sorted.

    ``<name>.<kind>.yaml`` files are companions (contracts, behavioural tests), never dataset configs.
    """
    if not config_dir.is_dir():
        return []
    return sorted(p for p in config_dir.glob("*.yaml") if "." not in p.stem and p.is_file())


def _companions(raw: dict[str, Any], config_path: Path) -> set[Path]:
    """Files a raw config names as its companions (``contract.path``, ``gates.behaviour``), resolved."""
    named = []
    contract, gates = raw.get("contract"), raw.get("gates")
    if isinstance(contract, dict) and isinstance(contract.get("path"), str):
        named.append(contract["path"])
    if isinstance(gates, dict) and isinstance(gates.get("behaviour"), str) and gates["behaviour"]:
        named.append(gates["behaviour"])
    return {(config_path.parent / rel).resolve() for rel in named}


def _read_raw(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The YAML mapping of ``path``, or None and why it cannot be read (the message names the file)."""
    try:
        raw = yaml.load(path.read_text(), Loader=_LOADER)  # a safe loader
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path}: cannot be read: {exc}"
    except yaml.YAMLError as exc:
        return None, f"{path}: is not valid YAML: {' '.join(str(exc).split())}"
    if not isinstance(raw, dict):
        return None, f"{path}: top level must be a mapping, got {type(raw).__name__}"
    return raw, ""


def _validate(name: str, path: Path, raw: dict[str, Any] | None, error: str) -> CatalogEntry:
    """One config file on its own: its name, its content, its ``name`` key."""
    if not DATASET_NAME.fullmatch(name):
        return CatalogEntry(
            name,
            path,
            error=f"{path}: the file name {name!r} is not a dataset name "
            "(letters, digits, '_' and '-'; it becomes part of DAG ids)",
        )
    if raw is None:
        return CatalogEntry(name, path, error=error)
    try:
        cfg = parse_dataset_config(raw, str(path))
    except ConfigError as exc:
        return CatalogEntry(name, path, error=str(exc))
    if cfg.name != name:
        return CatalogEntry(
            name,
            path,
            cfg,
            f"{path}: name: {cfg.name!r} differs from the file name {name!r}; "
            f"rename the file to {cfg.name}.yaml or set name: {name}",
        )
    return CatalogEntry(name, path, cfg)


def state_root(cfg: DatasetConfig, settings: Settings) -> str:
    """Where ``cfg``'s data zones live, as :attr:`StatePaths.root <driftloop.core.state.StatePaths.root>`
    names it, without importing an object-store client at DAG parse (``s3://...`` stays text)."""
    root = settings.data_root_uri
    if is_remote_uri(root):
        return f"{root.rstrip('/')}/{cfg.name}"
    return str(location(root) / cfg.name)


def _refuse_clashes(entries: list[CatalogEntry], settings: Settings) -> list[CatalogEntry]:
    """Refuse every config that shares a registered model or a state folder with another one."""
    owners: dict[tuple[str, str], list[CatalogEntry]] = defaultdict(list)
    for entry in entries:
        if entry.config is not None:
            cfg = entry.config
            owners["model_name", cfg.registered_model_name.casefold()].append(entry)
            owners["name", state_root(cfg, settings).casefold()].append(entry)
    clashes: dict[Path, list[str]] = defaultdict(list)
    for (key, _), group in owners.items():
        if len(group) < 2:
            continue
        files = ", ".join(str(e.path) for e in group)
        first = group[0].config
        assert first is not None  # only entries with a config were grouped
        what = (
            f"register the same model {first.registered_model_name!r}"
            if key == "model_name"
            else f"keep state in the same folder {state_root(first, settings)}"
        )
        for entry in group:
            clashes[entry.path].append(f"{entry.path}: {key}: {files} {what}; each dataset needs its own")
    checked = []
    for entry in entries:
        if entry.path in clashes:
            reasons = [entry.error, *clashes[entry.path]] if entry.error else clashes[entry.path]
            entry = CatalogEntry(entry.name, entry.path, None, "; ".join(reasons))
        checked.append(entry)
    return checked


def read_catalog(settings: Settings | None = None) -> Catalog:
    """Read and check the deployment's dataset configs (``DRIFTLOOP_DATASETS`` restricts which ones).

    Never raises for a bad config: each problem is recorded on its entry, so one broken config cannot take the
    others down.

    Args:
        settings: Process settings (config folder, selection, home folder); default :meth:`Settings.from_env`.

    Returns:
        The :class:`Catalog`.
    """
    settings = settings or Settings.from_env()
    config_dir = settings.config_dir
    problems: list[str] = []
    if not config_dir.is_dir():
        problems.append(f"DRIFTLOOP_CONFIG_DIR: {config_dir} is not a folder")
    if settings.datasets:
        paths = [config_dir / f"{name}.yaml" for name in settings.datasets]
        missing = [p.stem for p in paths if not p.is_file()]
        if missing:
            available = [p.stem for p in list_config_paths(config_dir)]
            problems.append(
                f"{DATASETS_ENV}: no config for {missing} in {config_dir} (available: {available})"
            )
        paths = sorted(p for p in paths if p.is_file())
    else:
        paths = list_config_paths(config_dir)
    raws = {path: _read_raw(path) for path in paths}
    companions = set().union(*(_companions(raw, path) for path, (raw, _) in raws.items() if raw))
    entries = [
        _validate(path.stem, path, raw, error)
        for path, (raw, error) in raws.items()
        if path.resolve() not in companions
    ]
    return Catalog(config_dir, tuple(_refuse_clashes(entries, settings)), tuple(problems))
