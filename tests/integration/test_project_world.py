"""One world for the CLI and the server: a run made with ``accord run`` belongs to the CLI's project
(``local`` by default), so a key of that project sees it in the dashboard and the API, and a key of another
project does not; ``--project`` chooses the project of every local command, with one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from accord.cli.main import app
from typer.testing import CliRunner

from tests.fakes.openai_server import OpenAIFakeServer

runner = CliRunner()

RATINGS = "item_id,annotator_id,gender,q,text\n" + "".join(
    f"i{i},a{a},{'Woman' if a % 2 else 'Man'},{'Yes' if (i + a) % 3 == 0 else 'No'},item number {i}\n"
    for i in range(6) for a in range(4))


@pytest.fixture(autouse=True)
def _restore_database_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``--database-url`` sets ACCORD_DATABASE_URL for the process; put it back after each test."""
    from accord.models.settings import get_settings

    monkeypatch.delenv("ACCORD_PROJECT", raising=False)
    monkeypatch.setenv("ACCORD_DATABASE_URL", "")
    monkeypatch.delenv("ACCORD_DATABASE_URL")
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def openai_server() -> Iterator[OpenAIFakeServer]:
    srv = OpenAIFakeServer().start()
    yield srv
    srv.stop()


def cli(url: str, *args: str) -> Any:
    return runner.invoke(app, ["--database-url", url, *args])


def one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message, message
    return message


def test_a_cli_run_is_seen_by_its_projects_key_in_the_dashboard_and_api(engine: Any, tmp_path: Path,
                                                                     openai_server: OpenAIFakeServer) -> None:
    from accord.api.http.app import create_app
    from accord.api.http.config import ApiSettings
    from fastapi.testclient import TestClient

    url = engine.url.render_as_string(hide_password=False)
    (tmp_path / "r.csv").write_text(RATINGS)
    (tmp_path / "camp.yaml").write_text(f"""
name: cli-made-campaign
dataset: cli-data
models:
  - {{name: fake-gpt, provider: openai, model: gpt-4o-mini, base_url: "{openai_server.base_url}"}}
templates: [binary_unsafe]
""")
    r = cli(url, "import", str(tmp_path / "r.csv"), "--name", "cli-data", "--rating-col", "q", "--text-col", "text",
            "--attribute-col", "gender", "--label-map", "No=0, Yes=1")
    assert r.exit_code == 0, r.output
    r = cli(url, "run", str(tmp_path / "camp.yaml"), "--no-report")
    assert r.exit_code == 0, r.output
    assert "6 rating requests" in r.output and "completed" in r.output
    run_id = int(r.output.split("run ", 1)[1].split()[0])

    # the server shows it to a key of the CLI's project, made without `accord project create`
    r = cli(url, "key", "create", "--project", "local", "--name", "dashboard")
    assert r.exit_code == 0, r.output
    local_key = next(line for line in r.stdout.splitlines() if line.startswith("acc_"))
    assert cli(url, "project", "create", "elsewhere").exit_code == 0
    r = cli(url, "key", "create", "elsewhere")
    other_key = next(line for line in r.stdout.splitlines() if line.startswith("acc_"))

    settings = ApiSettings(json_logs=False, rate_limit_per_minute=1e7, rate_limit_burst=100_000,
                           templates_dir=str(tmp_path / "templates"))
    with TestClient(create_app(engine, settings=settings), base_url="https://testserver") as client:
        local = {"Authorization": f"Bearer {local_key}"}
        runs = client.get("/api/v1/runs", headers=local).json()["items"]
        assert [(x["id"], x["campaign"], x["status"], x["done"]) for x in runs] == [
            (run_id, "cli-made-campaign", "completed", 6)]
        assert client.get(f"/api/v1/runs/{run_id}", headers=local).json()["total"] == 6
        assert [d["name"] for d in client.get("/api/v1/datasets", headers=local).json()["items"]] == ["cli-data"]
        assert client.post("/login", data={"api_key": local_key}, follow_redirects=False).status_code == 303
        home = client.get("/dashboard")
        assert home.status_code == 200
        assert "cli-made-campaign" in home.text and f"/dashboard/runs/{run_id}" in home.text and "cli-data" in home.text
        page = client.get(f"/dashboard/runs/{run_id}")
        assert page.status_code == 200 and "cli-made-campaign" in page.text
        client.cookies.clear()

        # ... and to no other project's key: not listed, and not found like a run that does not exist
        other = {"Authorization": f"Bearer {other_key}"}
        assert client.get("/api/v1/runs", headers=other).json()["items"] == []
        assert client.get("/api/v1/datasets", headers=other).json()["items"] == []
        assert client.get(f"/api/v1/runs/{run_id}", headers=other).status_code == 404
        assert client.post("/login", data={"api_key": other_key}, follow_redirects=False).status_code == 303
        home = client.get("/dashboard")
        assert home.status_code == 200 and "cli-made-campaign" not in home.text and "cli-data" not in home.text
        assert client.get(f"/dashboard/runs/{run_id}").status_code == 404

    # the CLI in another project sees none of it; an unknown project is one line naming the flag
    r = cli(url, "--project", "elsewhere", "status")
    assert r.exit_code == 0 and "cli-made-campaign" not in r.output and "cli-data" not in r.output
    assert "cli-data" in cli(url, "status").output and "completed" in cli(url, "status").output
    message = one_line_error(cli(url, "status", str(run_id), "--project", "elsewhere"))
    assert f"run {run_id}: no such run in project 'elsewhere'" in message and "--project" in message
    message = one_line_error(cli(url, "results", str(run_id), "--project", "nowhere"))
    assert "--project: no project named 'nowhere'" in message
    one_line_error(runner.invoke(app, ["--database-url", url, "--project", "nowhere", "report", str(run_id)]))
    # a dataset name is per project: the other project imports its own 'cli-data'
    r = cli(url, "import", str(tmp_path / "r.csv"), "--name", "cli-data", "--rating-col", "q", "--text-col",
            "text", "--label-map", "No=0, Yes=1", "--project", "elsewhere")
    assert r.exit_code == 0, r.output
    message = one_line_error(cli(url, "run", str(tmp_path / "camp.yaml"), "--project", "nowhere"))
    assert "--project: no project named 'nowhere'" in message


def test_deleting_the_local_project_leaves_a_tombstone_and_the_cli_starts_a_new_one(sqlite_url: str,
                                                                                   tmp_path: Path) -> None:
    from accord.models.db import get_engine
    from accord.models.projects import find_project

    (tmp_path / "r.csv").write_text(RATINGS)
    args = ["import", str(tmp_path / "r.csv"), "--name", "cli-data", "--rating-col", "q", "--text-col", "text",
            "--label-map", "No=0, Yes=1"]
    assert cli(sqlite_url, *args).exit_code == 0
    first = find_project(get_engine(sqlite_url), "local").id
    r = cli(sqlite_url, "project", "delete", "local", "--yes")
    assert r.exit_code == 0 and "1 datasets" in r.output, r.output
    assert "cli-data" not in cli(sqlite_url, "status").output
    assert cli(sqlite_url, *args).exit_code == 0            # the name is free again, in a new 'local'
    second = find_project(get_engine(sqlite_url), "local").id
    assert second != first and second > first
