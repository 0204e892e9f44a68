"""Strict mypy over every module of the package (tests/typecheck.py; ``make typecheck`` runs it alone):
zero errors, every ``.py`` file of the mapped folders checked, and every remaining ``# type: ignore`` with its
error code and a short reason. A failure lists each error with the repository's path, line and error code."""

from __future__ import annotations

import re

import pytest

from tests.typecheck import REPO, package_dirs, run_mypy

pytestmark = pytest.mark.typecheck
IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<codes>\[[a-z, -]+\])?(?P<reason>\s+#\s*\S.*)?")


def type_ignores() -> list[tuple[str, int, str]]:
    """(path, line, text) of every ``# type: ignore`` in the package's folders."""
    found = []
    for folder in sorted(set(package_dirs().values())):
        for path in sorted((REPO / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if IGNORE.search(line):
                    found.append((str(path.relative_to(REPO)), number, line.strip()))
    return found


def test_every_type_ignore_has_a_code_and_a_reason() -> None:
    bad = [f"{path}:{number}: {text}" for path, number, text in type_ignores()
           if not (m := IGNORE.search(text)) or not m["codes"] or not m["reason"]]
    assert not bad, ("write `# type: ignore[code]  # why` (or fix the type):\n" + "\n".join(bad))


def test_mypy_strict_has_no_errors_in_any_module() -> None:
    result = run_mypy()
    assert not result.missed, "mypy did not check: " + ", ".join(sorted(result.missed))
    assert not result.errors, (f"{len(result.errors)} mypy errors (strict, [tool.mypy] in pyproject.toml):\n"
                               + "\n".join(result.errors) + "\n" + result.summary)
    assert result.returncode == 0, result.summary


def test_the_readme_counts_the_type_ignores() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"Remaining `# type: ignore` comments: (\d+)", readme)
    assert match, "README.md, Development: the line 'Remaining `# type: ignore` comments: N' is missing"
    assert int(match.group(1)) == len(type_ignores()), \
        f"README.md, Development: {match.group(1)} type: ignore comments stated, {len(type_ignores())} in the code"
