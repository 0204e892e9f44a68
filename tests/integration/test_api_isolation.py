"""Tenancy: a key of project A can never see, list, infer or touch project B's datasets, templates,
campaigns, runs, ratings, metrics or reports — tried on every route of the API and the dashboard.

The route table below must name every route the app serves (a test checks), so a new route cannot skip
this file."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.api_helpers import CUSTOM_TEMPLATE, World, campaign_doc, world  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@dataclass
class Call:
    method: str
    path: str                      # with {placeholders} filled from the target project's ids
    body: Any = None
    kind: str = "id"               # id: B's id must answer 404; list: B's things must not appear;
                                   # create: a body naming B's things is refused without revealing them
    form: dict[str, str] | None = None
    ok: tuple[int, ...] = (200,)   # what B itself gets for the same call (proves the 404 is isolation)
    extra: dict[str, Any] = field(default_factory=dict)


API_ROUTES: dict[tuple[str, str], Call] = {
    ("GET", "/api/v1/datasets"): Call("GET", "/api/v1/datasets", kind="list"),
    ("POST", "/api/v1/datasets"): Call("POST", "/api/v1/datasets", kind="upload", ok=(201,)),
    ("GET", "/api/v1/datasets/{dataset_id}"): Call("GET", "/api/v1/datasets/{dataset_id}"),
    ("DELETE", "/api/v1/datasets/{dataset_id}"): Call("DELETE", "/api/v1/datasets/{dataset_id}", ok=(409,)),
    ("GET", "/api/v1/datasets/{dataset_id}/items"): Call("GET", "/api/v1/datasets/{dataset_id}/items"),
    ("GET", "/api/v1/templates"): Call("GET", "/api/v1/templates", kind="list"),
    ("POST", "/api/v1/templates"): Call("POST", "/api/v1/templates", kind="template", ok=(201,)),
    ("GET", "/api/v1/templates/{name}"): Call("GET", "/api/v1/templates/{template}"),
    ("GET", "/api/v1/model-specs"): Call("GET", "/api/v1/model-specs", kind="list"),
    ("POST", "/api/v1/campaigns/validate"): Call("POST", "/api/v1/campaigns/validate", kind="create"),
    ("POST", "/api/v1/campaigns/plan"): Call("POST", "/api/v1/campaigns/plan", kind="create"),
    ("POST", "/api/v1/campaigns"): Call("POST", "/api/v1/campaigns", kind="create", ok=(201,)),
    ("GET", "/api/v1/campaigns"): Call("GET", "/api/v1/campaigns", kind="list"),
    ("GET", "/api/v1/campaigns/{campaign_id}"): Call("GET", "/api/v1/campaigns/{campaign_id}"),
    ("POST", "/api/v1/campaigns/{campaign_id}/plan"): Call("POST", "/api/v1/campaigns/{campaign_id}/plan"),
    ("POST", "/api/v1/campaigns/{campaign_id}/runs"): Call("POST", "/api/v1/campaigns/{campaign_id}/runs",
                                                           body={"start": False}, ok=(202,)),
    ("GET", "/api/v1/runs"): Call("GET", "/api/v1/runs", kind="list"),
    ("GET", "/api/v1/runs/{run_id}"): Call("GET", "/api/v1/runs/{run_id}"),
    ("POST", "/api/v1/runs/{run_id}/start"): Call("POST", "/api/v1/runs/{run_id}/start", ok=(409,)),
    ("POST", "/api/v1/runs/{run_id}/pause"): Call("POST", "/api/v1/runs/{run_id}/pause", ok=(409,)),
    ("POST", "/api/v1/runs/{run_id}/resume"): Call("POST", "/api/v1/runs/{run_id}/resume", ok=(409,)),
    ("POST", "/api/v1/runs/{run_id}/cancel"): Call("POST", "/api/v1/runs/{run_id}/cancel", ok=(409,)),
    ("GET", "/api/v1/runs/{run_id}/events"): Call("GET", "/api/v1/runs/{run_id}/events"),
    ("GET", "/api/v1/runs/{run_id}/ratings"): Call("GET", "/api/v1/runs/{run_id}/ratings"),
    ("GET", "/api/v1/runs/{run_id}/ratings/export"): Call("GET", "/api/v1/runs/{run_id}/ratings/export"),
    ("GET", "/api/v1/runs/{run_id}/metrics"): Call("GET", "/api/v1/runs/{run_id}/metrics"),
    ("GET", "/api/v1/runs/{run_id}/report"): Call("GET", "/api/v1/runs/{run_id}/report"),
    ("GET", "/api/v1/runs/{run_id}/report.json"): Call("GET", "/api/v1/runs/{run_id}/report.json"),
    ("GET", "/api/v1/datasets/{dataset_id}/description"): Call("GET", "/api/v1/datasets/{dataset_id}/description"),
    ("GET", "/api/v1/runs/{run_id}/items"): Call("GET", "/api/v1/runs/{run_id}/items"),
    ("GET", "/api/v1/runs/{run_id}/items/{item_id:path}"): Call("GET", "/api/v1/runs/{run_id}/items/i1"),
    ("GET", "/api/v1/runs/{run_id}/comparison"): Call("GET", "/api/v1/runs/{run_id}/comparison"),
    ("GET", "/api/v1/runs/{run_id}/diff/{other_id}"): Call("GET", "/api/v1/runs/{run_id}/diff/{run_id}"),
}

DASHBOARD_ROUTES: dict[tuple[str, str], Call] = {
    ("GET", "/dashboard"): Call("GET", "/dashboard", kind="list"),
    ("GET", "/dashboard/runs/{run_id}"): Call("GET", "/dashboard/runs/{run_id}"),
    ("GET", "/dashboard/runs/{run_id}/events"): Call("GET", "/dashboard/runs/{run_id}/events"),
    ("GET", "/dashboard/runs/{run_id}/report"): Call("GET", "/dashboard/runs/{run_id}/report"),
    ("GET", "/dashboard/runs/{run_id}/export"): Call("GET", "/dashboard/runs/{run_id}/export"),
    ("POST", "/dashboard/runs/{run_id}/{action}"): Call("POST", "/dashboard/runs/{run_id}/cancel", form={},
                                                        ok=(409,)),
    ("GET", "/dashboard/datasets/{dataset_id}"): Call("GET", "/dashboard/datasets/{dataset_id}"),
    ("GET", "/dashboard/datasets/new"): Call("GET", "/dashboard/datasets/new", kind="page"),
    ("POST", "/dashboard/datasets"): Call("POST", "/dashboard/datasets", kind="upload-form", ok=(303,)),
    ("GET", "/dashboard/runs/{run_id}/items"): Call("GET", "/dashboard/runs/{run_id}/items"),
    ("GET", "/dashboard/runs/{run_id}/items/{item_id:path}"): Call("GET", "/dashboard/runs/{run_id}/items/i1"),
    ("GET", "/dashboard/runs/{run_id}/compare"): Call("GET", "/dashboard/runs/{run_id}/compare"),
    ("POST", "/dashboard/campaigns"): Call("POST", "/dashboard/campaigns", kind="create", form={}, ok=(303,)),
    ("POST", "/dashboard/campaigns/{campaign_id}/runs"): Call("POST", "/dashboard/campaigns/{campaign_id}/runs",
                                                              form={}, ok=(303,)),
}
# Routes that hold no project data: health, metrics (operator token), login, the dashboard's scripts and style.
PUBLIC_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/"), ("GET", "/login"),
                 ("POST", "/login"), ("POST", "/logout"), ("GET", "/dashboard/static/{name}"),
                 ("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/docs")}


def _flatten(routes: Any) -> Any:
    for route in routes:
        inner = getattr(route, "original_router", None)   # FastAPI's wrapper of an included router
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield route


def served_routes(app: Any) -> set[tuple[str, str]]:
    out = set()
    for route in _flatten(app.routes):
        for method in getattr(route, "methods", None) or []:
            if method != "HEAD":
                out.add((method, route.path))
    return out


def test_every_route_is_covered_by_the_isolation_table(world: World) -> None:
    served = served_routes(world.env.client.app)
    covered = set(API_ROUTES) | set(DASHBOARD_ROUTES) | PUBLIC_ROUTES
    assert served - covered == set(), "routes missing from the isolation table"
    assert covered - served == set(), "the table names routes the app does not serve"


def _fill(path: str, ids: dict[str, Any]) -> str:
    return path.format(**ids)


def _secrets_of(ids: dict[str, Any], call: Call) -> list[str]:
    """B's names that A's answer must not contain (A may see a name echoed back only if A sent it)."""
    sent = call.path.format(**ids) if "{" in call.path else call.path
    if call.kind == "create":
        sent += ids["dataset"]
    return [s for s in (ids["dataset"], ids["campaign"], ids["template"]) if s not in sent]


def _request(world: World, call: Call, target: dict[str, Any], headers: dict[str, str],
             cookies: dict[str, str] | None = None) -> Any:
    client = world.env.client
    client.cookies.clear()
    if cookies:
        for k, v in cookies.items():
            client.cookies.set(k, v)
    path = _fill(call.path, target)
    if call.form is not None:
        from accord.api.http.auth import csrf_token

        from accord.api.http.auth import COOKIE_NAME

        form = {"csrf": csrf_token(cookies[COOKIE_NAME]) if cookies else ""}
        if call.kind == "create":
            form["campaign"] = json.dumps(campaign_doc("x-campaign", target["dataset"]))
        response = client.request(call.method, path, data=form, headers=headers, follow_redirects=False)
    elif call.kind == "create":
        response = client.request(call.method, path, json=campaign_doc("x-campaign", target["dataset"]),
                                  headers=headers)
    elif call.kind == "template":
        response = client.request(call.method, path, json={**CUSTOM_TEMPLATE, "name": f"tpl_new_{uuid.uuid4().hex[:8]}"},
                                  headers=headers)
    elif call.kind == "upload-form":   # the dashboard's upload: a multipart form with the session's token
        from accord.api.http.auth import COOKIE_NAME, csrf_token

        from tests.integration.api_helpers import ITEMS_CSV, RATINGS_CSV

        files = {"items_file": ("items.csv", ITEMS_CSV.encode(), "text/csv"),
                 "ratings_file": ("ratings.csv", RATINGS_CSV.encode(), "text/csv")}
        form = {"csrf": csrf_token(cookies[COOKIE_NAME]) if cookies else "", "name": f"new-{uuid.uuid4().hex[:8]}",
                "rating_cols": "unsafe", "text_col": "text", "attribute_cols": "gender", "item_meta_cols": "topic"}
        response = client.request(call.method, path, headers=headers, files=files, data=form,
                                  follow_redirects=False)
    elif call.kind == "upload":
        from tests.integration.api_helpers import ITEMS_CSV, MAPPING, RATINGS_CSV

        files = {"items_file": ("items.csv", ITEMS_CSV.encode(), "text/csv"),
                 "ratings_file": ("ratings.csv", RATINGS_CSV.encode(), "text/csv")}
        response = client.request(call.method, path, headers=headers, files=files,
                                  data={"mapping": json.dumps({**MAPPING, "name": f"new-{uuid.uuid4().hex[:8]}"})})
    else:
        response = client.request(call.method, path, json=call.body, headers=headers, follow_redirects=False)
    client.cookies.clear()
    return response


def _b_state(world: World) -> dict[str, Any]:
    """Everything of B that A must not be able to change."""
    env, b = world.env, world.ids["b"]
    h = env.b.headers
    return {
        "datasets": env.client.get("/api/v1/datasets", headers=h).json(),
        "template": env.client.get(f"/api/v1/templates/{b['template']}", headers=h).json()["versions"],
        "runs": [(r["id"], r["status"], r["done"]) for r in env.client.get("/api/v1/runs", headers=h).json()["items"]],
        "campaigns": [c["id"] for c in env.client.get("/api/v1/campaigns", headers=h).json()["items"]],
    }


@pytest.mark.parametrize("route", sorted(API_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_key_of_a_cannot_reach_b_over_the_api(world: World, route: tuple[str, str]) -> None:
    call = API_ROUTES[route]
    a_ids, b_ids = world.ids["a"], world.ids["b"]
    before = _b_state(world)
    response = _request(world, call, b_ids, world.env.a.headers)
    text = response.text
    if call.kind == "id":
        assert response.status_code == 404, (route, response.status_code, text[:300])
        assert response.headers["content-type"].startswith("application/problem+json")
        # Same answer as for an id that exists nowhere: nothing to infer.
        ghost = {**b_ids, "dataset_id": 999999, "campaign_id": 999999, "run_id": 999999, "template": "no_such_tpl"}
        ghost_response = _request(world, call, ghost, world.env.a.headers)
        assert ghost_response.status_code == 404
        assert _shape(response.json()) == _shape(ghost_response.json())
    elif call.kind == "list":
        assert response.status_code == 200, text[:300]
        seen_by_a = _keys(response)
        seen_by_b = _keys(_request(world, call, b_ids, world.env.b.headers))
        assert seen_by_b, "B has things of this kind"
        assert not seen_by_a & seen_by_b, f"{route}: A lists B's ids {seen_by_a & seen_by_b}"
    elif call.kind == "create":
        assert response.status_code == 422, (route, response.status_code, text[:300])
        assert response.json()["errors"][0]["field"] == "dataset"
        assert a_ids["dataset"] in text, "A's own datasets are listed as the choice"
    elif call.kind in ("template", "upload"):
        assert response.status_code == 201, text[:300]
    for secret in _secrets_of(b_ids, call):
        assert secret not in text, f"{route} leaked {secret!r}"
    assert _b_state(world) == before


def _shape(problem: dict[str, Any]) -> dict[str, Any]:
    """A 404 problem with the requested id or name blanked out."""
    detail = re.sub(r"'[^']*'", "X", re.sub(r"\d+", "N", problem["detail"]))
    return {"type": problem["type"], "title": problem["title"], "status": problem["status"], "detail": detail}


def _keys(response: Any) -> set[Any]:
    """The ids (or, for templates, the custom names) a list answer shows; the dashboard's run links."""
    if response.headers["content-type"].startswith("text/html"):
        return set(re.findall(r'href="/dashboard/(?:runs|datasets)/(\d+)"', response.text))
    body = response.json()
    items = body if isinstance(body, list) else body.get("items", [])
    return {item.get("id", item.get("name")) for item in items if item.get("source") != "bundled"}


