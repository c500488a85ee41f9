"""Generated sections of the docs: tables written from the code so they cannot drift from it.

A document carries each generated table between ``<!-- <name>:begin -->`` and ``<!-- <name>:end -->``.
``python -m driftloop_ops.reference`` rewrites every section of every document listed in :data:`DOCUMENTS`;
``--check`` only reports the stale ones (exit 1). A test runs the check.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Callable
from pathlib import Path

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


# document -> section name -> generator
DOCUMENTS: dict[str, dict[str, Callable[[], str]]] = {
    "docs/architecture.md": {"modules": module_table},
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
    """``python -m driftloop_ops.reference [--check]``."""
    parser = argparse.ArgumentParser(prog="python -m driftloop_ops.reference", description=__doc__)
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
