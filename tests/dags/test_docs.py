"""The docs against the code: names they cite exist, the abridged config is the file, the settings tables are
Settings.

The generated sections (module table, bus reference, settings and CLI tables) are checked by
``test_architecture.py::test_generated_doc_sections_match_the_code``; these tests read the hand-written prose.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import typing
from pathlib import Path

import pytest
import yaml

import driftloop
from driftloop.core import bus
from driftloop.core.config import DatasetConfig, load_dataset_config
from driftloop.core.settings import PROJECT_DIR, Settings

PACKAGE_PREFIX = driftloop.__name__ + "."  # the package, not the bus prefix (same spelling)
DOCS = ["README.md", *sorted(str(p.relative_to(PROJECT_DIR)) for p in (PROJECT_DIR / "docs").glob("*.md"))]


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
    config_classes["source"] = typing.get_type_hints(DatasetConfig)["source"]  # required: no default to read
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


# ---- Other names the prose cites: make targets, environment variables, CLI commands and flags, DAGs.
def code_text(text: str) -> list[str]:
    """The code a Markdown text shows: fenced blocks line by line, then inline code spans."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return [line for block in blocks for line in block.splitlines()] + re.findall(r"`([^`\n]+)`", prose)


def make_targets_cited(text: str) -> set[str]:
    """Targets of every ``make <target>`` the code of ``text`` runs."""
    return {m for code in code_text(text) for m in re.findall(r"(?<![\w./-])make ([a-z][\w-]*)", code)}


def makefile_targets(makefile: str) -> set[str]:
    """Targets the Makefile defines (rules, not variable assignments)."""
    return {
        target
        for line in re.findall(r"^([A-Za-z0-9_.\- ]+):(?!=)", makefile, re.M)
        for target in line.split()
    }


def missing_make_targets(text: str, makefile: str) -> list[str]:
    """``make`` targets ``text`` cites that ``makefile`` does not define."""
    return sorted(make_targets_cited(text) - makefile_targets(makefile))


@pytest.mark.parametrize("doc", DOCS)
def test_make_targets_named_in_the_docs_exist(doc):
    makefile = (PROJECT_DIR / "Makefile").read_text()
    missing = missing_make_targets((PROJECT_DIR / doc).read_text(), makefile)
    assert missing == [], f"{doc} runs make targets the Makefile does not define: {missing}"


def test_a_make_target_missing_from_the_makefile_is_caught():
    makefile = "demo: venv\n\t$(BIN)/driftloop demo\nPYTEST_ARGS ?=\nSTAMP := x\n"
    text = "Run `make demo`, then `DRIFTLOOP_DATASET=x make foo` or\n```bash\nmake bar  # comment\n```\n"
    assert missing_make_targets(text, makefile) == ["bar", "foo"]
    assert makefile_targets(makefile) == {"demo"}  # variables are not targets


ENV_NAME = re.compile(r"\bDRIFTLOOP_[A-Z0-9_]*[A-Z0-9]\b")
# Where a variable that is not a setting must be read or set: the code, tests, images and deployment files.
ENV_SOURCES = ("include", "plugins", "dags", "tests", "bench", "deploy")
ENV_FILES = ("Makefile", "docker-compose.yaml", ".env.example", "Dockerfile", "pyproject.toml")


def _non_doc_text() -> str:
    paths = [p for folder in ENV_SOURCES for p in (PROJECT_DIR / folder).rglob("*") if p.is_file()]
    paths += [PROJECT_DIR / name for name in ENV_FILES if (PROJECT_DIR / name).is_file()]
    texts = []
    for path in paths:
        if path.suffix not in (".md", ".pyc", ".png", ".parquet", ".gz"):
            try:
                texts.append(path.read_text())
            except (UnicodeDecodeError, OSError):
                continue
    return "\n".join(texts)


def unknown_variables(text: str, settings: set[str], elsewhere: str) -> list[str]:
    """``DRIFTLOOP_*`` names in ``text`` that are neither a setting nor named in ``elsewhere`` (the code)."""
    return sorted(
        {v for v in ENV_NAME.findall(text) if v not in settings and not re.search(rf"\b{v}\b", elsewhere)}
    )


def test_environment_variables_named_in_the_docs_exist():
    settings = {
        f.validation_alias for f in Settings.model_fields.values() if isinstance(f.validation_alias, str)
    }
    elsewhere = _non_doc_text()
    missing = {doc: unknown_variables((PROJECT_DIR / doc).read_text(), settings, elsewhere) for doc in DOCS}
    assert {doc: names for doc, names in missing.items() if names} == {}, (
        "variables the docs name that no setting, script or test reads"
    )


def test_a_variable_nobody_reads_is_caught():
    text = "`DRIFTLOOP_HOME` and `DRIFTLOOP_SERVING_DATASET`, `DRIFTLOOP_GONE_S`"
    assert unknown_variables(text, {"DRIFTLOOP_HOME"}, "x = env['DRIFTLOOP_SERVING_DATASET']") == [
        "DRIFTLOOP_GONE_S"
    ]


