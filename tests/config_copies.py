"""Dataset config folders for tests: shipped configs copied under new names, with their companion files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from driftloop.core.settings import PROJECT_DIR

SHIPPED_DIR = PROJECT_DIR / "include" / "configs"


def copy_config(
    config_dir: Path, source: str, name: str, file_stem: str | None = None, **changes: Any
) -> Path:
    """Write ``<file_stem or name>.yaml`` into ``config_dir``: shipped config ``source`` renamed to ``name``.

    The model name becomes ``name`` with dashes unless ``changes`` sets it; ``changes`` are top-level keys (a
    nested mapping replaces the section). Companion files (``<source>.*.yaml``) are copied as they are, so the
    copy's ``contract.path`` and ``gates.behaviour`` still resolve.

    Returns:
        The written config file.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((SHIPPED_DIR / f"{source}.yaml").read_text())
    raw.update({"name": name, "model_name": name.replace("_", "-"), **changes})
    for companion in SHIPPED_DIR.glob(f"{source}.*.yaml"):
        if not (config_dir / companion.name).exists():
            shutil.copy(companion, config_dir / companion.name)
    path = config_dir / f"{file_stem or name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
