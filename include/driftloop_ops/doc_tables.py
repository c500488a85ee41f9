"""Generated sections of the docs: tables written from the code so they cannot drift from it.

The module table (from docstrings), the bus reference (from :mod:`driftloop.core.bus` itself), the environment
variables (from the fields of :class:`driftloop.core.settings.Settings`), the CLI commands (from
``driftloop.cli.build_parser``), the architecture rules (from :mod:`driftloop_ops.architecture_rules`, the
constants the tests enforce) and who sends each alert (from the DAG files' ``alerts=`` arguments). A document
carries each generated table between ``<!-- <name>:begin -->`` and ``<!-- <name>:end -->``.
``python -m driftloop_ops.doc_tables`` rewrites every section of every document listed in :data:`DOCUMENTS`;
``--check`` only reports the stale ones (exit 1). A test runs the check.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

PROJECT_DIR = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = (PROJECT_DIR / "include" / "driftloop", PROJECT_DIR / "include" / "driftloop_ops")


def _first_line(docstring: str | None) -> str:
    return (docstring or "").strip().split("\n\n")[0].replace("\n", " ").strip()


def _public_functions(tree: ast.Module, limit: int = 5) -> list[str]:
    names = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
        and not node.name.startswith("_")
        and node.name != "add_cli"
    ]
    return names[:limit]


def module_table() -> str:
    """One row per module of ``driftloop`` and ``driftloop_ops``, by folder: its docstring's first
    paragraph."""
    lines = []
    for package_dir in PACKAGE_DIRS:
        rows: dict[str, list[str]] = {}
        for path in sorted(package_dir.rglob("*.py")):
            relative = path.relative_to(package_dir.parent).with_suffix("")
            parts = relative.parts
            is_init = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_init else parts)
            folder = ".".join(parts[:-1])
            tree = ast.parse(path.read_text())
            job = _first_line(ast.get_docstring(tree)).replace("|", "\\|")
            if is_init:
                rows.setdefault(name, []).insert(0, f"| **`{name}`** | {job} | |")
                continue
            entry = ", ".join(f"`{n}`" for n in _public_functions(tree))
            rows.setdefault(folder, []).append(f"| `{name}` | {job} | {entry} |")
        for folder in sorted(rows):
            lines += rows[folder]
    return "\n".join(["| module | job | main entry points |", "|---|---|---|", *lines]) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    """A bus value as Markdown code: strings as they are, collections item by item."""
    if isinstance(value, dict):
        return ", ".join(f"`{k}` → `{v}`" for k, v in value.items())
    if isinstance(value, tuple | list):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def _comments(source: str) -> tuple[dict[int, str], set[int]]:
    """Comment text by line, and the lines that hold only a comment."""
    comments, alone = {}, set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
            if not tok.line[: tok.start[1]].strip():
                alone.add(tok.start[0])
    return comments, alone


def bus_table() -> str:
    """Every constant, function and manifest of :mod:`driftloop.core.bus`, in the module's order and sections.

    A ``# ----`` line followed by a comment starts a section; other comment lines above a constant head a
    group inside it; an end-of-line comment is the constant's note. Nothing is listed by hand, so a new
    constant shows up here as soon as it is added to the bus.
    """
    from driftloop.core import bus

    path = PROJECT_DIR / "include" / "driftloop" / "core" / "bus.py"
    source = path.read_text()
    comments, alone = _comments(source)
    lines: list[str] = []
    header = ["| name | value | note |", "|---|---|---|"]
    previous_end = 0
    for node in ast.parse(source).body:
        between = [n for n in range(previous_end + 1, node.lineno) if n in alone]
        previous_end = node.end_lineno or node.lineno
        texts = [comments[n] for n in between if not comments[n].startswith(("fmt:", "---"))]
        if any(comments[n].startswith("---") for n in between) and texts:
            lines += ["", f"**{texts[0]}**", "", *header]
            texts = texts[1:]
        if texts:
            lines.append(f"| *{_cell(' '.join(texts))}* | | |")
        note = " ".join(
            comments[n] for n in range(node.lineno, previous_end + 1) if n in comments and n not in alone
        )
        if isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in names:
                if name.isupper() and not lines:
                    lines += [*header]
                if name.isupper():
                    value = getattr(bus, name)
                    lines.append(f"| `bus.{name}` | {_cell(_code(value))} | {_cell(note)} |")
        elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            args = ", ".join(a.arg for a in node.args.args)
            doc = _first_line(ast.get_docstring(node)).split(". ")[0].rstrip(".")
            lines.append(f"| `bus.{node.name}({args})` | | {_cell(doc)} |")
        elif isinstance(node, ast.ClassDef):
            fields = [
                n.target.id
                for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            ]
            doc = _first_line(ast.get_docstring(node))
            lines.append(f"| `bus.{node.name}` | {_cell(_code(fields))} | {_cell(doc)} |")
    return "\n".join(lines).strip() + "\n"


def _shown_default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    shown = extra.get("shown_default") if isinstance(extra, dict) else None
    if shown:
        return str(shown)
    value = field.default
    if value in ("", (), None):
        return "(none)"
    if isinstance(value, Path):
        return f"`./{value.relative_to(PROJECT_DIR)}`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


# Settings documented in docs/serving.md (the online service) rather than the README, by variable prefix.
SERVING_VARIABLES = ("DRIFTLOOP_SERVE_", "DRIFTLOOP_PREDICTION_LOG_", "DRIFTLOOP_AB_")


def settings_rows(serving: bool) -> list[tuple[str, str, str]]:
    """``(variable, default as the docs show it, description)`` of each setting, in the order of the
    fields."""
    from driftloop.core.settings import Settings

    return [
        (alias, _shown_default(field), field.description or "")
        for field in Settings.model_fields.values()
        if isinstance(alias := field.validation_alias, str) and alias.startswith(SERVING_VARIABLES) == serving
    ]


def _settings_table(serving: bool) -> str:
    rows = [
        f"| `{env}` | {_cell(default)} | {_cell(text)} |" for env, default, text in settings_rows(serving)
    ]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows]) + "\n"


def settings_table() -> str:
    """The environment variables of every setting but the online service's (README)."""
    return _settings_table(serving=False)


