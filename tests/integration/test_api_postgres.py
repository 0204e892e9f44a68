"""A subset of the API on PostgreSQL: upload, campaign, plan, run, ratings pages and export, metrics,
report, delete refusal, and cross-project isolation of the main reads."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.api_helpers import ApiEnv, campaign_doc, make_env

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_api(pg_engine: Any) -> Iterator[ApiEnv]:
    yield from make_env(pg_engine)


def test_a_run_over_http_on_postgres(pg_api: ApiEnv) -> None:
    api, h = pg_api, pg_api.a.headers
    ds = api.upload(api.a, "pg-data")
    assert ds.status_code == 201, ds.text
    assert api.upload(api.a, "pg-data").status_code == 409
    doc = campaign_doc("pg-campaign", "pg-data", templates=["binary_unsafe", "likert_unsafe"])
    plan = api.client.post("/api/v1/campaigns/plan", headers=h, json=doc).json()
    assert (plan["total"], plan["cached"]) == (12, 0)
    cid = api.campaign(api.a, doc).json()["id"]
    run = api.wait(api.start(api.a, cid).json()["id"])
    assert (run["status"], run["done"], run["failed"], run["report_ready"]) == ("completed", 12, 0, True)
    page = api.client.get(f"/api/v1/runs/{run['id']}/ratings?limit=5", headers=h).json()
    assert len(page["items"]) == 5 and page["next_cursor"] == page["items"][-1]["request_id"]
    rows = list(csv.DictReader(io.StringIO(api.client.get(f"/api/v1/runs/{run['id']}/ratings/export",
                                                          headers=h).text)))
    assert len(rows) == 12 and {r["template"] for r in rows} == {"binary_unsafe", "likert_unsafe"}
    metrics = api.client.get(f"/api/v1/runs/{run['id']}/metrics?name=n_human_ratings", headers=h).json()
    assert metrics[0]["value"] == 15.0
    assert api.client.get(f"/api/v1/runs/{run['id']}/report", headers=h).status_code == 200
    assert api.client.delete(f"/api/v1/datasets/{ds.json()['id']}", headers=h).status_code == 409
    again = api.start(api.a, cid).json()
    assert again["cached"] == 12 and again["done"] == 12
    # B sees none of it
    hb = api.b.headers
    for path in (f"/api/v1/datasets/{ds.json()['id']}", f"/api/v1/campaigns/{cid}", f"/api/v1/runs/{run['id']}",
                 f"/api/v1/runs/{run['id']}/ratings", f"/api/v1/runs/{run['id']}/metrics",
                 f"/api/v1/runs/{run['id']}/report", f"/api/v1/runs/{run['id']}/ratings/export"):
        assert api.client.get(path, headers=hb).status_code == 404, path
    assert api.client.get("/api/v1/runs", headers=hb).json()["items"] == []
    assert api.client.get("/api/v1/datasets", headers=hb).json()["items"] == []
    assert api.client.post(f"/api/v1/runs/{run['id']}/cancel", headers=hb).status_code == 404
    assert api.client.get("/readyz").json() == {"status": "ready"}


def test_pause_and_resume_on_postgres(pg_api: ApiEnv) -> None:
    import time

    api, h = pg_api, pg_api.a.headers
    assert api.upload(api.a, "d").status_code == 201
    cid = api.campaign(api.a, campaign_doc("c", "d", samples=3)).json()["id"]
    api.gate.clear()
    rid = api.start(api.a, cid).json()["id"]
    deadline = time.monotonic() + 20
    while not api.pool.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert api.client.post(f"/api/v1/runs/{rid}/pause", headers=h).json()["status"] == "paused"
    api.gate.set()
    api.backend.wait(rid, 30)
    assert api.status(rid)["status"] == "paused"
    assert api.client.post(f"/api/v1/runs/{rid}/resume", headers=h).status_code == 202
    final = api.wait(rid)
    assert (final["status"], final["done"]) == ("completed", 18)


def test_result_pages_on_postgres(pg_api: ApiEnv) -> None:
    """The item explorer, an item, the comparison, the dataset description and per-model progress read the
    same on PostgreSQL (the grouped and windowed queries behind them)."""
    api, h = pg_api, pg_api.a.headers
    ds = api.upload(api.a, "pg-results").json()
    c = api.campaign(api.a, campaign_doc("pg-results", "pg-results", templates=["binary_unsafe", "likert_unsafe"],
                                         samples=2)).json()
    runs = [api.wait(api.start(api.a, c["id"]).json()["id"]) for _ in range(2)]
    assert all(r["status"] == "completed" for r in runs)
    m = runs[0]["per_model"][0]
    assert (m["model"], m["total"], m["done"], m["remaining"]) == ("scripted", 24, 24, 0)
    items = api.client.get(f"/api/v1/runs/{runs[0]['id']}/items?sort=item_id&order=asc", headers=h).json()
    assert [r["item_id"] for r in items["items"]] == ["i1", "i2", "i3", "i4", "i5", "i6"]
    assert all(r["n_llm"] == 4 for r in items["items"])
    item = api.client.get(f"/api/v1/runs/{runs[0]['id']}/items/i2", headers=h).json()
    assert len(item["ratings"]) == 4 and item["human"]["n"] == 4
    matrix = api.client.get(f"/api/v1/runs/{runs[1]['id']}/comparison", headers=h).json()
    assert matrix["run_ids"] == [r["id"] for r in runs] and matrix["rows"]
    diff = api.client.get(f"/api/v1/runs/{runs[0]['id']}/diff/{runs[1]['id']}", headers=h).json()
    assert all(d["delta"] in (None, 0.0) for d in diff["metrics"])     # the second run is answered from cache
    described = api.client.get(f"/api/v1/datasets/{ds['id']}/description", headers=h).json()
    assert described["n_ratings"] == 15 and set(described["groups"]) == {"gender"}
    for path in (f"/api/v1/runs/{runs[0]['id']}/items", f"/api/v1/datasets/{ds['id']}/description"):
        assert api.client.get(path, headers=api.b.headers).status_code == 404
