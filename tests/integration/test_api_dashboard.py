"""The dashboard over TestClient: login with a key (cookie), pages, forms with CSRF tokens, and rated texts
that are adversarial (a ``<script>`` in an item renders as text)."""

from __future__ import annotations

import re
from typing import Any

import yaml
from accord.api.http.auth import csrf_token

from tests.integration.api_helpers import ITEMS_CSV, ApiEnv, api, campaign_doc  # noqa: F401

XSS = '<script>alert("owned")</script><img src=x onerror=alert(1)>'


def login(api: ApiEnv, key: str) -> Any:
    return api.client.post("/login", data={"api_key": key}, follow_redirects=False)


def test_login_sets_a_strict_httponly_cookie_and_logout_clears_it(api: ApiEnv) -> None:
    assert api.client.get("/dashboard", follow_redirects=False).headers["location"] == "/login"
    page = api.client.get("/login")
    assert page.status_code == 200 and 'name="api_key"' in page.text
    bad = login(api, "acc_wrong")
    assert bad.status_code == 401 and "not valid" in bad.text and "accord_session" not in bad.headers.get("set-cookie", "")
    ok = login(api, api.a.key)
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
    cookie = ok.headers["set-cookie"].lower()
    assert "accord_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" in cookie and api.a.key.lower() not in cookie   # a signed session, never the key
    home = api.client.get("/dashboard")
    assert home.status_code == 200 and api.a.name in home.text
    assert "script-src 'self'" in home.headers["content-security-policy"]
    forged = api.client.post("/logout", data={"csrf": "nope"}, follow_redirects=False)
    assert forged.status_code == 403
    out = api.client.post("/logout", data={"csrf": csrf_token(api.client.cookies["accord_session"])}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    api.client.cookies.clear()
    assert api.client.get("/dashboard", follow_redirects=False).status_code == 303


def test_adversarial_item_text_renders_escaped(api: ApiEnv) -> None:
    items = ITEMS_CSV.replace("Tell me a joke about cats", XSS.replace('"', '""'))
    r = api.upload(api.a, "xss-data", items=items)
    assert r.status_code == 201, r.text
    cid = api.campaign(api.a, campaign_doc("xss-campaign", "xss-data")).json()["id"]
    rid = api.wait(api.start(api.a, cid).json()["id"])["id"]
    login(api, api.a.key)
    for url in (f"/dashboard/datasets/{r.json()['id']}", f"/dashboard/runs/{rid}", f"/dashboard/runs/{rid}/report"):
        page = api.client.get(url)
        assert page.status_code == 200, url
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, url
    dataset_page = api.client.get(f"/dashboard/datasets/{r.json()['id']}").text
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in dataset_page
    assert "How do I pick a lock? &lt;b&gt;bold&lt;/b&gt;" in dataset_page
    # the only scripts on the run page are the app's own files
    run_page = api.client.get(f"/dashboard/runs/{rid}").text
    assert re.findall(r"<script[^>]*>", run_page) == ['<script src="/dashboard/static/keys.js" defer>',
                                                       '<script src="/dashboard/static/run.js">']


def test_dataset_page_shows_annotators_per_attribute(api: ApiEnv) -> None:
    ds = api.upload(api.a, "d1").json()
    login(api, api.a.key)
    page = api.client.get(f"/dashboard/datasets/{ds['id']}").text
    table = page.split('class="attribute" data-attribute="gender"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(\w+)</td><td class=\"num\">(\d+)</td></tr>", table)
    assert sorted(rows) == [("Man", "2"), ("Woman", "2")]
    assert '<b id="n-items">6</b>' in page and '<b id="n-annotators">4</b>' in page
    assert '<b id="n-ratings">15</b>' in page


def test_create_a_campaign_from_the_form_and_control_the_run(api: ApiEnv) -> None:
    assert api.upload(api.a, "d1").status_code == 201
    login(api, api.a.key)
    csrf = csrf_token(api.client.cookies["accord_session"])
    form = {"campaign": yaml.safe_dump(campaign_doc("from-form", "d1")), "csrf": csrf}
    refused = api.client.post("/dashboard/campaigns", data={**form, "csrf": "forged"}, follow_redirects=False)
    assert refused.status_code == 403
    bad = api.client.post("/dashboard/campaigns", data={**form, "campaign": "name: x\ndataset: <b>nope</b>\n"
                                                                            "models: [{name: m, provider: local}]\n"
                                                                            "templates: [binary_unsafe]\n"},
                          follow_redirects=False)
    assert bad.status_code == 422 and 'id="campaign-error"' in bad.text
    assert "&lt;b&gt;nope&lt;/b&gt;" in bad.text and "<b>nope</b>" not in bad.text
    created = api.client.post("/dashboard/campaigns", data=form, follow_redirects=False)
    assert created.status_code == 303, created.text
    run_url = created.headers["location"]
    rid = int(run_url.rsplit("/", 1)[1])
    final = api.wait(rid)
    assert final["status"] == "completed"
    page = api.client.get(run_url).text
    assert '<span id="run-status" class="status status-completed">completed</span>' in page
    assert f'<b id="run-done">{final["total"]}</b>' in page and 'id="alignment"' in page
    assert 'id="plot-outcomes"' in page and 'data-live="false"' in page
    assert 'id="run-pause"' not in page and 'id="run-cancel"' not in page     # nothing to control any more
    exported = api.client.get(f"/dashboard/runs/{rid}/export?format=csv")
    assert exported.status_code == 200 and len(exported.text.strip().splitlines()) == final["total"] + 1
    again = api.client.post(f"/dashboard/runs/{rid}/pause", data={"csrf": csrf}, follow_redirects=False)
    assert again.status_code == 409 and "only a pending or running run can be paused" in again.text
    assert api.client.post(f"/dashboard/runs/{rid}/explode", data={"csrf": csrf}).status_code == 404
    overview = api.client.get("/dashboard").text
    assert f'href="/dashboard/runs/{rid}"' in overview and "from-form" in overview
    cid = api.client.get("/api/v1/campaigns", headers=api.a.headers).json()["items"][0]["id"]
    second = api.client.post(f"/dashboard/campaigns/{cid}/runs", data={"csrf": csrf}, follow_redirects=False)
    assert second.status_code == 303 and second.headers["location"] != run_url


def test_live_run_page_and_script(api: ApiEnv) -> None:
    assert api.upload(api.a, "d1").status_code == 201
    cid = api.campaign(api.a, campaign_doc("c", "d1")).json()["id"]
    api.gate.clear()
    rid = api.start(api.a, cid).json()["id"]
    login(api, api.a.key)
    page = api.client.get(f"/dashboard/runs/{rid}").text
    assert 'data-live="true"' in page and 'id="report-pending"' in page
    assert 'id="run-pause"' in page and 'id="run-cancel"' in page and 'id="run-resume"' not in page
    script = api.client.get("/dashboard/static/run.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text and "/events" in script.text
    api.gate.set()
    api.wait(rid)
    events = api.client.get(f"/dashboard/runs/{rid}/events").text
    assert "event: end" in events and "event: report" in events
