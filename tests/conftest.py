"""Shared fixtures: isolated accord home, fresh SQLite and PostgreSQL databases migrated to head, loopback
servers speaking OpenAI's and Anthropic's wire protocols."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest

from tests.fakes.anthropic_server import AnthropicFakeServer
from tests.fakes.openai_server import OpenAIFakeServer

REPO = Path(__file__).resolve().parents[1]
DICES = REPO.parent / "shared" / "datasets" / "dices350"
PG_ADMIN_URL = os.environ.get("ACCORD_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    home = tmp_path_factory.mktemp("accord-home")
    old = {k: os.environ.get(k) for k in ("ACCORD_HOME", "ACCORD_DATABASE_URL")}
    os.environ["ACCORD_HOME"] = str(home)
    os.environ.pop("ACCORD_DATABASE_URL", None)
    from accord.models.settings import get_settings

    get_settings.cache_clear()
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    get_settings.cache_clear()


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_available()


def make_pg_database() -> tuple[str, str]:
    """Create a throwaway database; returns (url, name)."""
    import psycopg

    name = f"accord_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'accord.db'}"


@pytest.fixture
def sqlite_engine(sqlite_url: str):  # type: ignore[no-untyped-def]
    from accord.models.db import dispose_engines
    from accord.models.migrate import init_db

    engine = init_db(sqlite_url)
    yield engine
    dispose_engines()


@pytest.fixture
def pg_engine(pg_available: bool):  # type: ignore[no-untyped-def]
    if not pg_available:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (make test starts it)")
    from accord.models.db import dispose_engines
    from accord.models.migrate import init_db

    url, name = make_pg_database()
    engine = init_db(url)
    yield engine
    dispose_engines()
    drop_pg_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The same test on SQLite and on PostgreSQL (the PostgreSQL case carries the ``postgres`` marker from
    collection on, so ``-m "not postgres"`` deselects it)."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_engine")
    return request.getfixturevalue("sqlite_engine")


SERVICE_SKIP = "make test starts"   # the phrase of every skip for a service `make test` brings up


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under ``make test`` (ACCORD_REQUIRE_SERVICES=1) a test skipped because a service it promises to start
    is down fails instead: a green run never hides untested PostgreSQL or Redis paths."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("ACCORD_REQUIRE_SERVICES") == "1" and report.skipped and SERVICE_SKIP in str(report.longrepr):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"a service make test promises is down: {reason}"


@pytest.fixture
def set_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set ``ACCORD_LIMIT_*`` values for one test (``set_limits(max_models=2)``); the limits are read afresh."""
    from accord.models import limits as limits_module

    def apply(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"ACCORD_LIMIT_{name.upper()}", str(value))
        limits_module.get_limits.cache_clear()

    yield apply
    monkeypatch.undo()
    limits_module.get_limits.cache_clear()


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[OpenAIFakeServer]:
    """A loopback OpenAI-wire server, one per test module (tests that count its calls ``reset()`` it first)."""
    with OpenAIFakeServer() as server:
        yield server


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[AnthropicFakeServer]:
    """A loopback Anthropic-wire server, one per test module."""
    with AnthropicFakeServer() as server:
        yield server
