"""The API's CLI commands: projects, keys shown once and revocable, the OpenAPI document, and the remote
mode (the Python client) against a real server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from accord.cli.main import app
from typer.testing import CliRunner

from tests.integration.api_helpers import ITEMS_CSV, MAPPING, RATINGS_CSV, campaign_doc, make_env

runner = CliRunner()


def invoke(url: str, *args: str) -> Any:
    return runner.invoke(app, ["--database-url", url, *args])


@pytest.fixture(autouse=True)
def _restore_database_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``--database-url`` sets ACCORD_DATABASE_URL for the process; put it back after each test."""
    from accord.models.settings import get_settings

    monkeypatch.setenv("ACCORD_DATABASE_URL", "")
    monkeypatch.delenv("ACCORD_DATABASE_URL")
    yield
    get_settings.cache_clear()


def test_projects_and_keys(sqlite_url: str) -> None:
    from accord.api.http.auth import lookup_key
    from accord.models.db import get_engine

    r = invoke(sqlite_url, "project", "create", "lab-one")
    assert r.exit_code == 0, r.output
    assert invoke(sqlite_url, "project", "create", "lab-one").exit_code == 2
    created = invoke(sqlite_url, "key", "create", "lab-one", "--name", "pipeline")
    assert created.exit_code == 0, created.output
    key = [line for line in created.stdout.splitlines() if line.startswith("acc_")][0]
    assert len(key) == 4 + 43
    principal = lookup_key(get_engine(sqlite_url), key)
    assert principal is not None and principal.project_name == "lab-one"
    listed = invoke(sqlite_url, "key", "list", "lab-one")
    assert key[:12] in listed.output and key not in listed.output and "active" in listed.output
    assert invoke(sqlite_url, "key", "revoke", key[:12]).exit_code == 0
    assert lookup_key(get_engine(sqlite_url), key) is None
    assert "revoked" in invoke(sqlite_url, "key", "list", "lab-one").output
    assert invoke(sqlite_url, "key", "create", "no-such-project").exit_code == 2
    assert invoke(sqlite_url, "key", "revoke", "acc_nothing").exit_code == 2


def test_openapi_command_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    r = runner.invoke(app, ["openapi", "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["info"]["title"] == "accord" and "/api/v1/runs/{run_id}/ratings/export" in doc["paths"]


def test_remote_mode_upload_submit_status_results_report(sqlite_engine: Any, tmp_path: Path) -> None:
    from accord.cli.client import AccordClient, ApiError
    from accord.api.http.server import serve_in_thread

    env_iter = make_env(sqlite_engine)
    env = next(env_iter)
    (tmp_path / "items.csv").write_text(ITEMS_CSV)
    (tmp_path / "ratings.csv").write_text(RATINGS_CSV)
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump({"name": "remote-data", **MAPPING,
                                                           "items_file": "items.csv", "ratings_file": "ratings.csv"}))
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(campaign_doc("remote-campaign", "remote-data")))
    with serve_in_thread(env.client.app) as url:  # type: ignore[arg-type]
        base = ["remote", "--url", url, "--key", env.a.key]
        r = runner.invoke(app, [*base, "upload", str(tmp_path / "mapping.yaml")])
        assert r.exit_code == 0, r.output
        assert "6 items, 4 annotators, 15 ratings" in r.output
        r = runner.invoke(app, [*base, "submit", str(tmp_path / "campaign.yaml")])
        assert r.exit_code == 0, r.output
        assert "completed" in r.output and "6 rated" in r.output
        run_id = int(r.output.split("run ", 1)[1].split()[0])
        r = runner.invoke(app, [*base, "status", str(run_id)])
        assert r.exit_code == 0 and "completed" in r.output
        r = runner.invoke(app, [*base, "results", str(run_id), "-o", str(tmp_path / "r.csv")])
        assert r.exit_code == 0 and len((tmp_path / "r.csv").read_text().splitlines()) == 7
        r = runner.invoke(app, [*base, "results", str(run_id), "-o", str(tmp_path / "r.parquet"), "--format", "parquet"])
        assert r.exit_code == 0 and (tmp_path / "r.parquet").read_bytes()[:4] == b"PAR1"
        r = runner.invoke(app, [*base, "report", str(run_id), "-o", str(tmp_path / "report.html")])
        assert r.exit_code == 0 and "remote-campaign" in (tmp_path / "report.html").read_text()
        r = runner.invoke(app, ["remote", "--url", url, "--key", env.b.key, "status", str(run_id)])
        assert r.exit_code == 2 and "HTTP 404" in r.output
        with AccordClient(url, env.a.key) as client:
            assert client.ready()
            assert [d["name"] for d in client.datasets()] == ["remote-data"]
            assert len(list(client.ratings(run_id))) == 6
            assert client.metrics(run_id, name="n_human_ratings")[0]["value"] == 15.0
            try:
                client.create_campaign({"name": "x", "dataset": "nope", "models": [], "templates": []})
            except ApiError as err:
                assert err.status == 422 and err.problem["errors"][0]["field"] == "models"
            else:
                raise AssertionError("expected a problem")
    for _ in env_iter:
        pass
