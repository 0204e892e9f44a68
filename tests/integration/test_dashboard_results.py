"""The dashboard's result pages over TestClient: the upload form (same validation as the API's upload), the
dataset page (its description is the API's), the item explorer and an item's page, the comparison of runs,
per-model live progress; rated texts render escaped, and another project's ids are a 404 everywhere."""

from __future__ import annotations

import html
import io
import re
from typing import Any

import pytest
from accord.api.http.auth import csrf_token
from sqlalchemy import func, select
from sqlmodel import Session

from tests.integration.api_helpers import ITEMS_CSV, RATINGS_CSV, ApiEnv, api, campaign_doc  # noqa: F401

XSS = '<script>alert("owned")</script><img src=x onerror=alert(1)>'


def login(env: ApiEnv, key: str) -> str:
    r = env.client.post("/login", data={"api_key": key}, follow_redirects=False)
    assert r.status_code == 303
    return csrf_token(env.client.cookies["accord_session"])


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def form_files(items: str = ITEMS_CSV, ratings: str = RATINGS_CSV) -> dict[str, Any]:
    return {"items_file": ("items.csv", io.BytesIO(items.encode()), "text/csv"),
            "ratings_file": ("ratings.csv", io.BytesIO(ratings.encode()), "text/csv"),
            "annotators_file": ("", io.BytesIO(b""), "application/octet-stream")}   # an empty file input


FORM = {"name": "from-browser", "layout": "long", "item_col": "item_id", "annotator_col": "annotator_id",
        "rating_cols": "unsafe", "text_col": "text", "attribute_cols": "gender", "item_meta_cols": "topic",
        "meta_roles": "category=topic", "label_map": "", "meaning": "low=safe,high=unsafe"}


def dataset_count(env: ApiEnv) -> int:
    from accord.models.schema import Dataset

    with Session(env.engine) as session:
        return int(session.execute(select(func.count()).select_from(Dataset)).scalar_one())


