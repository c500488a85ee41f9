"""The docs against the code: names they cite exist, the abridged config is the file, the settings tables are
Settings.

The generated sections (module table, bus reference, settings and CLI tables) are checked by
``test_architecture.py::test_generated_doc_sections_match_the_code``; these tests read the hand-written prose.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import yaml

import driftloop
from driftloop.core import bus
from driftloop.core.config import DatasetConfig, load_dataset_config
from driftloop.core.settings import PROJECT_DIR, Settings

PACKAGE_PREFIX = driftloop.__name__ + "."  # the package, not the bus prefix (same spelling)
DOCS = ["README.md", "docs/architecture.md", "docs/serving.md", "docs/production.md"]


def _modules_by_short_name() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(driftloop.__path__, PACKAGE_PREFIX):
        found.setdefault(info.name.rsplit(".", 1)[-1], []).append(info.name)
    return found


def _resolves(module: str, attrs: list[str]) -> bool:
    """True when ``module`` (or the longest importable prefix of ``module.attrs``) has the attributes."""
    parts = [*module.split("."), *attrs]
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if hasattr(obj, attr):
                obj = getattr(obj, attr)
            elif attr in getattr(obj, "__dataclass_fields__", {}):
                return True
            else:
                return False
        return True
    return False


FILE_SUFFIXES = (".md", ".yaml", ".yml", ".py", ".json", ".csv", ".parquet", ".html", ".png", ".log", ".txt")


def cited_names(text: str) -> list[str]:
    """``module.name`` citations in backticks (``snapshots.write_snapshot``, ``bus.GATE_TAG``,
    ``training.folds``)."""
    return re.findall(r"`((?:driftloop\.)?[a-z_]+(?:\.[A-Za-z_]\w*)+)(?:\(\))?`", text)


@pytest.mark.parametrize("doc", DOCS)
def test_names_cited_in_the_docs_exist(doc):
    modules = _modules_by_short_name()
    sections = {
        name for name, f in DatasetConfig.__dataclass_fields__.items() if hasattr(f.default, "__dict__")
    }
    sections.add("source")
    config_classes = {name: type(f.default) for name, f in DatasetConfig.__dataclass_fields__.items()}
    tag_keys = {v for v in vars(bus).values() if isinstance(v, str) and v.startswith(bus.PREFIX)}
    missing = []
    for name in sorted(set(cited_names((PROJECT_DIR / doc).read_text()))):
        if name.endswith(FILE_SUFFIXES):
            continue
        if name in tag_keys:
            continue
        if name.startswith(PACKAGE_PREFIX):
            if not _resolves(name, []):
                missing.append(name)
            continue
        head, *rest = name.split(".")
        if head == "contract":
            continue  # the contract mapping is free-form (driftloop.data.contract reads it)
        if head in sections and head in config_classes:
            key = rest[0]
            fields = getattr(config_classes[head], "__dataclass_fields__", {})
            if key in fields:
                continue
        if head not in modules and head not in sections:
            continue  # not a citation of ours (file names, hosts, other libraries)
        full = [m for m in modules.get(head, []) if _resolves(m, rest)]
        if not full:
            missing.append(name)
    assert missing == [], f"{doc} cites names the code does not have: {missing}"


def test_cited_name_check_catches_a_renamed_function():
    text = "`snapshots.write_snapshot`, `inference.score_batch`, `training.folds`, `tasks.model_input`"
    assert cited_names(text) == [
        "snapshots.write_snapshot",
        "inference.score_batch",
        "training.folds",
        "tasks.model_input",
    ]


def _readme_abridged_config() -> dict:
    readme = (PROJECT_DIR / "README.md").read_text()
    block = re.search(r"The telco config, abridged:\n\n```yaml\n(.*?)```", readme, re.S)
    assert block, "README lost its abridged telco config"
    return yaml.safe_load(block.group(1))


def test_the_readme_abridged_config_says_what_the_file_says():
    shown = _readme_abridged_config()
    path = PROJECT_DIR / "include" / "configs" / "telco_churn.yaml"
    raw = yaml.safe_load(path.read_text())
    cfg = load_dataset_config("telco_churn", Settings.from_env({}))
    wrong = []
    for key, value in shown.items():
        if isinstance(value, dict) and key not in ("features", "contract", "source"):
            for sub, sub_value in value.items():
                # a key the file leaves out must be shown with the default the config gets
                actual = (raw.get(key) or {}).get(sub, getattr(getattr(cfg, key), sub, None))
                if isinstance(actual, tuple):
                    actual = list(actual)
                if sub_value != actual:
                    wrong.append(f"{key}.{sub}: README {sub_value!r}, file {actual!r}")
        elif value != ["..."] and key != "features" and raw.get(key) != value:
            wrong.append(f"{key}: README {value!r}, file {raw.get(key)!r}")
    assert wrong == [], "README's abridged telco config differs from the file:\n" + "\n".join(wrong)


def _table_rows(doc: str) -> dict[str, str]:
    text = (PROJECT_DIR / doc).read_text()
    return dict(re.findall(r"^\| `([A-Z][A-Z_]+)` \| ([^|]+) \|", text, re.M))


def test_every_setting_is_documented_once_with_its_default():
    readme, serving = _table_rows("README.md"), _table_rows("docs/serving.md")
    assert set(readme) & set(serving) == set()
    documented = {**readme, **serving}
    variables = {f.validation_alias: name for name, f in Settings.model_fields.items()}
    assert set(documented) == set(variables)
    defaults = Settings.from_env({})
    for variable, shown in documented.items():
        literal = re.fullmatch(r"`([^`]*)`", shown.strip())
        if not literal:
            continue  # a described default ("SQLite under ..."), not a value
        value = getattr(defaults, variables[variable])
        if isinstance(value, Path):
            value = "./" + str(value.relative_to(PROJECT_DIR))
        elif isinstance(value, float):
            value = f"{value:g}"
        assert literal.group(1) == str(value), f"{variable}: docs say {shown}, Settings gives {value!r}"
