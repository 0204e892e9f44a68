"""The dashboard end to end in a real headless browser (Debian's Chromium driven by Playwright; install it
with tests/e2e/install_browser.sh): log in with a key, upload a dataset through the form, start a run against
the local SmolLM2 model from the campaign form, watch it complete live, open the report, the item explorer,
an item, the comparison of two runs, check the numbers on each page against the JSON API's, take screenshots
and check what they show.

Everything runs on loopback: a uvicorn server in this process executes the run (embedded mode)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEMO = Path(__file__).resolve().parents[2] / "cli" / "datasets" / "dices_demo"

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (run tests/e2e/install_browser.sh)")
    pytest.importorskip("playwright")
    from accord.api.http.app import create_app
    from accord.api.http.auth import create_key, create_project
    from accord.api.http.config import ApiSettings
    from accord.api.http.server import serve_in_thread
    from accord.models.migrate import init_db

    engine = init_db(f"sqlite:///{tmp_path / 'accord.db'}")
    app = create_app(engine, settings=ApiSettings(json_logs=False, sse_interval_s=0.5, cookie_secure=False,  # plain http
                                                  templates_dir=tmp_path / "templates"))
    project = create_project(engine, "browser-lab")
    key = create_key(engine, project.id)  # type: ignore[arg-type]
    with serve_in_thread(app) as url:
        yield {"url": url, "key": key.key, "engine": engine}


def test_log_in_start_a_local_run_watch_it_and_read_the_report(server: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, key = server["url"], server["key"]
    campaign = {
        "name": "browser-local-run", "dataset": "dices-browser", "dimension": "Q_overall",
        "decoding": {"temperature": 0.0, "seed": 1234}, "items": {"limit": 3, "seed": 7},
        "models": [{"name": "smollm2-135m", "provider": "local", "max_concurrency": 1}],
        "templates": ["binary_unsafe", "likert_unsafe"],
    }
    shots = Path(os.environ.get("ACCORD_E2E_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)          # a loaded 2-core machine: navigation and clicks may be slow
        expect.set_options(timeout=30_000)
        page.goto(f"{url}/dashboard")
        expect(page).to_have_url(f"{url}/login")
        page.fill("#api-key", "acc_not-my-key")
        page.click("#login-submit")
        expect(page.locator("#login-error")).to_contain_text("not valid")
        page.fill("#api-key", key)
        page.click("#login-submit")
        expect(page).to_have_url(f"{url}/dashboard")
        expect(page.locator("#project-name")).to_have_text("browser-lab")

        upload_dataset(page, url, key, shots)
        page.goto(f"{url}/dashboard")
        page.fill("#campaign-text", yaml.safe_dump(campaign, sort_keys=False))
        page.click("#campaign-submit")
        page.wait_for_url(f"{url}/dashboard/runs/*")
        run_id = int(page.url.rsplit("/", 1)[1])
        expect(page.locator("#run-total")).to_have_text("6")
        # Live progress: the page updates itself from the event stream, then reloads with the report.
        expect(page.locator("#run-status")).to_have_text("completed", timeout=240_000)
        expect(page.locator("#alignment")).to_be_visible(timeout=240_000)
        expect(page.locator("#run-done")).to_have_text("6")
        expect(page.locator("#run-failed")).to_have_text("0")
        expect(page.locator("#plot-outcomes")).to_be_visible()
        assert page.locator("#ratings tr").count() == 7          # header + the 6 rating requests
        page.screenshot(path=str(shots / "run-page.png"), full_page=True)

        page.click("#report-link")
        page.wait_for_url(f"{url}/dashboard/runs/{run_id}/report")
        expect(page.locator("h1")).to_contain_text(f"run {run_id}")
        expect(page.locator("#run-status")).to_have_text("completed")
        rater_tables = page.locator("table", has_text="smollm2-135m")
        expect(rater_tables.first).to_be_visible()
        assert "likert_unsafe" in rater_tables.first.inner_text() or rater_tables.count() > 1
        assert page.locator("img").count() >= 1                  # the report's plots
        page.screenshot(path=str(shots / "report.png"), full_page=True)

        page.goto(f"{url}/dashboard/runs/{run_id}")
        expect(page.locator("#per-model tr.model-row .pm-done")).to_have_text("6")
        explore_items(page, url, key, run_id, shots)
        second = start_again(page, url, run_id)
        compare_runs(page, url, key, run_id, second, shots)
        browser.close()
    for name in ("run-page.png", "report.png", "items.png", "item.png", "compare.png", "dataset.png"):
        data = (shots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get("ACCORD_E2E_SCREENSHOTS") is None:
        keep = Path(os.environ.get("TMPDIR", "/tmp")) / "accord-e2e-screenshots"
        keep.mkdir(exist_ok=True)
        for name in ("run-page.png", "report.png", "items.png", "item.png", "compare.png", "dataset.png"):
            shutil.copy(shots / name, keep / name)


TIMEOUT_MS = 240_000   # a loaded 2-core machine: wait for states, generously


def fmt(x: float | None) -> str:
    """A number as the dashboard shows it."""
    return "–" if x is None else f"{x:.3f}"


def api_get(url: str, key: str, path: str) -> Any:
    import httpx

    r = httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def upload_dataset(page: Any, url: str, key: str, shots: Path) -> None:
    """The upload form: a wrong column is refused with one line naming it, then the right mapping imports."""
    from playwright.sync_api import expect

    spec = yaml.safe_load((DEMO / "import.yaml").read_text())
    page.click("#nav-upload")
    page.wait_for_url(f"{url}/dashboard/datasets/new")
    fields = {"name": "dices-browser", "item_col": spec["item_col"], "annotator_col": spec["annotator_col"],
              "rating_cols": "Q_nope", "conversation_col": spec["conversation_col"],
              "response_col": spec["response_col"], "item_meta_cols": ",".join(spec["item_meta_cols"]),
              "label_map": spec["label_map"], "meaning": "low=safe,high=unsafe"}
    for name, value in fields.items():
        page.fill(f"#f-{name}", value)
    page.set_input_files("#f-ratings_file", str(DEMO / spec["ratings_file"]))
    page.set_input_files("#f-items_file", str(DEMO / spec["items_file"]))
    page.click("#upload-submit")
    expect(page.locator("#upload-error")).to_contain_text("Q_nope", timeout=TIMEOUT_MS)
    page.fill("#f-rating_cols", ",".join(spec["rating_cols"]))
    page.set_input_files("#f-ratings_file", str(DEMO / spec["ratings_file"]))
    page.set_input_files("#f-items_file", str(DEMO / spec["items_file"]))
    page.click("#upload-submit")
    page.wait_for_url(f"{url}/dashboard/datasets/*", timeout=TIMEOUT_MS)
    dataset_id = int(page.url.rsplit("/", 1)[1].split("?")[0])
    expect(page.locator("#dataset-name")).to_have_text("dices-browser")
    expect(page.locator("#n-items")).to_have_text("40")
    described = api_get(url, key, f"/api/v1/datasets/{dataset_id}/description")
    expect(page.locator("#baseline-r")).to_have_text(fmt(described["baseline"]["annotator_loo_r"]["median"]))
    expect(page.locator("#mean-rating")).to_have_text(fmt(described["mean_rating"]))
    for label, n in described["label_distribution"].items():
        row = page.locator("#label-distribution tr", has=page.locator(f"td:text-is('{label}')"))
        expect(row.locator("td.num")).to_have_text(str(n))
    assert page.locator("svg.chart").count() >= 1
    page.screenshot(path=str(shots / "dataset.png"), full_page=True)


def explore_items(page: Any, url: str, key: str, run_id: int, shots: Path) -> None:
    """The item explorer: the rows and their numbers are the API's; j / Enter opens an item; the item's page
    shows the people's ratings and both templates' answers, as the API gives them."""
    from playwright.sync_api import expect

    page.click("#nav-items")
    page.wait_for_url(f"{url}/dashboard/runs/{run_id}/items")
    table = api_get(url, key, f"/api/v1/runs/{run_id}/items")
    assert table["total"] == 3
    rows = page.locator("#items tr[data-item]")
    expect(rows).to_have_count(3)
    for i, item in enumerate(table["items"]):
        expect(rows.nth(i)).to_have_attribute("data-item", item["item_id"])
        expect(rows.nth(i).locator("td.disagreement")).to_have_text(fmt(item["disagreement"]))
    page.click("#sort-item_id")                            # sort by item id: the URL carries it
    page.wait_for_url("**/items?*sort=item_id*")
    by_id = api_get(url, key, f"/api/v1/runs/{run_id}/items?sort=item_id&order=desc")
    expect(rows.first).to_have_attribute("data-item", by_id["items"][0]["item_id"])
    page.screenshot(path=str(shots / "items.png"), full_page=True)

    page.keyboard.press("j")                               # keyboard: first row, then open it
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/dashboard/runs/{run_id}/items/*")
    item_id = by_id["items"][0]["item_id"]
    expect(page.locator("#item-id")).to_have_text(item_id)
    detail = api_get(url, key, f"/api/v1/runs/{run_id}/items/{item_id}")
    expect(page.locator("#item-human-mean")).to_have_text(fmt(detail["human"]["mean"]))
    expect(page.locator("#item-llm-mean")).to_have_text(fmt(detail["summary"]["llm_mean"]))
    ratings = page.locator("#item-ratings tr[data-request]")
    expect(ratings).to_have_count(len(detail["ratings"]))
    assert len(detail["ratings"]) == 2                     # two templates, one sample
    for r in detail["ratings"]:
        row = page.locator(f"#item-ratings tr[data-request='{r['request_id']}']")
        expect(row.locator("td.value")).to_have_text(fmt(r["value"]))
        expect(row.locator("td.label")).to_have_text(r["label"] or "")
    assert page.locator("svg.chart").count() >= 1          # the people's ratings as a histogram
    page.screenshot(path=str(shots / "item.png"), full_page=True)
    page.click("#back-link")
    page.wait_for_url("**/items?*sort=item_id*")


def start_again(page: Any, url: str, run_id: int) -> int:
    """A second run of the same campaign from the runs page (answered from the response cache)."""
    from playwright.sync_api import expect

    page.goto(f"{url}/dashboard")
    page.locator("#campaigns button", has_text="Start a run").first.click()
    page.wait_for_url(f"{url}/dashboard/runs/*")
    second = int(page.url.rsplit("/", 1)[1])
    assert second != run_id
    expect(page.locator("#run-status")).to_have_text("completed", timeout=TIMEOUT_MS)
    expect(page.locator("#alignment")).to_be_visible(timeout=TIMEOUT_MS)
    return second


def compare_runs(page: Any, url: str, key: str, first: int, second: int, shots: Path) -> None:
    """The comparison: the matrix cells are the API's; picking the other run shows what changed."""
    from playwright.sync_api import expect

    page.click("#nav-compare")
    page.wait_for_url(f"{url}/dashboard/runs/{second}/compare")
    matrix = api_get(url, key, f"/api/v1/runs/{second}/comparison")
    assert matrix["run_ids"] == [first, second]
    rows = page.locator("#matrix tr[data-run]")
    expect(rows).to_have_count(len(matrix["rows"]))
    assert matrix["rows"]
    for r in matrix["rows"]:
        row = page.locator(f"#matrix tr[data-run='{r['run_id']}'][data-model='{r['model']}']"
                           f"[data-template='{r['template']}']")
        for name, cell in r["cells"].items():
            expect(row.locator(f"td[data-metric='{name}'] .value")).to_have_text(fmt(cell["value"]))
    page.select_option("#compare-other", str(first))
    page.click("#compare-submit")
    page.wait_for_url(f"**/compare?*other={first}*")
    diff = api_get(url, key, f"/api/v1/runs/{second}/diff/{first}")
    expect(page.locator("#diff-metrics tr")).to_have_count(1 + max(len(diff["metrics"]), 1))
    expect(page.locator("#diff-items")).to_be_visible()
    page.screenshot(path=str(shots / "compare.png"), full_page=True)