@pytest.mark.parametrize("route", sorted(API_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_b_reaches_its_own_things_with_the_same_calls(world: World, route: tuple[str, str]) -> None:
    """The control experiment: the same call with B's own key is not a 404, so A's 404s come from isolation."""
    call = API_ROUTES[route]
    if call.kind in ("create", "template", "upload"):
        pytest.skip("creation calls are checked above")
    b_ids = world.ids["b"]
    ids = dict(b_ids)
    if route[1] in ("/api/v1/runs/{run_id}/start",):
        ids["run_id"] = b_ids["run_id"]          # finished: 409, proving the run is visible to B
    response = _request(world, call, ids, world.env.b.headers)
    assert response.status_code in call.ok, (route, response.status_code, response.text[:300])


@pytest.mark.parametrize("route", sorted(API_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_every_api_route_needs_a_key(world: World, route: tuple[str, str]) -> None:
    call = API_ROUTES[route]
    response = _request(world, call, world.ids["a"], {})
    assert response.status_code == 401, (route, response.status_code)
    assert response.headers["www-authenticate"].startswith("Bearer")
    bad = _request(world, call, world.ids["a"], {"Authorization": "Bearer acc_not-a-real-key"})
    assert bad.status_code == 401


@pytest.mark.parametrize("route", sorted(DASHBOARD_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_dashboard_of_a_cannot_show_b(world: World, route: tuple[str, str]) -> None:
    call = DASHBOARD_ROUTES[route]
    b_ids = world.ids["b"]
    before = _b_state(world)
    cookies = {"accord_session": world.env.session_cookie(world.env.a)}
    response = _request(world, call, b_ids, {}, cookies=cookies)
    if call.kind == "id":
        assert response.status_code == 404, (route, response.status_code, response.text[:300])
    elif call.kind == "create":
        assert response.status_code == 422
    elif call.kind == "upload-form":   # into A's own project
        assert response.status_code == 303, response.text[:300]
    else:
        assert response.status_code == 200
    for secret in _secrets_of(b_ids, call):
        assert secret not in response.text, f"{route} leaked {secret!r}"
    assert _b_state(world) == before
    # Without a login cookie every dashboard page sends the browser to the login page.
    anonymous = _request(world, call, b_ids, {}, cookies=None)
    assert anonymous.status_code in (303, 403), (route, anonymous.status_code)
    if anonymous.status_code == 303:
        assert anonymous.headers["location"] == "/login"


def test_b_sees_its_dashboard_pages(world: World) -> None:
    b = world.ids["b"]
    for call in DASHBOARD_ROUTES.values():
        if call.kind != "id" or call.method != "GET" or call.path.endswith("/events"):
            continue
        response = _request(world, call, b, {}, cookies={"accord_session": world.env.session_cookie(world.env.b)})
        assert response.status_code == 200, (call.path, response.status_code)


def test_response_cache_is_not_shared_between_projects(sqlite_engine: Any) -> None:
    from tests.integration.api_helpers import make_env

    env_iter = make_env(sqlite_engine)
    env = next(env_iter)
    try:
        for tenant in (env.a, env.b):
            assert env.upload(tenant, "same-data").status_code == 201
        doc = campaign_doc("same-campaign", "same-data")
        env.finished_run(env.a, "same-data", "same-campaign")
        plan = env.client.post("/api/v1/campaigns/plan", headers=env.b.headers, json=doc).json()
        assert plan["cached"] == 0, f"B's plan shows {plan['cached']} of {plan['total']} answers cached by A"
    finally:
        for _ in env_iter:
            pass