def _cli_options() -> dict[str, dict[str, set[str]]]:
    """Command -> sub-command ('' for a leaf command) -> its options, from ``driftloop.cli.build_parser``."""
    import argparse

    from driftloop.cli import build_parser

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return dict(actions[0].choices) if actions else {}

    def options(parser: argparse.ArgumentParser) -> set[str]:
        return {o for a in parser._actions for o in a.option_strings}

    tree: dict[str, dict[str, set[str]]] = {}
    for name, sub in subcommands(build_parser()).items():
        leaves = subcommands(sub)
        tree[name] = {leaf: options(p) for leaf, p in leaves.items()} if leaves else {"": options(sub)}
    return tree


def unknown_cli_names(text: str, tree: dict[str, dict[str, set[str]]]) -> list[str]:
    """``driftloop <command> [<sub-command>] ... --flag`` in the code of ``text`` whose command, sub-command
    or flag the CLI does not have. A flag counts until the end of the shell command (``|``, ``;``, ``&&``)."""
    wrong = []
    for code in code_text(text):
        for match in re.finditer(r"(?<![\w./:-])driftloop ([a-z][a-z-]*)(?=\s|$)([^|;&]*)", code):
            command, rest = match.group(1), match.group(2).split()
            if command not in tree:
                wrong.append(f"driftloop {command}")
                continue
            leaves = tree[command]
            leaf = "" if "" in leaves else (rest[0] if rest else None)
            if leaf is None:
                continue  # the group named alone (`driftloop lineage`)
            if leaf not in leaves:
                wrong.append(f"driftloop {command} {leaf}")
                continue
            wrong += [
                f"driftloop {command} {leaf} {flag}".replace("  ", " ")
                for word in rest
                if (flag := word.split("=")[0].strip("[]()`'\"")).startswith("--")
                and flag not in leaves[leaf]
            ]
    return sorted(set(wrong))


@pytest.mark.parametrize("doc", DOCS)
def test_cli_commands_and_flags_named_in_the_docs_exist(doc):
    wrong = unknown_cli_names((PROJECT_DIR / doc).read_text(), _cli_options())
    assert wrong == [], f"{doc} names driftloop commands or flags the CLI does not have: {wrong}"


def test_a_renamed_cli_flag_is_caught():
    tree = {"rollback": {"": {"--reason", "--to"}}, "lineage": {"model": {"--dataset"}}}
    text = (
        "`driftloop rollback --reason x --to 3`, `driftloop rollback --version 3`, `driftloop lineage`, "
        "`driftloop lineage card 3`, `driftloop rewind`, `driftloop entrypoint: message`, "
        "`driftloop_airflow x`"
    )
    assert unknown_cli_names(text, tree) == [
        "driftloop lineage card",
        "driftloop rewind",
        "driftloop rollback --version",
    ]


def dag_tasks() -> dict[str, set[str]]:
    """DAG name -> task ids, from the DAG files: ``@task`` functions and ``task_id=`` arguments."""
    import ast

    found: dict[str, set[str]] = {}
    for path in sorted((PROJECT_DIR / "dags").glob("*.py")):
        tree = ast.parse(path.read_text())
        constants = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        tasks = {
            n.name
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and any("task" in ast.unparse(d) for d in n.decorator_list)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "task_id":
                value = node.value
                name = (
                    value.value
                    if isinstance(value, ast.Constant)
                    else constants.get(getattr(value, "id", ""))
                )
                if isinstance(name, str):
                    tasks.add(name)
        found[path.stem] = tasks
    return found


def unknown_dag_names(text: str, tasks: dict[str, set[str]], datasets: set[str]) -> list[str]:
    """``<dataset>__<dag>`` ids and ``<dag>.<task>`` citations in ``text`` that name no DAG or task."""
    wrong = [
        f"{dataset}__{dag}"
        for dataset, dag in re.findall(r"`([a-z][a-z0-9_]*?)__([a-z_]+)`", text)
        if dataset not in datasets or dag not in bus.DAG_NAMES
    ]
    for dag, task in re.findall(r"`([a-z_]+)\.([a-z_]+)(?:\(\))?`", text):
        if dag in bus.DAG_NAMES and task != "py" and task not in tasks.get(dag, set()):
            wrong.append(f"{dag}.{task}")
    return sorted(set(wrong))


@pytest.mark.parametrize("doc", DOCS)
def test_dag_ids_and_tasks_named_in_the_docs_exist(doc):
    from driftloop.core.catalog import list_config_paths

    datasets = {p.stem for p in list_config_paths(PROJECT_DIR / "include" / "configs")}
    wrong = unknown_dag_names((PROJECT_DIR / doc).read_text(), dag_tasks(), datasets)
    assert wrong == [], f"{doc} names DAG ids or tasks the DAG files do not have: {wrong}"


def test_a_renamed_task_or_dag_is_caught():
    tasks = {"training_pipeline": {"train_model", "promote_model"}, "data_pipeline": {"ingest_batches"}}
    text = (
        "`training_pipeline.promote_model`, `training_pipeline.promote`, `data_pipeline.py`, "
        "`telco_churn__data_pipeline`, `telco_churn__data_pipe`, `bank__data_pipeline`"
    )
    assert unknown_dag_names(text, tasks, {"telco_churn"}) == [
        "bank__data_pipeline",
        "telco_churn__data_pipe",
        "training_pipeline.promote",
    ]