def serving_settings_table() -> str:
    """The online service's environment variables (``docs/serving.md``)."""
    return _settings_table(serving=True)


def _leaf_parsers(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, str, Any]]:
    group = parser._subparsers  # argparse has no public accessor
    action = group._group_actions[0] if group is not None else None
    if not isinstance(action, argparse._SubParsersAction):
        raise TypeError(f"{prefix}: the parser has no sub-commands")
    helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
    leaves: list[tuple[str, str, Any]] = []
    for name, sub in action.choices.items():
        if sub._subparsers is not None:
            leaves += _leaf_parsers(sub, f"{prefix} {name}")
        else:
            leaves.append((f"{prefix} {name}", helps.get(name, ""), sub))
    return leaves


def cli_table() -> str:
    """Every ``driftloop`` sub-command, its help and its arguments (``--dataset`` and ``-h`` left out)."""
    from driftloop.cli import build_parser

    rows = []
    for command, text, sub in _leaf_parsers(build_parser(), "driftloop"):
        arguments = []
        for action in sub._actions:
            if action.option_strings:
                name = max(action.option_strings, key=len)
                if name not in ("--help", "--dataset"):
                    arguments.append(f"`{name}`")
            else:
                arguments.append(f"`<{action.dest}>`")
        rows.append(f"| `{command}` | {_cell(text)} | {', '.join(arguments)} |")
    return "\n".join(["| command | what it does | arguments |", "|---|---|---|", *rows]) + "\n"


def _paths(paths: tuple[str, ...] | list[str], last: str = "and") -> str:
    quoted = [f"`{p}`" for p in paths]
    return ", ".join(quoted[:-1]) + f" {last} {quoted[-1]}" if len(quoted) > 1 else "".join(quoted)


def _importers(where: list[tuple[str, bool]], every: int) -> str:
    if len(where) == every:
        return "every module" + ("" if all(top for _, top in where) else " (some lazily)")
    return ", ".join(f"`{module}`" + ("" if top else " (lazily)") for module, top in where)


