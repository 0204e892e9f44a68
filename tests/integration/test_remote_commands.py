"""``accord run / status / results / report --remote URL`` against a live server on loopback: the local
commands' outputs (summary line, exit code by the campaign's failed share, CSV/Parquet, HTML/JSON report),
and every failure as one line with the HTTP status and the problem's detail."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from accord.cli.main import app
from typer.testing import CliRunner

from tests.integration.api_helpers import ITEMS_CSV, ApiEnv, campaign_doc, make_env

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCORD_API_KEY", raising=False)


@pytest.fixture
def live(sqlite_engine: Any) -> Iterator[tuple[ApiEnv, str]]:
    from accord.api.http.server import serve_in_thread

    env_iter = make_env(sqlite_engine)
    env = next(env_iter)
    try:
        with serve_in_thread(env.client.app) as url:  # type: ignore[arg-type]
            yield env, url
    finally:
        for _ in env_iter:
            pass


def one_line_error(result: Any, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    message = result.output.strip()
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message, message
    return message


def test_run_status_results_report_against_a_server(live: tuple[ApiEnv, str], tmp_path: Path) -> None:
    from accord.api.http.server import free_port

    env, url = live
    assert env.upload(env.a, "remote-data").status_code == 201
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(campaign_doc("remote-campaign", "remote-data")))
    remote = ["--remote", url, "--key", env.a.key]

    r = runner.invoke(app, ["run", str(tmp_path / "campaign.yaml"), *remote])
    assert r.exit_code == 0, r.output
    assert "6 requests" in r.output
    summary = [line for line in r.stdout.splitlines() if line.startswith("run ") and "rated" in line]
    assert summary and "completed" in summary[-1] and "6 rated" in summary[-1] and "0 failed" in summary[-1]
    run_id = int(summary[-1].split()[1].rstrip(":"))

    r = runner.invoke(app, ["status", str(run_id), *remote])
    assert r.exit_code == 0 and "completed" in r.output and "6 rated" in r.output, r.output
    r = runner.invoke(app, ["status", *remote])
    assert r.exit_code == 0 and "remote-data" in r.output and str(run_id) in r.output, r.output

    r = runner.invoke(app, ["results", str(run_id), "-o", str(tmp_path / "r.csv"), *remote])
    assert r.exit_code == 0, r.output
    csv = pd.read_csv(tmp_path / "r.csv")
    assert len(csv) == 6 and (csv["status"] == "done").all()
    r = runner.invoke(app, ["results", str(run_id), "--format", "parquet", "-o", str(tmp_path / "r.parquet"), *remote])
    assert r.exit_code == 0 and pd.read_parquet(tmp_path / "r.parquet")["request_id"].tolist() == csv["request_id"].tolist()
    r = runner.invoke(app, ["results", str(run_id), *remote])            # CSV on stdout, as the local command
    assert r.exit_code == 0 and len(pd.read_csv(io.StringIO(r.stdout))) == 6, r.output

    r = runner.invoke(app, ["report", str(run_id), "-o", str(tmp_path / "report.html"), *remote])
    assert r.exit_code == 0 and "remote-campaign" in (tmp_path / "report.html").read_text(), r.output
    assert f"run {run_id} — alignment with the mean human rating" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["report", str(run_id), "--format", "json", "-o", str(tmp_path / "report.json"), *remote])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["run"]["id"] == run_id and any(m["name"] == "n_human_ratings" for m in report["metrics"])

    # failures: one line each, the HTTP status and the problem's detail
    assert "HTTP 404" in one_line_error(runner.invoke(app, ["status", str(run_id), "--remote", url, "--key", env.b.key]))
    assert "HTTP 401" in one_line_error(runner.invoke(app, ["results", str(run_id), "--remote", url, "--key", "acc_x"]))
    assert "--key" in one_line_error(runner.invoke(app, ["report", str(run_id), "--remote", url]))
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}"                 # nothing listens there
    assert "cannot reach" in one_line_error(runner.invoke(app, ["status", "--remote", closed, "--key", env.a.key]))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(campaign_doc("bad", "no-such-dataset")))
    message = one_line_error(runner.invoke(app, ["run", str(tmp_path / "bad.yaml"), *remote]))
    assert "HTTP 422" in message and "no-such-dataset" in message
    assert "--table" in one_line_error(runner.invoke(app, ["results", str(run_id), "--table", "answers", *remote]))
    assert "--project" in one_line_error(runner.invoke(app, ["status", "--project", "x", *remote]))


def test_remote_run_exits_nonzero_past_the_campaigns_failed_share(live: tuple[ApiEnv, str], tmp_path: Path) -> None:
    env, url = live
    items = ITEMS_CSV.replace("Tell me a joke about cats", "FAIL500 a joke")
    assert env.upload(env.a, "failing-data", items=items).status_code == 201
    doc = campaign_doc("failing-campaign", "failing-data", max_failed_share=0.1)
    (tmp_path / "campaign.yaml").write_text(yaml.safe_dump(doc))
    r = runner.invoke(app, ["run", str(tmp_path / "campaign.yaml"), "--remote", url, "--key", env.a.key])
    assert r.exit_code == 1, r.output
    said = " ".join(r.output.split())
    assert "1 of 6 requests failed" in said and "max_failed_share of 10.0%" in said and f"--remote {url}" in said
    doc = campaign_doc("tolerant-campaign", "failing-data", max_failed_share=0.5)
    (tmp_path / "tolerant.yaml").write_text(yaml.safe_dump(doc))
    r = runner.invoke(app, ["run", str(tmp_path / "tolerant.yaml"), "--remote", url, "--key", env.a.key])
    assert r.exit_code == 0 and "1 failed" in r.output, r.output
