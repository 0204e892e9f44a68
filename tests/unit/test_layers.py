"""The package layers: ``models`` <- ``worker`` <- ``scheduler`` <- ``api`` / ``cli``, and ``report`` (over
``analysis`` and ``models``) beside them. A lower layer never imports a higher one, not even lazily inside a
function (the import graph is read from the source, so a late import counts as much as a top-level one).
``analysis`` is pure computation: it imports none of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ["models", "worker", "scheduler", "api"]          # each may import only those before it
FORBIDDEN = {
    "models": {"worker", "scheduler", "api", "cli", "report", "analysis"},
    "worker": {"scheduler", "api", "cli", "report"},
    "scheduler": {"api", "cli", "report"},
    "report": {"worker", "scheduler", "api", "cli"},
    "api": {"cli"},
    "analysis": {"models", "worker", "scheduler", "api", "cli", "report"},
}


def imported_layers(path: Path) -> set[tuple[str, int]]:
    """(accord sub-package, line) of every ``accord.<pkg>`` the module imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "accord":
                found.add((parts[1], node.lineno))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(layer: str) -> None:
    bad = []
    for path in sorted((REPO / layer).rglob("*.py")):
        for pkg, line in sorted(imported_layers(path)):
            if pkg in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports accord.{pkg}")
    assert not bad, "\n".join(bad)


def test_the_layers_are_listed_in_order() -> None:
    for i, layer in enumerate(LAYERS):
        assert FORBIDDEN.get(layer, set()) >= set(LAYERS[i + 1:])