def rules_section() -> str:
    """The rules the architecture tests enforce, written from :mod:`driftloop_ops.architecture_rules` and the
    code, so the sentences say exactly what the tests check."""
    from driftloop_ops import architecture_rules as rules

    lengths = {p: n for p, n in rules.module_lengths().items() if p not in rules.LONGER_MODULES}
    longest = max(lengths, key=lambda p: lengths[p])
    longer = "; ".join(f"`{p}` may have {n} ({why})" for p, (n, why) in rules.LONGER_MODULES.items())
    lines = [
        f"**Module size.** No module of {_paths(rules.SIZE_CHECKED_DIRS, 'or')} is longer than "
        f"{rules.MAX_MODULE_LINES} lines; {longer}. The longest today: `{longest}`, "
        f"{lengths[longest]} lines.",
        "",
        f"**Heavy libraries.** {_paths(rules.HEAVY_MODULES)} are never imported at module level in "
        f"{_paths(rules.HEAVY_CHECKED_DIRS, 'or')}: only inside functions, or under `if TYPE_CHECKING`. So "
        "parsing a DAG file loads none of them, which a test also checks by importing each DAG file in a "
        "fresh interpreter.",
        "",
        "**Environment.** `Settings` is the one reader of environment variables in `include/driftloop` and "
        "`plugins`; the other modules that touch it, and why:",
        "",
        *(f"- `{path}`: {why}" for path, why in rules.ENV_READ_ALLOWED.items()),
        "",
        f"**Stages.** `driftloop.core` imports no stage ({_paths(rules.STAGES, 'or')}). An import from one "
        "stage into another is allowed only when it is listed here with the reason it is not on core:",
        "",
        "| module | imports | why |",
        "|---|---|---|",
        *(f"| `{a}` | `{b}` | {_cell(why)} |" for (a, b), why in rules.CROSS_STAGE_IMPORTS.items()),
        "",
    ]
    for folder in rules.AIRFLOW_SIDE:
        found = rules.airflow_side_packages(folder)
        every = len(rules.python_files(folder))
        lines += [
            f"**`{folder}/`** imports the standard library, its own modules and these packages only "
            f"(never `{rules.OPS_PACKAGE}`, nor a `_private` module or name of `{rules.PACKAGE}`):",
            "",
            "| package | why | imported by |",
            "|---|---|---|",
            *(
                f"| `{package}` | {_cell(why)} | {_importers(found.get(package, []), every)} |"
                for package, why in rules.AIRFLOW_SIDE_IMPORTS[folder].items()
            ),
            "",
        ]
    path, constant = rules.PRELOADED_BY_NAME
    lines.append(
        f"`{path}` also imports by name the modules of its `{constant}` (packages "
        f"{_paths(rules.preloaded_packages())}) in the processes tasks are forked from, never in a DAG parse."
    )
    return "\n".join(lines) + "\n"


def alerts_table() -> str:
    """Who sends each alert kind: the DAG tasks whose ``run_stage`` names an alert builder, and the plugin
    code that builds one itself (``docs/production.md``)."""
    from driftloop_ops.architecture_rules import alert_senders

    rows = [
        f"| `{kind}` | {', '.join(f'`{s}`' for s in senders) or 'no DAG task or plugin code'} |"
        for kind, senders in alert_senders().items()
    ]
    return "\n".join(["| kind | sent by |", "|---|---|", *rows]) + "\n"


# document -> section name -> generator
DOCUMENTS: dict[str, dict[str, Callable[[], str]]] = {
    "docs/architecture.md": {"rules": rules_section, "modules": module_table, "bus": bus_table},
    "README.md": {"settings": settings_table, "cli": cli_table},
    "docs/serving.md": {"serving-settings": serving_settings_table},
    "docs/production.md": {"alerts": alerts_table},
}


def _replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- {name}:begin --> ... <!-- {name}:end --> section")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def stale_sections(root: Path = PROJECT_DIR) -> list[str]:
    """``<document>#<section>`` of every generated section that differs from what the code generates now."""
    stale = []
    for doc, sections in DOCUMENTS.items():
        text = (root / doc).read_text()
        for name, generate in sections.items():
            if _replace_section(text, name, generate()) != text:
                stale.append(f"{doc}#{name}")
    return stale


def write_sections(root: Path = PROJECT_DIR) -> list[str]:
    """Rewrite every generated section; returns the documents that changed."""
    changed = []
    for doc, sections in DOCUMENTS.items():
        path = root / doc
        text = original = path.read_text()
        for name, generate in sections.items():
            text = _replace_section(text, name, generate())
        if text != original:
            path.write_text(text)
            changed.append(doc)
    return changed


def main(argv: list[str] | None = None) -> int:
    """``python -m driftloop_ops.doc_tables [--check]``."""
    parser = argparse.ArgumentParser(prog="python -m driftloop_ops.doc_tables", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="report stale sections and exit 1, write nothing"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_sections()
        print("\n".join(stale) or "every generated section is up to date")
        return 1 if stale else 0
    changed = write_sections()
    print("updated: " + ", ".join(changed) if changed else "every generated section is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