def test_upload_form_imports_like_the_api_and_shows_one_line_errors(api: ApiEnv) -> None:
    csrf = login(api, api.a.key)
    page = api.client.get("/dashboard/datasets/new")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    for flag in ("--label-map", "--meta-role", "--attribute-col", "--layout", "--annotator-columns"):
        assert flag in page.text
    before = dataset_count(api)
    bad = api.client.post("/dashboard/datasets", data={**FORM, "rating_cols": "no_such_column", "csrf": csrf},
                          files=form_files(), follow_redirects=False)
    assert bad.status_code == 422
    error = re.search(r'<div class="error" id="upload-error" role="alert">(.*?)</div>', bad.text, re.DOTALL)
    assert error is not None and "no_such_column" in error.group(1) and "\n" not in error.group(1).strip()
    assert 'value="from-browser"' in bad.text                      # the form keeps what was typed
    forged = api.client.post("/dashboard/datasets", data={**FORM, "csrf": "forged"}, files=form_files(),
                             follow_redirects=False)
    assert forged.status_code == 403
    elsewhere = api.client.post("/dashboard/datasets", data={**FORM, "csrf": csrf}, files=form_files(),
                                headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert elsewhere.status_code == 403
    assert dataset_count(api) == before                           # nothing was written
    ok = api.client.post("/dashboard/datasets", data={**FORM, "csrf": csrf}, files=form_files(),
                         follow_redirects=False)
    assert ok.status_code == 303, ok.text
    dataset_id = int(ok.headers["location"].rsplit("/", 1)[1])
    shown = api.client.get(f"/api/v1/datasets/{dataset_id}", headers=api.a.headers).json()
    via_api = api.upload(api.a, "from-api").json()
    assert (shown["n_items"], shown["n_annotators"], shown["n_ratings"]) == (
        via_api["n_items"], via_api["n_annotators"], via_api["n_ratings"]) == (6, 4, 15)
    assert shown["source"].startswith("upload: ratings=ratings.csv; items=items.csv")
    again = api.client.post("/dashboard/datasets", data={**FORM, "csrf": csrf}, files=form_files(),
                            follow_redirects=False)
    assert again.status_code == 409 and "already exists" in again.text


def test_dataset_page_draws_the_description_the_api_returns(api: ApiEnv) -> None:
    items = ITEMS_CSV.replace("Tell me a joke about cats", XSS.replace('"', '""'))
    ds = api.upload(api.a, "described", items=items).json()
    login(api, api.a.key)
    described = api.client.get(f"/api/v1/datasets/{ds['id']}/description", headers=api.a.headers)
    assert described.status_code == 200, described.text
    d = described.json()
    page = api.client.get(f"/dashboard/datasets/{ds['id']}").text
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert f'<b id="baseline-r">{fmt(d["baseline"]["annotator_loo_r"]["median"])}</b>' in page
    assert f'<b id="mean-rating">{fmt(d["mean_rating"])}</b>' in page
    gender = d["groups"]["gender"]["groups"]
    table = page.split('class="group-means" data-attribute="gender"')[1].split("</table>")[0]
    for g in gender:
        row = table.split(f'data-group="{g["group"]}"')[1].split("</tr>")[0]
        assert f'<td class="num mean">{fmt(g["mean"])}</td>' in row
    assert page.count('<svg class="chart') >= 2                     # the label bars and the group intervals
    assert "<svg" in page and "onerror" not in page.split("<svg", 1)[1].split("</svg>", 1)[0]
    wrong = api.client.get(f"/api/v1/datasets/{ds['id']}/description?dimension=nope", headers=api.a.headers)
    assert wrong.status_code == 422 and "nope" in wrong.json()["detail"]


def _two_runs(env: ApiEnv) -> tuple[dict[str, Any], dict[str, Any], int]:
    items = ITEMS_CSV.replace("Tell me a joke about cats", XSS.replace('"', '""'))
    assert env.upload(env.a, "explored", items=items).status_code == 201
    c = env.campaign(env.a, campaign_doc("explore", "explored", templates=["binary_unsafe", "likert_unsafe"],
                                         samples=2)).json()
    first = env.wait(env.start(env.a, c["id"]).json()["id"])
    second = env.wait(env.start(env.a, c["id"]).json()["id"])
    assert first["status"] == second["status"] == "completed"
    return first, second, c["id"]


def test_item_explorer_filters_sorts_pages_and_matches_the_api(api: ApiEnv) -> None:
    run, _second, _cid = _two_runs(api)
    rid = run["id"]
    login(api, api.a.key)
    doc = api.client.get(f"/api/v1/runs/{rid}/items?sort=item_id&order=asc", headers=api.a.headers).json()
    assert [r["item_id"] for r in doc["items"]] == ["i1", "i2", "i3", "i4", "i5", "i6"]
    assert doc["attributes"] == ["gender"] and doc["meta_columns"] == ["topic"]
    i2 = next(r for r in doc["items"] if r["item_id"] == "i2")
    assert i2["n_human"] == 4 and i2["human_mean"] == pytest.approx(0.75)
    assert i2["group_gap"] == pytest.approx(0.5) and (i2["gap_high"], i2["gap_low"]) == ("Woman", "Man")
    page = api.client.get(f"/dashboard/runs/{rid}/items?sort=item_id&order=asc")
    assert page.status_code == 200
    shown = re.findall(r'<tr data-href="[^"]+" data-item="([^"]+)">', page.text)
    assert shown == ["i1", "i2", "i3", "i4", "i5", "i6"]
    row = page.text.split('data-item="i2"')[1].split("</tr>")[0]
    assert f'<td class="num disagreement">{fmt(i2["disagreement"])}</td>' in row
    # sort by disagreement (the default), filter by metadata, page: the URL carries it all
    default = api.client.get(f"/api/v1/runs/{rid}/items", headers=api.a.headers).json()
    gaps = [r["abs_disagreement"] for r in default["items"] if r["abs_disagreement"] is not None]
    assert gaps == sorted(gaps, reverse=True)
    gapped = api.client.get(f"/api/v1/runs/{rid}/items?min_gap=0.5&sort=item_id", headers=api.a.headers).json()
    assert {r["item_id"] for r in gapped["items"]} == {r["item_id"] for r in doc["items"]
                                                       if r["group_gap"] is not None and r["group_gap"] >= 0.5}
    crime = api.client.get(f"/dashboard/runs/{rid}/items?meta.topic=crime")
    assert re.findall(r'data-item="([^"]+)"', crime.text) == ["i2"]
    paged = api.client.get(f"/dashboard/runs/{rid}/items?sort=item_id&order=asc&per_page=4&page=2")
    assert re.findall(r'data-item="([^"]+)"', paged.text) == ["i5", "i6"]
    assert 'id="page-prev"' in paged.text and 'id="page-next"' not in paged.text
    prev = html.unescape(re.search(r'href="([^"]+)" rel="prev"', paged.text).group(1))  # type: ignore[union-attr]
    assert "per_page=4" in prev and "page=1" in prev and "sort=item_id" in prev
    one_model = api.client.get(f"/api/v1/runs/{rid}/items?template=likert_unsafe&sort=item_id&order=asc",
                               headers=api.a.headers).json()
    assert all(r["n_llm"] <= 2 for r in one_model["items"])           # 2 samples of one template
    for bad, field in (("sort=bogus", "sort"), ("attribute=planet", "attribute"), ("meta.nope=1", "meta.nope"),
                       ("page=0", "page")):
        r = api.client.get(f"/api/v1/runs/{rid}/items?{bad}", headers=api.a.headers)
        assert r.status_code == 422, bad
        assert field in r.text
        assert api.client.get(f"/dashboard/runs/{rid}/items?{bad}").status_code == 422


def test_item_page_shows_people_and_every_answer_escaped(api: ApiEnv) -> None:
    run, _second, _cid = _two_runs(api)
    rid = run["id"]
    login(api, api.a.key)
    doc = api.client.get(f"/api/v1/runs/{rid}/items/i3", headers=api.a.headers)
    assert doc.status_code == 200, doc.text
    item = doc.json()
    assert XSS in item["content"]["text"]
    assert len(item["ratings"]) == 4                                   # 2 templates x 2 samples
    assert item["human"]["overall"] == {"0": 2, "1": 0}
    assert {g["group"] for g in item["human"]["groups"]["gender"]} == {"Woman", "Man"}
    page = api.client.get(f"/dashboard/runs/{rid}/items/i3")
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in page.text
    rows = page.text.split('id="item-ratings"')[1].split("</table>")[0]
    assert rows.count("<tr data-request=") == 4
    for r in item["ratings"]:
        row = rows.split(f'data-request="{r["request_id"]}"')[1].split("</tr>")[0]
        assert f'<td class="num value">{fmt(r["value"])}</td>' in row and r["template"] in row
    assert f'<b id="item-human-mean">{fmt(item["human"]["mean"])}</b>' in page.text
    assert page.text.count('<svg class="chart') == 3                 # overall + Woman + Man
    back = api.client.get(f"/dashboard/runs/{rid}/items/i3?back=https://evil.example/").text
    assert f'href="/dashboard/runs/{rid}/items" accesskey="b"' in back
    assert api.client.get(f"/dashboard/runs/{rid}/items/nope").status_code == 404
    assert api.client.get(f"/api/v1/runs/{rid}/items/nope", headers=api.a.headers).status_code == 404


def test_comparison_matrix_and_what_changed_between_two_runs(api: ApiEnv) -> None:
    first, second, _cid = _two_runs(api)
    login(api, api.a.key)
    matrix = api.client.get(f"/api/v1/runs/{second['id']}/comparison", headers=api.a.headers).json()
    assert matrix["run_ids"] == [first["id"], second["id"]]
    assert "pearson_r_vs_mean" in matrix["metrics"] and not matrix["has_subjects"]
    keys = {(r["run_id"], r["model"], r["template"]) for r in matrix["rows"]}
    assert {(first["id"], "scripted", "binary_unsafe"), (second["id"], "scripted", "likert_unsafe")} <= keys
    page = api.client.get(f"/dashboard/runs/{second['id']}/compare")
    assert page.status_code == 200
    for r in matrix["rows"]:
        cell = r["cells"].get("pearson_r_vs_mean")
        if cell is None:
            continue
        row = page.text.split(f'<tr data-run="{r["run_id"]}" data-model="{r["model"]}" '
                              f'data-template="{r["template"]}"')[1].split("</tr>")[0]
        shown = row.split('data-metric="pearson_r_vs_mean">')[1].split("</td>")[0]
        assert f'<span class="value">{fmt(cell["value"])}</span>' in shown
    only = api.client.get(f"/dashboard/runs/{second['id']}/compare?run={first['id']}").text
    assert f'data-run="{second["id"]}"' not in only and f'data-run="{first["id"]}"' in only
    diff = api.client.get(f"/api/v1/runs/{first['id']}/diff/{second['id']}", headers=api.a.headers).json()
    assert diff["run_a"] == first["id"] and diff["metrics"]
    for d in diff["metrics"]:
        if d["a"] and d["b"] and d["a"]["value"] is not None and d["b"]["value"] is not None:
            assert d["delta"] == pytest.approx(d["b"]["value"] - d["a"]["value"])
    shown = api.client.get(f"/dashboard/runs/{first['id']}/compare?other={second['id']}")
    assert shown.status_code == 200 and 'id="diff-metrics"' in shown.text and 'id="diff-items"' in shown.text
    assert shown.text.split('id="diff-items"')[1].split("</table>")[0].count("<tr data-href=") == len(diff["items"])


def test_run_page_and_status_give_progress_per_model(api: ApiEnv) -> None:
    run, _second, _cid = _two_runs(api)
    status = api.status(run["id"])
    per_model = status["per_model"]
    assert [m["model"] for m in per_model] == ["scripted"]
    m = per_model[0]
    assert m["total"] == status["total"] and m["done"] == status["done"] and m["remaining"] == 0
    assert m["cost_usd"] == pytest.approx(status["cost_usd"]) and m["eta_s"] is None
    login(api, api.a.key)
    page = api.client.get(f"/dashboard/runs/{run['id']}").text
    row = page.split('<tr class="model-row" data-model="scripted">')[1].split("</tr>")[0]
    assert f'<td class="num pm-done">{m["done"]}</td>' in row and "<progress" in row
    assert f'href="/dashboard/runs/{run["id"]}/items"' in page


def test_another_projects_runs_items_and_datasets_are_not_found(api: ApiEnv) -> None:
    run, second, _cid = _two_runs(api)
    ds = api.client.get("/api/v1/datasets", headers=api.a.headers).json()["items"][0]["id"]
    rid = run["id"]
    for path in (f"/api/v1/runs/{rid}/items", f"/api/v1/runs/{rid}/items/i1", f"/api/v1/runs/{rid}/comparison",
                 f"/api/v1/runs/{rid}/diff/{second['id']}", f"/api/v1/datasets/{ds}/description"):
        assert api.client.get(path, headers=api.b.headers).status_code == 404, path
    # b's own run cannot pull a's runs into its matrix or diff either
    api.upload(api.b, "b-data")
    b_run = api.finished_run(api.b, "b-data", "b-campaign")
    for path in (f"/api/v1/runs/{b_run['id']}/comparison?runs={b_run['id']},{rid}",
                 f"/api/v1/runs/{b_run['id']}/diff/{rid}"):
        assert api.client.get(path, headers=api.b.headers).status_code == 404, path
    login(api, api.b.key)
    for path in (f"/dashboard/runs/{rid}/items", f"/dashboard/runs/{rid}/items/i1", f"/dashboard/runs/{rid}/compare",
                 f"/dashboard/runs/{b_run['id']}/compare?other={rid}", f"/dashboard/datasets/{ds}"):
        page = api.client.get(path)
        assert page.status_code == 404, path
        assert "explored" not in page.text, path


def test_item_page_and_comparison_of_a_run_with_subjects_and_judges(api: ApiEnv) -> None:
    assert api.upload(api.a, "staged").status_code == 201
    doc = {"name": "staged", "dataset": "staged",
           "subjects": {"models": [{"name": "subject-a", "provider": "local"},
                                   {"name": "subject-b", "provider": "local"}],
                        "templates": ["fine_open_question"]},
           "judges": {"models": [{"name": "judge", "provider": "local"}], "templates": ["fine_judge_safety"]}}
    c = api.campaign(api.a, doc)
    assert c.status_code == 201, c.text
    run = api.wait(api.start(api.a, c.json()["id"]).json()["id"])
    assert run["status"] == "completed", run
    login(api, api.a.key)
    item = api.client.get(f"/api/v1/runs/{run['id']}/items/i2", headers=api.a.headers).json()
    assert {a["subject"] for a in item["answers"]} == {"subject-a", "subject-b"}
    assert all(len(a["judgments"]) == 1 and a["judgments"][0]["judge"] == "judge" for a in item["answers"])
    page = api.client.get(f"/dashboard/runs/{run['id']}/items/i2")
    assert page.status_code == 200
    answers = page.text.split('id="item-answers"')[1].split("</table>")[0]
    assert answers.count("<tr><td>subject-") == 2 and "judge · fine_judge_safety" in answers
    matrix = api.client.get(f"/api/v1/runs/{run['id']}/comparison", headers=api.a.headers).json()
    assert matrix["metrics"] == ["judge_subject_mean"] and matrix["has_subjects"]
    assert {(r["model"], r["subject"]) for r in matrix["rows"]} == {("judge", "subject-a"), ("judge", "subject-b")}
    compare = api.client.get(f"/dashboard/runs/{run['id']}/compare").text
    assert "<th>subject</th>" in compare and 'data-subject="subject-b"' in compare


def test_per_model_live_figures_name_429s_failures_and_the_limiters_pace(api: ApiEnv) -> None:
    items = ITEMS_CSV.replace("Tell me a joke about cats", "FAIL500 please").replace(
        "Explain how vaccines work", "RATE429 now")
    assert api.upload(api.a, "limited", items=items).status_code == 201
    doc = campaign_doc("limited", "limited")
    doc["models"] = [{"name": "scripted", "provider": "local", "rpm": 6000}]
    run = api.wait(api.start(api.a, api.campaign(api.a, doc).json()["id"]).json()["id"])
    m = run["per_model"][0]
    assert (m["done"], m["failed"], m["rpm_limit"], m["paced_rpm"]) == (4, 2, 6000, pytest.approx(5910))
    assert {f["kind"]: f["count"] for f in m["failures_by_kind"]} == {"HTTP 500": 1, "HTTP 429": 1}
    assert m["provider_429s"] == 1
    assert m["limiter_rpm"] is not None and 0 < m["limiter_rpm"] <= 5910 and 0 < m["limiter_factor"] <= 1
    login(api, api.a.key)
    row = api.client.get(f"/dashboard/runs/{run['id']}").text.split('data-model="scripted">')[1].split("</tr>")[0]
    assert '<td class="num pm-429">1</td>' in row and "HTTP 429 (1)" in row and 'max="6000"' in row


def test_item_ids_with_slashes_spaces_and_accents_link_to_their_page(api: ApiEnv) -> None:
    odd = "grp/1 é?#"
    quoted = '"grp/1 é?#"'
    assert api.upload(api.a, "odd", items=ITEMS_CSV.replace("i1,", f"{quoted},"),
                      ratings=RATINGS_CSV.replace("i1,", f"{quoted},")).status_code == 201
    run = api.finished_run(api.a, "odd", "odd")
    login(api, api.a.key)
    page = api.client.get(f"/dashboard/runs/{run['id']}/items?sort=item_id&order=asc").text
    link = html.unescape(re.search(r'<a href="(/dashboard/runs/\d+/items/grp[^"?]*)\?', page).group(1))  # type: ignore[union-attr]
    assert link.endswith("/items/grp%2F1%20%C3%A9%3F%23")
    shown = api.client.get(link)
    assert shown.status_code == 200 and 'id="item-id">grp/1 é?#<' in shown.text
    assert api.client.get(f"/api/v1/runs/{run['id']}/items/grp%2F1%20%C3%A9%3F%23",
                          headers=api.a.headers).json()["external_id"] == odd


def test_pages_load_only_the_apps_own_files_under_a_csp_without_inline_code(api: ApiEnv) -> None:
    login(api, api.a.key)
    page = api.client.get("/dashboard/datasets/new")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "unsafe-inline" not in csp
    assert "<style" not in page.text and " style=" not in page.text
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)">', page.text) == ["/dashboard/static/dashboard.css"]
    css = api.client.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert api.client.get("/dashboard/static/keys.js").headers["content-type"].startswith("text/javascript")
    assert api.client.get("/dashboard/static/base.html").status_code == 404
    assert api.client.get("/dashboard/static/..%2Fbase.html").status_code == 404


def test_a_category_role_is_the_first_filter_of_the_item_explorer(api: ApiEnv) -> None:
    mapping = {"layout": "long", "item_col": "item_id", "annotator_col": "annotator_id", "rating_cols": ["unsafe"],
               "text_col": "text", "attribute_cols": ["gender"], "meta_roles": {"category": "topic"}}
    assert api.upload(api.a, "categorised", mapping=mapping).status_code == 201
    run = api.finished_run(api.a, "categorised", "categorised")
    doc = api.client.get(f"/api/v1/runs/{run['id']}/items?meta.category=food", headers=api.a.headers).json()
    assert doc["meta_columns"][0] == "category" and [r["item_id"] for r in doc["items"]] == ["i1"]
    login(api, api.a.key)
    page = api.client.get(f"/dashboard/runs/{run['id']}/items?meta.category=food").text
    assert re.findall(r'data-item="([^"]+)"', page) == ["i1"] and 'name="meta.category"' in page
