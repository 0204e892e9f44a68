"""The package layers: ``models`` <- ``worker`` <- ``scheduler`` <- ``api`` / ``cli``, and ``report`` (over
``analysis`` and ``models``) beside them; ``analysis`` is pure computation and imports none of them.

The contracts are import-linter's (``.importlinter``), run over the whole package by
``tests/lint_imports.py``.
A second test keeps imports at the top of modules: an import inside a function hides a cycle or a layer
crossing from a reader, so it is allowed only for an optional heavy dependency, with a comment saying why."""

from __future__ import annotations

import ast
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lint_imports import REPO, package_folders, package_module_count, run_lint_imports

# Third-party packages a function may import late: heavy, and needed only by one mode or provider.
OPTIONAL_HEAVY = {
    "celery": "the distributed mode", "kombu": "the distributed mode", "redis": "the distributed mode",
    "openai": "the OpenAI provider", "anthropic": "the Anthropic provider", "llama_cpp": "the local provider",
    "uvicorn": "the HTTP server", "fastapi": "the HTTP API", "PIL": "the report's plots",
    "matplotlib": "the report's plots",
    "pyarrow": "Parquet files",
}


def test_import_contracts_hold_over_every_module() -> None:
    if not Path(sys.executable).with_name("lint-imports").exists() and shutil.which("lint-imports") is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = run_lint_imports()
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    analysed = re.search(r"Analyzed (\d+) files", report)
    assert analysed, report
    # every module of the package is in the graph (not only accord/__init__.py and __main__.py)
    assert int(analysed.group(1)) == package_module_count(), report
    assert re.search(r"Contracts: (\d+) kept, 0 broken", report), report


@dataclass(frozen=True)
class LateImport:
    path: Path
    line: int
    module: str          # the module imported (``from X import y``: X)
    commented: bool      # a comment on its line or just above its run of imports


def _late_imports(path: Path) -> list[LateImport]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source, filename=str(path))
    found: list[LateImport] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            above = node.lineno - 2
            while above >= 0 and re.match(r"\s*(import|from)\s", lines[above]):
                above -= 1   # the comment may stand above the first import of a run
            commented = "#" in lines[node.lineno - 1] or (above >= 0 and (
                lines[above].strip().startswith("#")
                or ("needs_extra(" in lines[above] and "#" in lines[above])))   # with needs_extra(...):  # why
            found += [LateImport(path, node.lineno, m, commented) for m in modules]
    return found


def _package_files() -> list[Path]:
    return sorted(p for folder in package_folders().values() for p in folder.rglob("*.py")
                  if "__pycache__" not in p.parts)


def _module_path(module: str) -> Path | None:
    """The file of an ``accord.x.y`` module, through pyproject's package-dir mapping."""
    folders = package_folders()
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        root = folders.get(".".join(parts[:n]))
        if root is not None:
            base = root.joinpath(*parts[n:])
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.exists():
                    return candidate
            return None
    return None


def _imports_optional_heavy(module: str, seen: set[str] | None = None) -> bool:
    """Whether importing ``module`` imports an optional heavy dependency, itself or through the accord
    modules it imports at its top level."""
    seen = set() if seen is None else seen
    if module in seen:
        return False
    seen.add(module)
    parent = module.rpartition(".")[0]   # importing a module runs its package's __init__ first
    if parent.count(".") >= 1 and _imports_optional_heavy(parent, seen):
        return True
    path = _module_path(module)
    if path is None:
        return False
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body + [n for w in tree.body if isinstance(w, ast.With) for n in w.body]:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]   # a name may be a module
        else:
            continue
        if any(name.split(".")[0] in OPTIONAL_HEAVY for name in names):
            return True
        if any(name.startswith("accord.") and _imports_optional_heavy(name, seen) for name in names):
            return True
    return False


def test_no_import_inside_a_function_but_optional_heavy_dependencies() -> None:
    bad = []
    for path in _package_files():
        for late in _late_imports(path):
            where = f"{path.relative_to(REPO)}:{late.line} imports {late.module} inside a function"
            top = late.module.split(".")[0]
            if top == "accord":
                if not _imports_optional_heavy(late.module):
                    bad.append(f"{where}: import it at the top (no optional dependency behind it)")
                    continue
            elif top not in OPTIONAL_HEAVY:
                bad.append(f"{where}: import it at the top (not an optional heavy dependency)")
                continue
            if not late.commented:
                bad.append(f"{where} without a comment saying why")
    assert not bad, "\n".join(bad)


def test_the_late_import_check_sees_what_it_should(tmp_path: Path) -> None:
    """The check reads imports inside functions, and a comment above a run of imports covers the run."""
    source = tmp_path / "m.py"
    source.write_text("import os\n\n\ndef f():\n    # why\n    import redis\n"
                      "    from accord.cli.app import app\n    return os\n\n\ndef g():\n    import json\n")
    found = {(late.module, late.commented) for late in _late_imports(source)}
    assert found == {("redis", True), ("accord.cli.app", True), ("json", False)}
    assert _module_path("accord.worker.celery_app") == REPO / "worker" / "celery_app.py"
    assert _module_path("accord.cli") == REPO / "cli" / "__init__.py"
    assert _imports_optional_heavy("accord.worker.celery_app")
    assert not _imports_optional_heavy("accord.cli.app")
