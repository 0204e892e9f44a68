"""The dashboard end to end in a real headless browser (Debian's Chromium driven by Playwright; install it
with tests/e2e/install_browser.sh): log in with a key, start a run against the local SmolLM2 model from
the campaign form, watch it complete live, open the report, take screenshots and check what they show.

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
    from accord.cli.client import AccordClient
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
        spec = yaml.safe_load((DEMO / "import.yaml").read_text())
        mapping = {k: v for k, v in spec.items() if not k.endswith("_file")}
        mapping["name"] = "dices-browser"
        with AccordClient(url, key.key) as client:
            client.upload_dataset(mapping, ratings_file=DEMO / spec["ratings_file"],
                                  items_file=DEMO / spec["items_file"])
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
        page.goto(f"{url}/dashboard")
        expect(page).to_have_url(f"{url}/login")
        page.fill("#api-key", "acc_not-my-key")
        page.click("#login-submit")
        expect(page.locator("#login-error")).to_contain_text("not valid")
        page.fill("#api-key", key)
        page.click("#login-submit")
        expect(page).to_have_url(f"{url}/dashboard")
        expect(page.locator("#project-name")).to_have_text("browser-lab")

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
        browser.close()
    for name in ("run-page.png", "report.png"):
        data = (shots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get("ACCORD_E2E_SCREENSHOTS") is None:
        keep = Path(os.environ.get("TMPDIR", "/tmp")) / "accord-e2e-screenshots"
        keep.mkdir(exist_ok=True)
        for name in ("run-page.png", "report.png"):
            shutil.copy(shots / name, keep / name)
