"""Strict mypy over every module of the package: ``python tests/typecheck.py`` (``make typecheck``).

mypy does not read setuptools' package-dir mapping (``accord.models`` lives in ``models/``), so ``mypy -p accord``
on the repository sees only ``accord/``. This builds a tree of links that mirrors the mapping
(``build/typecheck/accord/models -> models/``, ...), runs mypy on it with the ``[tool.mypy]`` settings of
pyproject.toml, and reports the errors with the repository's own paths (``models/schema.py:12: error: ...``).
It also checks that mypy saw every ``.py`` file of the mapped folders."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREE = REPO / "build" / "typecheck"
PACKAGE = "accord"
SUMMARY = re.compile(r"^(Found \d+ errors? in \d+ files?|Success: no issues found in) .*$", re.MULTILINE)
ERROR = re.compile(r"^(?P<path>[^:\s]+\.py):(?P<line>\d+): error: (?P<message>.*)$")


@dataclass(frozen=True)
class TypecheckResult:
    errors: list[str]           # "folder/file.py:LINE: error: message  [code]", repository paths
    notes: list[str]            # mypy's notes that follow the errors (hints), repository paths
    summary: str                # mypy's last line
    modules_checked: set[str]   # dotted module names mypy analysed
    modules_expected: set[str]  # one per .py file under the mapped folders
    returncode: int

    @property
    def missed(self) -> set[str]:
        return self.modules_expected - self.modules_checked


def package_dirs() -> dict[str, str]:
    """``accord.models`` -> ``models``, from pyproject.toml: the one place the mapping is written."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    return mapping


def build_tree() -> Path:
    """``build/typecheck/accord/`` with a link per top-level entry of ``accord/`` and per mapped folder."""
    mapping = package_dirs()
    root = TREE / PACKAGE
    root.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, Path] = {}
    for entry in (REPO / mapping[PACKAGE]).iterdir():
        if entry.suffix == ".py":
            wanted[entry.name] = entry
    for name, folder in mapping.items():
        parts = name.split(".")
        if len(parts) == 2 and parts[0] == PACKAGE:
            wanted[parts[1]] = REPO / folder
    for link in root.iterdir():
        if link.name not in wanted or not link.is_symlink() or link.resolve() != wanted[link.name].resolve():
            link.unlink()
    for name, target in wanted.items():
        if not (root / name).is_symlink():
            (root / name).symlink_to(target)
    return TREE


def expected_modules() -> set[str]:
    """Every ``.py`` file under the mapped folders, as the dotted name the package gives it."""
    found: set[str] = set()
    for name, folder in package_dirs().items():
        if name.count(".") > 1:
            continue                                      # a sub-package of a mapped folder: walked below
        base = REPO / folder
        files = base.glob("*.py") if name == PACKAGE else base.rglob("*.py")
        for path in files:
            rel = path.relative_to(base).with_suffix("")
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            parts = [p for p in rel.parts if p != "__init__"]
            found.add(".".join([name, *parts]))
    return found


def to_repo_path(tree_path: str) -> str:
    """``accord/models/schema.py`` -> ``models/schema.py`` (the file a reader opens)."""
    parts = Path(tree_path).parts
    if len(parts) >= 2 and parts[0] == PACKAGE:
        mapping = package_dirs()
        sub = f"{PACKAGE}.{parts[1]}"
        if sub in mapping:
            return str(Path(mapping[sub], *parts[2:]))
        return str(Path(mapping[PACKAGE], *parts[1:]))
    return tree_path


def run_mypy() -> TypecheckResult:
    tree = build_tree()
    report_dir = tree / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "--no-pretty",
         "--show-error-codes", "--error-summary",
         "--linecount-report", str(report_dir), "-p", PACKAGE],
        cwd=tree, capture_output=True, text=True, check=False,
    )
    errors: list[str] = []
    notes: list[str] = []
    for line in proc.stdout.splitlines():
        match = ERROR.match(line)
        if match:
            errors.append(f"{to_repo_path(match['path'])}:{match['line']}: error: {match['message']}")
        elif ": note: " in line:
            path, rest = line.split(":", 1)
            notes.append(f"{to_repo_path(path)}:{rest}")
    summary_match = SUMMARY.search(proc.stdout)
    summary = summary_match.group(0) if summary_match else (proc.stderr.strip() or proc.stdout.strip())[-2000:]
    checked: set[str] = set()
    linecount = report_dir / "linecount.txt"
    if linecount.is_file():
        for line in linecount.read_text(encoding="utf-8").splitlines()[1:]:
            checked.add(line.split()[-1])
    return TypecheckResult(errors, notes, summary, checked, expected_modules(), proc.returncode)


def main() -> int:
    result = run_mypy()
    for line in result.errors:
        print(line)
    print(result.summary)
    print(f"{len(result.modules_expected - result.missed)} of {len(result.modules_expected)} modules checked")
    if result.missed:
        print("not checked: " + ", ".join(sorted(result.missed)))
    return 0 if (result.returncode == 0 and not result.errors and not result.missed) else 1


if __name__ == "__main__":
    sys.exit(main())
