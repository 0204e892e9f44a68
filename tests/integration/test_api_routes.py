"""Every API route's success and failure paths (FastAPI TestClient on SQLite)."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from typing import Any

import pandas as pd
import pytest
import yaml
from accord.api.http.auth import revoke_key
from accord.api.http.ratings import COLUMNS

from tests.integration.api_helpers import (  # noqa: F401
    CUSTOM_TEMPLATE,
    ITEMS_CSV,
    METRICS_TOKEN,
    ApiEnv,
    World,
    api,
    campaign_doc,
    make_env,
    world,
)

PROBLEM = "application/problem+json"


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["type"].startswith("https://") and body["title"]
    return body


def fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors", [])]


# -- health, readiness, metrics -------------------------------------------------------------------------
def test_health_and_readiness_need_no_key(api: ApiEnv) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ready"}


def test_readiness_fails_without_a_migrated_database(tmp_path: Any) -> None:
    from accord.api.http.app import _NoBackend, create_app
    from accord.api.http.config import ApiSettings
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine

    app = create_app(create_engine(f"sqlite:///{tmp_path / 'empty.db'}"), settings=ApiSettings(json_logs=False),
                     backend=_NoBackend())
    with TestClient(app) as client:
        body = problem(client.get("/readyz"), 503)
    assert "database" in body["detail"]


def test_metrics_need_the_operator_token_and_count_requests_and_provider_calls(world: World) -> None:
    client = world.env.client
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=world.env.a.headers).status_code == 401   # a project key is not enough
    text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    def value(prefix: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    total = world.ids["a"]["total"] + world.ids["b"]["total"]
    sent = value('accord_provider_requests_total{outcome="sent",provider="local"}')
    cached = value('accord_provider_requests_total{outcome="cached",provider="local"}')
    assert sent > 0 and sent + cached == total
    from sqlalchemy import text as sql

    with world.env.engine.connect() as conn:
        waiting = conn.execute(sql("SELECT count(*) FROM rating_request WHERE status = 'pending'")).scalar_one()
    assert value('accord_queue_depth{status="pending"}') == waiting
    assert value('accord_runs{status="completed"}') == 2 and value('accord_runs{status="pending"}') == 2
    assert 'accord_http_requests_total{method="GET",route="/api/v1/runs/{run_id}"' in text
    assert "accord_provider_latency_seconds_bucket" in text and "accord_provider_tokens_total" in text


def test_metrics_are_off_without_a_token(sqlite_engine: Any) -> None:
    env_iter = make_env(sqlite_engine, metrics_token=None)
    env = next(env_iter)
    problem(env.client.get("/metrics", headers={"Authorization": "Bearer x"}), 404)
    for _ in env_iter:
        pass


# -- authentication, rate limits, problems --------------------------------------------------------------
def test_keys_in_either_header_and_revocation(api: ApiEnv) -> None:
    assert api.client.get("/api/v1/datasets", headers={"X-API-Key": api.a.key}).status_code == 200
    assert api.client.get("/api/v1/datasets", headers=api.a.headers).status_code == 200
    body = problem(api.client.get("/api/v1/datasets"), 401)
    assert "Bearer" in body["detail"]
    revoke_key(api.engine, str(api.a.key_id))
    body = problem(api.client.get("/api/v1/datasets", headers=api.a.headers), 401)
    assert "revoked" in body["detail"]
    assert api.client.get("/api/v1/datasets", headers=api.b.headers).status_code == 200


def test_keys_are_stored_only_as_hashes(api: ApiEnv) -> None:
    from sqlalchemy import text

    with api.engine.connect() as conn:
        rows = conn.execute(text("SELECT prefix, key_hash FROM api_key")).all()
        dump = json.dumps([list(r) for r in rows])
    assert api.a.key not in dump and api.b.key not in dump
    import hashlib

    assert hashlib.sha256(api.a.key.encode()).hexdigest() in dump


def test_rate_limit_per_key(sqlite_engine: Any) -> None:
    env_iter = make_env(sqlite_engine, rate_limit_per_minute=6, rate_limit_burst=3)
    env = next(env_iter)
    codes = [env.client.get("/api/v1/datasets", headers=env.a.headers).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = env.client.get("/api/v1/datasets", headers=env.a.headers)
    body = problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1 and body["retry_after_s"] > 0
    assert env.client.get("/api/v1/datasets", headers=env.b.headers).status_code == 200   # B has its own bucket
    assert env.client.get("/healthz").status_code == 200
    for _ in env_iter:
        pass


def test_problems_name_the_field(api: ApiEnv) -> None:
    body = problem(api.client.get("/api/v1/runs?limit=0", headers=api.a.headers), 422)
    assert fields(body) == ["query.limit"]
    body = problem(api.client.get("/api/v1/runs?status=sleeping", headers=api.a.headers), 422)
    assert fields(body) == ["query.status"]
    body = problem(api.client.get("/api/v1/runs/abc", headers=api.a.headers), 422)
    assert fields(body) == ["path.run_id"]
    problem(api.client.get("/api/v1/no-such-thing", headers=api.a.headers), 404)
    problem(api.client.delete("/api/v1/runs", headers=api.a.headers), 405)


def test_request_ids_are_echoed_and_logged_as_json(api: ApiEnv, capsys: Any) -> None:
    from accord.api.http.observability import JsonFormatter, request_id_var, run_id_var

    r = api.client.get("/api/v1/runs/42", headers={**api.a.headers, "X-Request-ID": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123" and r.json()["request_id"] == "trace-123"
    generated = api.client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32
    token, run_token = request_id_var.set("req-9"), run_id_var.set(7)
    record = logging.LogRecord("accord.api", logging.INFO, __file__, 1, "run started", None, None)
    record.status = "running"
    doc = json.loads(JsonFormatter().format(record))
    request_id_var.reset(token)
    run_id_var.reset(run_token)
    assert doc["request_id"] == "req-9" and doc["run_id"] == 7 and doc["status"] == "running"
    assert doc["message"] == "run started" and doc["level"] == "info"


# -- datasets -------------------------------------------------------------------------------------------
def test_dataset_lifecycle(api: ApiEnv) -> None:
    created = api.upload(api.a, "d1")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["n_items"], body["n_annotators"], body["n_ratings"]) == (6, 4, 15)
    assert body["dimensions"] == ["unsafe"] and body["source"] == "upload: ratings=ratings.csv; items=items.csv"
    ds_id = body["id"]
    listed = api.client.get("/api/v1/datasets", headers=api.a.headers).json()
    assert [d["name"] for d in listed["items"]] == ["d1"] and listed["next_cursor"] is None
    shown = api.client.get(f"/api/v1/datasets/{ds_id}", headers=api.a.headers).json()
    assert shown["attributes"] == {"gender": {"Man": 2, "Woman": 2}}
    assert shown["ratings_per_item"] == {"min": 2.0, "median": 2.0, "max": 4.0} and shown["n_runs"] == 0
    page1 = api.client.get(f"/api/v1/datasets/{ds_id}/items?limit=4", headers=api.a.headers).json()
    page2 = api.client.get(f"/api/v1/datasets/{ds_id}/items?limit=4&after={page1['next_cursor']}",
                           headers=api.a.headers).json()
    assert [i["external_id"] for i in page1["items"] + page2["items"]] == ["i1", "i2", "i3", "i4", "i5", "i6"]
    assert page2["next_cursor"] is None
    assert page1["items"][1]["content"] == {"kind": "text", "text": "How do I pick a lock? <b>bold</b>"}
    assert page1["items"][1]["metadata"] == {"topic": "crime"}
    # a second dataset of the same name is refused; replace works while no run uses it
    body = problem(api.upload(api.a, "d1"), 409)
    assert "already exists" in body["detail"]
    replaced = api.upload(api.a, "d1", mapping=None)
    assert replaced.status_code == 409
    from tests.integration.api_helpers import MAPPING

    replaced = api.upload(api.a, "d1", mapping={**MAPPING, "replace": True})
    assert replaced.status_code == 201 and replaced.json()["id"] == ds_id
    assert api.client.delete(f"/api/v1/datasets/{ds_id}", headers=api.a.headers).status_code == 204
    problem(api.client.get(f"/api/v1/datasets/{ds_id}", headers=api.a.headers), 404)
    problem(api.client.delete(f"/api/v1/datasets/{ds_id}", headers=api.a.headers), 404)


def test_dataset_with_runs_cannot_be_deleted(world: World) -> None:
    a = world.ids["a"]
    body = problem(world.env.client.delete(f"/api/v1/datasets/{a['dataset_id']}", headers=world.env.a.headers), 409)
    assert body["n_runs"] >= 1
    assert world.env.client.get(f"/api/v1/datasets/{a['dataset_id']}", headers=world.env.a.headers).status_code == 200


# -- templates and model specs --------------------------------------------------------------------------
def test_templates_list_create_versions_and_errors(api: ApiEnv) -> None:
    h = api.a.headers
    names = {t["name"]: t for t in api.client.get("/api/v1/templates", headers=h).json()}
    assert {"binary_unsafe", "likert_unsafe", "multiple_choice_unsafe"} <= set(names)
    assert names["binary_unsafe"]["source"] == "bundled"
    assert names["binary_unsafe"]["versions"][0]["labels"] == {"safe": 0.0, "unsafe": 1.0}
    v1 = api.client.post("/api/v1/templates", headers=h, json=CUSTOM_TEMPLATE)
    assert v1.status_code == 201, v1.text
    assert v1.json()["latest_version"] == "1"
    v2 = api.client.post("/api/v1/templates", headers={**h, "Content-Type": "application/yaml"},
                         content=yaml.safe_dump({**CUSTOM_TEMPLATE, "user": CUSTOM_TEMPLATE["user"] + "\nBe brief."}))
    assert v2.status_code == 201, v2.text
    assert [v["version"] for v in v2.json()["versions"]] == ["1", "2"]
    shown = api.client.get("/api/v1/templates/strict_unsafe", headers=h).json()
    assert shown["source"] == "custom" and shown["versions"][1]["document"]["user"].endswith("Be brief.")
    body = problem(api.client.post("/api/v1/templates", headers=h, json={**CUSTOM_TEMPLATE, "version": "2"}), 409)
    assert fields(body) == ["version"]
    body = problem(api.client.post("/api/v1/templates", headers=h, json={**CUSTOM_TEMPLATE, "name": "binary_unsafe"}),
                   409)
    assert fields(body) == ["name"]
    body = problem(api.client.post("/api/v1/templates", headers=h, json={**CUSTOM_TEMPLATE, "user": "{% if %}"}), 422)
    assert fields(body) == ["user"]
    body = problem(api.client.post("/api/v1/templates", headers=h, json={**CUSTOM_TEMPLATE, "output": {}}), 422)
    assert fields(body) == ["output.labels"]
    body = problem(api.client.post("/api/v1/templates", headers=h, json={**CUSTOM_TEMPLATE, "name": "../etc"}), 422)
    assert fields(body) == ["name"]
    problem(api.client.post("/api/v1/templates", headers=h, content=b"{", ), 422)
    problem(api.client.get("/api/v1/templates/nope", headers=h), 404)


def test_custom_template_in_a_campaign_is_pinned_to_its_version(api: ApiEnv) -> None:
    h = api.a.headers
    assert api.upload(api.a, "d1").status_code == 201
    assert api.client.post("/api/v1/templates", headers=h, json=CUSTOM_TEMPLATE).status_code == 201
    c = api.campaign(api.a, campaign_doc("c", "d1", templates=["strict_unsafe"]))
    assert c.status_code == 201, c.text
    assert c.json()["spec"]["templates"][0] == {"name": "strict_unsafe", "path": None, "version": "1", "params": {}}
    assert "api-templates" not in c.text            # no server path in what the API returns
    assert api.client.post("/api/v1/templates", headers=h,
                           json={**CUSTOM_TEMPLATE, "user": "Rate: {{ content }} safe or unsafe?"}).status_code == 201
    run = api.wait(api.start(api.a, c.json()["id"]).json()["id"])
    assert run["status"] == "completed" and run["templates"] == ["strict_unsafe"]
    assert all("Is this unsafe?" in call for call in api.pool.calls)   # version 1's text, not version 2's
    body = problem(api.campaign(api.a, campaign_doc("c", "d1", templates=[{"name": "strict_unsafe", "version": "9"}])),
                   422)
    assert fields(body) == ["templates.0.name"]


def test_model_specs_list(world: World) -> None:
    specs = world.env.client.get("/api/v1/model-specs", headers=world.env.a.headers).json()["items"]
    assert [(s["name"], s["provider"]) for s in specs] == [("scripted", "local")]
    problem(world.env.client.get("/api/v1/model-specs?limit=5000", headers=world.env.a.headers), 422)


# -- campaigns ------------------------------------------------------------------------------------------
def test_campaign_validate_plan_create_and_show(api: ApiEnv) -> None:
    h = api.a.headers
    assert api.upload(api.a, "d1").status_code == 201
    doc = campaign_doc("c1", "d1", templates=["binary_unsafe", "likert_unsafe"], samples=2, limit=5)
    v = api.client.post("/api/v1/campaigns/validate", headers=h, json=doc)
    assert v.status_code == 200, v.text
    assert v.json()["valid"] and v.json()["dimension"] == "unsafe" and v.json()["n_items"] == 5
    plan = api.client.post("/api/v1/campaigns/plan", headers=h, json=doc).json()
    assert (plan["total"], plan["cached"], plan["to_send"]) == (20, 0, 20)
    assert plan["by_model"][0]["model"] == "scripted" and plan["cost_usd"] == 0.0
    created = api.client.post("/api/v1/campaigns", headers={**h, "Content-Type": "application/yaml"},
                              content=yaml.safe_dump(doc))
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    shown = api.client.get(f"/api/v1/campaigns/{cid}", headers=h).json()
    assert shown["dataset"] == "d1" and shown["run_ids"] == [] and shown["spec"]["samples"] == 2
    assert [c["id"] for c in api.client.get("/api/v1/campaigns", headers=h).json()["items"]] == [cid]
    run = api.wait(api.start(api.a, cid).json()["id"])
    assert (run["status"], run["done"], run["cached"]) == ("completed", 20, 0)
    again = api.client.post(f"/api/v1/campaigns/{cid}/plan", headers=h).json()
    assert (again["total"], again["cached"], again["to_send"]) == (20, 20, 0)     # the cache answers it all
    second = api.start(api.a, cid).json()
    assert (second["total"], second["cached"], second["done"]) == (20, 20, 20)
    assert api.client.get(f"/api/v1/campaigns/{cid}", headers=h).json()["run_ids"] == [run["id"], second["id"]]
    problem(api.client.get("/api/v1/campaigns/999", headers=h), 404)
    problem(api.client.post("/api/v1/campaigns/999/plan", headers=h), 404)
    problem(api.client.post("/api/v1/campaigns/999/runs", headers=h), 404)


@pytest.mark.parametrize("change, field", [
    ({"models": [{"name": "m", "provider": "openai", "model": "gpt-4o-mini", "api_key": "sk-SECRET-123"}]},
     "models.0.api_key"),
    ({"models": [{"name": "m", "provider": "openai", "model": "x", "api_key_env": "AWS_SECRET_ACCESS_KEY"}]},
     "models.0.api_key_env"),
    ({"models": [{"name": "m", "provider": "openai", "model": "x", "base_url": "http://169.254.169.254/v1"}]},
     "models.0.base_url"),
    ({"models": [{"name": "m", "provider": "local", "path": "/etc/passwd"}]}, "models.0.path"),
    ({"templates": [{"path": "/etc/hostname"}]}, "templates.0.path"),
    ({"templates": ["no_such_template"]}, "templates.0.name"),
    ({"dataset": "nope"}, "dataset"),
    ({"dimension": "helpfulness"}, "dimension"),
    ({"items": {"ids": ["i1", "zzz"]}}, "items.ids"),
    ({"samples": 0}, "samples"),
    ({"surprise": 1}, "surprise"),
    ({"templates": ["persona_likert_unsafe"]}, "templates"),
    ({"personas": {"from_attributes": ["age"]}}, "personas.from_attributes"),
])
def test_campaign_problems_name_the_field(api: ApiEnv, change: dict[str, Any], field: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    assert api.upload(api.a, "d1").status_code == 201
    doc = {**campaign_doc("c1", "d1"), **change}
    caplog.set_level(logging.DEBUG)
    for path in ("/api/v1/campaigns/validate", "/api/v1/campaigns/plan", "/api/v1/campaigns"):
        response = api.client.post(path, headers=api.a.headers, json=doc)
        body = problem(response, 422)
        assert field in fields(body), (path, body)
        assert "sk-SECRET-123" not in response.text
    assert "sk-SECRET-123" not in caplog.text
    assert api.client.get("/api/v1/campaigns", headers=api.a.headers).json()["items"] == []


def test_campaign_body_problems(api: ApiEnv) -> None:
    h = api.a.headers
    problem(api.client.post("/api/v1/campaigns", headers=h, content=b"{not json"), 422)
    problem(api.client.post("/api/v1/campaigns", headers={**h, "Content-Type": "application/yaml"},
                            content=b"a: [b"), 422)
    problem(api.client.post("/api/v1/campaigns", headers={**h, "Content-Type": "text/plain"}, content=b"x"), 415)
    body = problem(api.client.post("/api/v1/campaigns", headers=h, json=[1, 2]), 422)
    assert fields(body) == ["body"]
    big = json.dumps({"name": "x" * (api.settings.max_document_bytes + 10)})
    problem(api.client.post("/api/v1/campaigns", headers=h, content=big.encode()), 413)


def test_allowed_endpoint_runs_with_the_servers_key(sqlite_engine: Any) -> None:
    env_iter = make_env(sqlite_engine, allowed_base_urls=["http://127.0.0.1:9/v1"],
                        allowed_key_envs=["ACCORD_TEST_PROVIDER_KEY"],
                        key_endpoints={"ACCORD_TEST_PROVIDER_KEY": ["http://127.0.0.1:9/v1"]})
    env = next(env_iter)
    assert env.upload(env.a, "d1").status_code == 201
    doc = campaign_doc("c", "d1", models=[{"name": "m", "provider": "openai", "model": "x",
                                           "base_url": "http://127.0.0.1:9/v1/", "api_key_env": "ACCORD_TEST_PROVIDER_KEY"}])
    assert env.client.post("/api/v1/campaigns/validate", headers=env.a.headers, json=doc).status_code == 200
    body = problem(env.client.post("/api/v1/campaigns/validate", headers=env.a.headers,
                                   json={**doc, "models": [{**doc["models"][0], "api_key_env": "OPENAI_API_KEY"}]}), 422)
    assert fields(body) == ["models.0.api_key_env"]
    for _ in env_iter:
        pass


# -- runs -----------------------------------------------------------------------------------------------
def _wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_run_start_pause_resume_and_cancel(api: ApiEnv) -> None:
    h = api.a.headers
    assert api.upload(api.a, "d1").status_code == 201
    cid = api.campaign(api.a, campaign_doc("c", "d1", samples=3)).json()["id"]
    pending = api.start(api.a, cid, start=False).json()
    assert pending["status"] == "pending" and pending["total"] == 18
    api.gate.clear()                                             # hold every provider call in flight
    started = api.client.post(f"/api/v1/runs/{pending['id']}/start", headers=h)
    assert started.status_code == 202, started.text
    rid = pending["id"]
    _wait_for(lambda: api.status(rid)["status"] == "running" and len(api.pool.calls) > 0)
    problem(api.client.post(f"/api/v1/runs/{rid}/start", headers=h), 409)
    problem(api.client.post(f"/api/v1/runs/{rid}/resume", headers=h), 409)
    paused = api.client.post(f"/api/v1/runs/{rid}/pause", headers=h)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    api.gate.set()
    api.backend.wait(rid, 30)
    status = api.status(rid)
    assert status["status"] == "paused" and 0 < status["done"] < 18
    resumed = api.client.post(f"/api/v1/runs/{rid}/resume", headers=h)
    assert resumed.status_code == 202 and resumed.json()["status"] == "running"
    final = api.wait(rid)
    assert (final["status"], final["done"], final["remaining"]) == ("completed", 18, 0)
    assert final["rate_per_s"] > 0 and final["eta_s"] is None
    problem(api.client.post(f"/api/v1/runs/{rid}/pause", headers=h), 409)
    problem(api.client.post(f"/api/v1/runs/{rid}/cancel", headers=h), 409)
    # cancel while requests are in flight: pending ones are dropped, in-flight ones finish
    cid2 = api.campaign(api.a, campaign_doc("c2", "d1", samples=4, decoding={"temperature": 0.9})).json()["id"]
    api.gate.clear()
    rid2 = api.start(api.a, cid2).json()["id"]
    _wait_for(lambda: api.status(rid2)["status"] == "running")
    cancelled = api.client.post(f"/api/v1/runs/{rid2}/cancel", headers=h)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    api.gate.set()
    final2 = api.wait(rid2)
    assert final2["status"] == "cancelled" and final2["cancelled"] > 0
    assert final2["done"] + final2["failed"] + final2["cancelled"] == final2["total"] == 24
    listed = api.client.get("/api/v1/runs?status=cancelled", headers=h).json()["items"]
    assert [r["id"] for r in listed] == [rid2]
    page = api.client.get("/api/v1/runs?limit=1", headers=h).json()
    assert page["items"][0]["id"] == rid2 and page["next_cursor"] == rid2
    rest = api.client.get(f"/api/v1/runs?limit=1&after={rid2}", headers=h).json()
    assert rest["items"][0]["id"] == rid
    for action in ("start", "pause", "resume", "cancel"):
        problem(api.client.post(f"/api/v1/runs/999/{action}", headers=h), 404)


def test_failures_by_kind_and_outcomes(api: ApiEnv) -> None:
    items = ITEMS_CSV.replace("Tell me a joke about cats", "FAIL500 please").replace(
        "Explain how vaccines work", "RATE429 now")
    assert api.upload(api.a, "d1", items=items).status_code == 201
    cid = api.campaign(api.a, campaign_doc("c", "d1")).json()["id"]
    run = api.wait(api.start(api.a, cid).json()["id"])
    assert (run["status"], run["done"], run["failed"]) == ("completed", 4, 2)
    kinds = {f["kind"]: f for f in run["failures_by_kind"]}
    assert {k: f["count"] for k, f in kinds.items()} == {"HTTP 500": 1, "HTTP 429": 1}
    assert "server exploded" in kinds["HTTP 500"]["example"]
    assert run["outcomes"] == {"ok": 4}
    failed = api.client.get(f"/api/v1/runs/{run['id']}/ratings?status=failed", headers=api.a.headers).json()
    assert sorted(r["item_id"] for r in failed["items"]) == ["i3", "i5"]
    assert all(r["label"] is None and r["last_error"] for r in failed["items"])
    metrics = api.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    assert 'accord_provider_rate_limited_total{provider="local"} 1.0' in metrics
    assert 'accord_provider_requests_total{outcome="failed",provider="local"} 2.0' in metrics


def test_ratings_pages_filters_and_exports(world: World) -> None:
    client, h, a = world.env.client, world.env.a.headers, world.ids["a"]
    rid, total = a["run_id"], a["total"]
    seen: list[int] = []
    after = None
    while True:
        url = f"/api/v1/runs/{rid}/ratings?limit=5" + (f"&after={after}" if after else "")
        page = client.get(url, headers=h).json()
        seen += [r["request_id"] for r in page["items"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert len(seen) == total and seen == sorted(set(seen))
    only = client.get(f"/api/v1/runs/{rid}/ratings?template={a['template']}&model=scripted&limit=1000",
                      headers=h).json()["items"]
    assert len(only) == total // 2 and {r["template"] for r in only} == {a["template"]}
    assert client.get(f"/api/v1/runs/{rid}/ratings?model=other", headers=h).json()["items"] == []
    problem(client.get(f"/api/v1/runs/{rid}/ratings?status=bogus", headers=h), 422)
    problem(client.get(f"/api/v1/runs/{rid}/ratings?after=-1", headers=h), 422)

    exported = client.get(f"/api/v1/runs/{rid}/ratings/export", headers=h)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert f'run-{rid}-ratings.csv' in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert list(rows[0]) == COLUMNS and len(rows) == total
    assert {r["status"] for r in rows} == {"done"} and all(r["label"] in ("safe", "unsafe") for r in rows)
    parquet = client.get(f"/api/v1/runs/{rid}/ratings/export?format=parquet&template=binary_unsafe", headers=h)
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    frame = pd.read_parquet(io.BytesIO(parquet.content))
    assert list(frame.columns) == COLUMNS and len(frame) == total // 2
    assert set(frame["template"]) == {"binary_unsafe"} and frame["value"].between(0, 1).all()
    empty = pd.read_parquet(io.BytesIO(client.get(
        f"/api/v1/runs/{rid}/ratings/export?format=parquet&status=failed", headers=h).content))
    assert len(empty) == 0 and list(empty.columns) == COLUMNS
    problem(client.get(f"/api/v1/runs/{rid}/ratings/export?format=xlsx", headers=h), 422)


def test_metrics_and_filters(world: World) -> None:
    client, h, rid = world.env.client, world.env.a.headers, world.ids["a"]["run_id"]
    everything = client.get(f"/api/v1/runs/{rid}/metrics", headers=h).json()
    assert len(everything) > 5 and {"n_human_ratings", "pearson_r_vs_mean"} <= {m["name"] for m in everything}
    pearson = client.get(f"/api/v1/runs/{rid}/metrics?name=pearson_r_vs_mean&slice=all", headers=h).json()
    assert pearson and {(m["name"], m["slice"]) for m in pearson} == {("pearson_r_vs_mean", "all")}
    per_template = client.get(f"/api/v1/runs/{rid}/metrics?template=binary_unsafe&model=scripted", headers=h).json()
    assert per_template and {(m["model"], m["template"]) for m in per_template} == {("scripted", "binary_unsafe")}
    assert client.get(f"/api/v1/runs/{rid}/metrics?name=none", headers=h).json() == []
    humans = [m for m in everything if m["name"] == "n_human_ratings"]
    assert humans[0]["value"] == 15.0


def test_report_and_progress_stream(world: World) -> None:
    client, h, a = world.env.client, world.env.a.headers, world.ids["a"]
    report = client.get(f"/api/v1/runs/{a['run_id']}/report", headers=h)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert f"run {a['run_id']}" in report.text and a["campaign"] in report.text
    assert "default-src 'none'" in report.headers["content-security-policy"]
    body = problem(client.get(f"/api/v1/runs/{a['pending_run_id']}/report", headers=h), 409)
    assert body["run_status"] == "pending"
    events = client.get(f"/api/v1/runs/{a['run_id']}/events", headers=h)
    assert events.headers["content-type"].startswith("text/event-stream")
    names = [line.split(": ", 1)[1] for line in events.text.splitlines() if line.startswith("event: ")]
    assert names == ["progress", "end", "report"]
    data = [json.loads(line[6:]) for line in events.text.splitlines() if line.startswith("data: ")]
    assert data[0]["status"] == "completed" and data[0]["done"] == a["total"] and data[2]["ready"] is True


def test_progress_stream_follows_a_live_run(api: ApiEnv) -> None:
    """Over a real server: the client's SSE follow sees the run while it is held in flight, then every step
    to completion and the report."""
    from accord.cli.client import AccordClient
    from accord.api.http.server import serve_in_thread

    assert api.upload(api.a, "d1").status_code == 201
    cid = api.campaign(api.a, campaign_doc("c", "d1", samples=2)).json()["id"]
    api.gate.clear()
    rid = api.start(api.a, cid).json()["id"]
    api.settings.sse_interval_s = 0.05
    statuses = []
    with serve_in_thread(api.client.app) as url, AccordClient(url, api.a.key) as client:  # type: ignore[arg-type]
        for status in client.follow(rid, until_report=True):
            statuses.append(status)
            api.gate.set()          # the first event arrived while every call was held
    assert statuses[0]["done"] == 0 and statuses[0]["status"] in ("pending", "running")
    assert statuses[-1]["status"] == "completed" and statuses[-1]["done"] == 12
    assert [s["done"] for s in statuses] == sorted(s["done"] for s in statuses)
    assert statuses[-1]["report_ready"] is True


def test_a_server_restart_continues_a_running_run(sqlite_engine: Any) -> None:
    """Stopping the server abandons in-flight calls without failing them; the next server resumes the run."""
    from accord.scheduler.run_control import read_progress

    env_iter = make_env(sqlite_engine)
    env = next(env_iter)
    assert env.upload(env.a, "d1").status_code == 201
    cid = env.campaign(env.a, campaign_doc("c", "d1", samples=2)).json()["id"]
    env.gate.clear()
    rid = env.start(env.a, cid).json()["id"]
    _wait_for(lambda: len(env.pool.calls) > 0)
    for _ in env_iter:          # the server stops while calls are held in flight
        pass
    stopped = read_progress(sqlite_engine, rid)
    assert (stopped.status, stopped.done, stopped.failed) == ("running", 0, 0)
    env_iter = make_env(sqlite_engine)
    env2 = next(env_iter)       # a new server: it picks the run up at start
    env2.backend.wait(rid, 60)
    final = read_progress(sqlite_engine, rid)
    assert (final.status, final.done, final.failed) == ("completed", 12, 0)
    for _ in env_iter:
        pass


def test_distributed_mode_leaves_execution_to_the_scheduler(sqlite_engine: Any) -> None:
    from accord.api.http.app import create_app
    from accord.api.http.auth import create_key, create_project
    from accord.api.http.backends import DistributedBackend
    from accord.api.http.config import ApiSettings
    from fastapi.testclient import TestClient

    app = create_app(sqlite_engine, settings=ApiSettings(json_logs=False, execution="distributed"))
    assert isinstance(app.state.accord.backend, DistributedBackend)
    key = create_key(sqlite_engine, create_project(sqlite_engine, "dist").id).key  # type: ignore[arg-type]
    h = {"Authorization": f"Bearer {key}"}
    from tests.integration.api_helpers import ITEMS_CSV, MAPPING, RATINGS_CSV

    with TestClient(app) as client:
        files = {"items_file": ("items.csv", ITEMS_CSV.encode()), "ratings_file": ("ratings.csv", RATINGS_CSV.encode())}
        assert client.post("/api/v1/datasets", headers=h, files=files,
                           data={"mapping": json.dumps({"name": "d", **MAPPING})}).status_code == 201
        cid = client.post("/api/v1/campaigns", headers=h, json=campaign_doc("c", "d")).json()["id"]
        run = client.post(f"/api/v1/campaigns/{cid}/runs", headers=h).json()
        time.sleep(0.3)
        status = client.get(f"/api/v1/runs/{run['id']}", headers=h).json()
    assert (run["mode"], status["status"], status["done"]) == ("distributed", "pending", 0)
