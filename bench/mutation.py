"""Mutation testing of the governance package and the data contract with mutmut; one figure per line.

Each group (``governance``, ``contract``) is a list of modules to mutate and the fast tests that exercise
them. mutmut 3 derives a module's import name from its path under ``src/`` (or the project root), and the
package lives in ``include/``, so each group runs in a work folder of its own, ``.mutation/<group>/``
(git-ignored): ``src``, ``include`` and ``tests`` link to the project's folders, and its ``pyproject.toml`` is
the project's with a ``[tool.mutmut]`` section naming the group's modules and tests. mutmut copies that folder
into ``mutants/`` and runs each mutant against the tests that reach the mutated function.

Prints per group ``mutation_<group>_{total,killed,survived,timeout,no_tests,other,killed_pct,run_s}``. The
killed share is (killed + timeout) / total: a mutant that hangs the tests is caught; one that no test reaches
counts as not killed. The surviving mutants' names go to ``.mutation/<group>/survivors.txt``; ``mutmut show
<name>`` in that folder prints one's diff. Equivalent mutants are documented in docs/mutation.md.

Options: ``--group`` (repeatable; default both), ``--changed-since REF`` (only the group modules that differ
from REF; a group none of whose modules changed is skipped), ``--sample-digits`` (only mutants whose number
ends in one of these digits: ``5`` is about a tenth), ``--min-killed-pct`` (exit 1 when a group's share is
below it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
WORK_DIR = PROJECT_DIR / ".mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")


@dataclass(frozen=True)
class Group:
    """Modules to mutate (paths under include/) and the pytest arguments that select their tests."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]


