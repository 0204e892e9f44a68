"""Run the import contracts (``.importlinter``) over the whole package.

pyproject's package-dir mapping installs each top-level folder as ``accord.<folder>``; the ``accord`` folder
itself holds two files, so ``lint-imports`` pointed at it sees two modules. This links the folders into one
``accord`` tree in a temporary directory (the mapping read from pyproject.toml) and runs ``lint-imports``
there.
``python tests/lint_imports.py`` prints its report and exits with its code."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_folders() -> dict[str, Path]:
    """accord sub-package -> its folder, as pyproject's package-dir maps them (``accord`` itself too)."""
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name: REPO / folder for name, folder in mapping.items()}


def link_tree(root: Path) -> Path:
    """``root/accord`` with the package's own files and a link per mapped folder."""
    folders = package_folders()
    package = root / "accord"
    package.mkdir()
    for path in folders["accord"].glob("*.py"):
        (package / path.name).symlink_to(path)
    for name, folder in folders.items():
        if name != "accord":
            (package / name.removeprefix("accord.")).symlink_to(folder, target_is_directory=True)
    return package


def package_module_count() -> int:
    """The modules the package holds: every .py file inside a folder with an ``__init__.py``."""
    count = 0
    for folder in package_folders().values():
        for path in folder.rglob("*.py"):
            if "__pycache__" not in path.parts and (path.parent / "__init__.py").exists():
                count += 1
    return count


def run_lint_imports() -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the linked tree; stdout holds its report."""
    lint = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="accord-imports-") as tmp:
        link_tree(Path(tmp))
        env = {**os.environ, "PYTHONPATH": tmp}
        return subprocess.run([str(lint), str(REPO / ".importlinter"), "--no-cache", "--no-logo"], cwd=tmp,
                              env=env, capture_output=True, text=True, timeout=600, check=False)


if __name__ == "__main__":
    done = run_lint_imports()
    sys.stdout.write(done.stdout + done.stderr)
    print(f"(the package holds {package_module_count()} modules)")
    sys.exit(done.returncode)
