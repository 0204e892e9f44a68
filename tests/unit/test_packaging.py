"""Every Python package in the source folders is listed in pyproject.toml, so a wheel (the Docker image,
a non-editable install) ships all of it, not only what an editable install happens to find."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping: dict[str, str] = config["package-dir"]
    listed = set(config["packages"])
    found = set()
    for name, folder in mapping.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found == set(), f"listed but not a package folder: {sorted(listed - found)}"


def test_package_data_of_templates_and_datasets_is_declared() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "templates/*.yaml" in data["accord.worker"]
    assert any("datasets" in p for p in data["accord.cli"])
    assert "templates/*.html" in data["accord.report"]
    assert "prices.yaml" in data["accord.models"]