GROUPS = {
    "governance": Group(
        modules=tuple(
            f"driftloop/governance/{name}.py"
            for name in ("gates", "comparison", "delong", "decision_checks", "promotion", "rollback", "audit")
        ),
        # Tests without trained models or an MLflow store: each mutant reruns its covering tests with their
        # fixtures, and a module fixture that trains models (test_governance, test_gate_evidence) would cost
        # seconds per mutant. The *_rules tests cover judge, promotion, rollback and audit through fakes.
        tests=(
            "tests/unit/test_comparison.py",
            "tests/unit/test_rollback_rule.py",
            "tests/unit/test_degenerate_evidence.py",
            "tests/unit/test_governance_rules.py",
            "tests/unit/test_gate_rules.py",
            "tests/unit/test_comparison_rules.py",
            "tests/unit/test_promotion_rules.py",
        ),
    ),
    "contract": Group(
        modules=tuple(f"driftloop/data/contract/{name}.py" for name in ("rows", "files", "ids", "bootstrap")),
        # The object-store variants ([s3]) test the storage layer, not the contract: the local ones suffice.
        tests=(
            "tests/data/test_contract.py",
            "tests/data/test_bad_inputs.py",
            "tests/data/test_bootstrap.py",
            "tests/data/test_source_check.py",
            "tests/data/test_contract_rules.py",
            "-k",
            "not s3",
        ),
    ),
}
KILLED = ("killed", "timeout")


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def prepare_work_dir(name: str, modules: list[str]) -> Path:
    """A fresh ``.mutation/<name>/``: links to include/ and tests/, and the pyproject.toml mutmut reads."""
    group = GROUPS[name]
    work = WORK_DIR / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "src").symlink_to(PROJECT_DIR / "include", target_is_directory=True)
    (work / "tests").symlink_to(PROJECT_DIR / "tests", target_is_directory=True)
    (work / "include").symlink_to(PROJECT_DIR / "include", target_is_directory=True)
    settings = [
        "[tool.mutmut]",
        'source_paths = ["src"]',
        # Settings finds the dataset configs under the project folder (mutants/ in the copy).
        'also_copy = ["include/configs"]',
        f"only_mutate = {_toml_list([f'src/{m}' for m in modules])}",
        f"pytest_add_cli_args_test_selection = {_toml_list(list(group.tests))}",
        # No cache folder in the copy; -m keeps any slow test out even if one moves into a listed file.
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not (slow or topology or container)"]',
        # The work folder is inside the project's git tree; mutmut's change detection would watch all of it.
        "use_git_change_detection = false",
        "track_dependencies = false",
    ]
    project = (PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8")
    (work / "pyproject.toml").write_text(project + "\n" + "\n".join(settings) + "\n", encoding="utf-8")
    return work


def changed_modules(name: str, since: str) -> list[str]:
    """The group's modules that differ between ``since`` and the work tree."""
    out = subprocess.run(
        ["git", "diff", "--name-only", since, "--", "include"],
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    touched = {path.removeprefix("include/") for path in out}
    return [m for m in GROUPS[name].modules if m in touched]


def module_of(path: str) -> str:
    """``driftloop/governance/gates.py`` -> ``driftloop.governance.gates``."""
    return path.removesuffix(".py").replace("/", ".")


def run_group(name: str, modules: list[str], digits: str, log_path: Path) -> dict[str, str]:
    """Run mutmut on ``modules`` of the group; each mutant's status by its name."""
    work = prepare_work_dir(name, modules)
    env = {**os.environ, "PYTHONPATH": ""}
    names = [f"{module_of(m)}.*__mutmut_*{d}" for m in modules for d in digits] if digits else []
    with log_path.open("w", encoding="utf-8") as log:
        run = subprocess.run(
            [str(MUTMUT), "run", *names], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    listed = subprocess.run(
        [str(MUTMUT), "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True
    )
    statuses: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        key, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in key:
            statuses[key] = status
    if digits:
        statuses = {k: v for k, v in statuses.items() if k[-1] in digits}
    if run.returncode != 0 or not statuses:
        print(
            f"mutmut failed for {name} (exit code {run.returncode}); last lines of {log_path}:",
            file=sys.stderr,
        )
        print("\n".join(log_path.read_text(encoding="utf-8").splitlines()[-30:]), file=sys.stderr)
        raise SystemExit(1)
    survivors = sorted(k for k, v in statuses.items() if v not in KILLED)
    (work / "survivors.txt").write_text("".join(f"{k}: {statuses[k]}\n" for k in survivors), encoding="utf-8")
    return statuses


def print_figures(name: str, statuses: dict[str, str], elapsed_s: float) -> float:
    """The group's figures, one per line, then each module's killed share; returns the group's share in
    percent."""
    counts = Counter(statuses.values())
    total = sum(counts.values())
    named = ("killed", "survived", "timeout", "no tests")
    share = 100.0 * sum(counts[s] for s in KILLED) / total
    print(f"mutation_{name}_total {total}")
    for status in named:
        print(f"mutation_{name}_{status.replace(' ', '_')} {counts[status]}")
    print(f"mutation_{name}_other {total - sum(counts[s] for s in named)}")
    print(f"mutation_{name}_killed_pct {share:.1f}")
    print(f"mutation_{name}_run_s {elapsed_s:.0f}")
    by_module: dict[str, list[bool]] = {}
    for key, status in statuses.items():
        module = key.split(".x", 1)[0].rsplit(".", 1)[-1]  # driftloop.governance.gates.x_judge__mutmut_5
        by_module.setdefault(module, []).append(status in KILLED)
    for module, killed in sorted(by_module.items()):
        print(f"mutation_{name}_total.{module} {len(killed)}")
        print(f"mutation_{name}_killed_pct.{module} {100.0 * sum(killed) / len(killed):.1f}")
    return share


def main(argv: list[str] | None = None) -> int:
    """``python bench/mutation.py [--group G] [--changed-since REF] [--sample-digits D] [--min-killed-pct P]``

    Returns:
        0, or 1 when a group's killed share is below ``--min-killed-pct``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", choices=sorted(GROUPS))
    parser.add_argument("--changed-since", metavar="REF")
    parser.add_argument("--sample-digits", default="", help="only mutants whose number ends in these digits")
    parser.add_argument("--min-killed-pct", type=float)
    args = parser.parse_args(argv)
    if args.sample_digits and not args.sample_digits.isdigit():
        parser.error("--sample-digits takes digits, e.g. 05")
    WORK_DIR.mkdir(exist_ok=True)
    failed = []
    for name in args.group or list(GROUPS):
        modules = list(GROUPS[name].modules)
        if args.changed_since:
            modules = changed_modules(name, args.changed_since)
            if not modules:
                print(f"mutation_{name}: none of its modules changed since {args.changed_since}")
                continue
            print(f"mutation_{name}_modules {' '.join(Path(m).stem for m in modules)}")
        start = time.monotonic()
        statuses = run_group(name, modules, args.sample_digits, WORK_DIR / f"{name}.log")
        share = print_figures(name, statuses, time.monotonic() - start)
        if args.min_killed_pct is not None and share < args.min_killed_pct:
            failed.append(f"{name} {share:.1f}% < {args.min_killed_pct}%")
    if failed:
        print(f"mutation: killed share below the target: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
