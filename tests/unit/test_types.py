"""Strict mypy over every module of the package (tests/typecheck.py; ``make typecheck`` runs it alone):
zero errors, and every ``.py`` file of the mapped folders checked. A failure lists each error with the
repository's path, line and error code."""

from __future__ import annotations

import pytest

from tests.typecheck import run_mypy

pytestmark = pytest.mark.typecheck


def test_mypy_strict_has_no_errors_in_any_module() -> None:
    result = run_mypy()
    assert not result.missed, "mypy did not check: " + ", ".join(sorted(result.missed))
    assert not result.errors, (f"{len(result.errors)} mypy errors (strict, [tool.mypy] in pyproject.toml):\n"
                               + "\n".join(result.errors) + "\n" + result.summary)
    assert result.returncode == 0, result.summary
