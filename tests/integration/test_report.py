"""The run report from a real run in the database: a synthetic dataset with demographics, categories, subject
models and expert labels, rated through the OpenAI wire protocol by a local fake server (some answers refused
or unparseable, some requests failing with HTTP 400), post-processed, then reported. The sections, plots and
readings must match the stored metrics and the run's counts; names that reach the page are escaped."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from accord.report.build import build_report_data, metrics_table, render_html
from accord.report.format import count, num, share
from accord.report.metrics import MetricIndex
from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import Metric, RatingRequest
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from accord.scheduler.postprocess import postprocess_run
from sqlalchemy import select
from sqlmodel import Session

from tests.fakes.openai_server import OpenAIFakeServer
from tests.fakes.synthetic_dataset import make_sparse_dataset

MODEL = "gpt<script>alert(1)</script>"
N_ITEMS = 24
REFUSALS = ["I can't help with rating that."] * 4
GARBAGE = ["The weather is nice today."] * 3
N_FAILED = 3


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from accord.models.db import dispose_engines
    from accord.models.migrate import init_db

    tmp = tmp_path_factory.mktemp("report")
    engine = init_db(f"sqlite:///{tmp / 'accord.db'}")
    kwargs = make_sparse_dataset(tmp / "data", n_items=N_ITEMS, n_annotators=40, seed=5)
    import_dataset(engine, ImportSpec(**{**kwargs, "name": "syn"}))
    server = OpenAIFakeServer().start()
    try:
        server.configure(fail_next=N_FAILED, fail_status=400, fail_message="Invalid 'messages': too long",
                         next_texts=REFUSALS + GARBAGE)
        plan = create_run(engine, parse_campaign({
            "name": "report-test", "dataset": "syn", "dimension": "Q_overall", "samples": 2, "repair_attempts": 0,
            "decoding": {"temperature": 0.7, "seed": 1},
            "models": [{"name": MODEL, "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                        "max_concurrency": 8, "price": {"input": 0.15, "output": 0.6}}],
            "templates": ["likert_unsafe", "binary_unsafe", "multiple_choice_unsafe",
                          {"name": "multiple_choice_unsafe", "params": {"option_order": "BA"}},
                          "persona_likert_unsafe"],
            "personas": {"from_attributes": ["gender"]}}))
        progress = run_embedded(engine, plan.run_id, backoff_initial=0.01)
    finally:
        server.stop()
    postprocess_run(engine, plan.run_id)
    started = time.perf_counter()
    data = build_report_data(engine, plan.run_id)
    html = render_html(data)
    seconds = time.perf_counter() - started
    with Session(engine) as session:
        metrics = session.execute(select(Metric).where(Metric.run_id == plan.run_id)).scalars().all()
        requests = session.execute(select(RatingRequest).where(RatingRequest.run_id == plan.run_id)).scalars().all()
        stored = [(m.name, m.slice, m.model, m.template, m.value, m.n) for m in metrics]
        statuses = [r.status for r in requests]
    yield {"engine": engine, "run_id": plan.run_id, "progress": progress, "data": data, "html": html,
           "metrics": stored, "statuses": statuses, "seconds": seconds, "dir": tmp}
    dispose_engines()


def table(html: str, table_id: str) -> str:
    found = re.search(rf'<table id="table-{table_id}">.*?</table>', html, re.DOTALL)
    assert found, f"no table {table_id}"
    return found.group(0)


def test_summary_counts_failures_and_cost(reported: dict[str, Any]) -> None:
    run, progress = reported["data"].run, reported["progress"]
    assert run["total"] == N_ITEMS * (4 * 2 + 3 * 2) == len(reported["statuses"])
    assert (run["done"], run["failed"], run["cancelled"]) == (progress.done, progress.failed, 0)
    assert run["failed"] == N_FAILED and run["done"] == run["total"] - N_FAILED
    assert run["failures_by_kind"] == [{"kind": "HTTP 400", "count": N_FAILED,
                                        "example": run["failures_by_kind"][0]["example"]}]
    assert "too long" in run["failures_by_kind"][0]["example"]
    assert run["outcomes"]["refused"] == len(REFUSALS) and run["outcomes"]["unparseable"] == len(GARBAGE)
    assert run["cost_usd"] == pytest.approx(progress.cost_usd, abs=1e-6) and run["cost_usd"] > 0
    assert run["n_items"] == N_ITEMS and run["samples"] == 2
    assert run["personas"] == sorted(run["personas"]) and all(p.startswith("gender=") for p in run["personas"])
    readings = " ".join(reported["data"].readings["summary"])
    assert f"This run sent {count(run['total'])} rating requests about {N_ITEMS} items" in readings
    assert f"{N_FAILED} failed" in readings and f"HTTP 400 ({N_FAILED})" in readings
    assert f"{len(REFUSALS)} were refusals" in readings and f"{len(GARBAGE)} could not be parsed" in readings
    assert f"It cost ${run['cost_usd']:.4f}" in readings
    outcomes = table(reported["html"], "outcomes")
    assert outcomes.count("<tr>") == 1 + 5                   # header + one row per model · template


def test_every_section_and_plot_is_there(reported: dict[str, Any]) -> None:
    data, html = reported["data"], reported["html"]
    ids = [s.id for s in data.sections]
    assert ids == ["summary", "alignment", "baseline", "agreement", "alt_test", "groups", "group_means", "association", "persona",
                   "consistency", "failures", "subjects", "categories", "all-metrics"]
    # groups exist (gender, race and their intersection), so each gets a forest plot
    assert {"outcomes", "scatter", "baseline", "groups-gender", "groups-race", "groups-gender-race", "gai",
            "categories"} <= set(data.plots)
    for name in data.plots:
        assert f'id="plot-{name}"' in html
    assert html.count("data:image/png;base64,") == len(data.plots)
    assert "http://" not in html.replace("http://www.w3.org", "") and "<link" not in html   # self-contained


def test_alignment_table_and_readings_match_the_stored_metrics(reported: dict[str, Any]) -> None:
    data, html = reported["data"], reported["html"]
    idx = MetricIndex.from_frame(data.metrics)
    raters = idx.raters()
    assert {t for _, t in raters} == {"likert_unsafe", "binary_unsafe", "multiple_choice_unsafe",
                                      "multiple_choice_unsafe[BA]"}
    alignment = table(html, "alignment")
    for model, template in raters:
        r = idx.one("pearson_r_vs_mean", "all", model, template)
        assert r is not None and r.value is not None and r.n is not None
        assert r.n <= N_ITEMS
        assert f'<td class="num">{num(r.value, 3)}</td>' in alignment
        sentence = next(s for s in data.readings["alignment"] if s.startswith(f"{model} · {template} agrees"))
        assert f"r = {num(r.value)} (95% CI {num(r.ci_low)} to {num(r.ci_high)}, {r.n} items)" in sentence
        assert "With only" in sentence                              # fewer than 30 items: says so
    # n prints as an integer everywhere
    assert not re.search(r'<td class="num">\d+\.000</td>', table(html, "alignment"))
    assert f'<td class="num">{N_ITEMS}</td>' in alignment or f'<td class="num">{N_ITEMS - 1}</td>' in alignment


def test_group_section_reads_the_permutation_tests_and_detectable_differences(reported: dict[str, Any]) -> None:
    data, html = reported["data"], reported["html"]
    idx = MetricIndex.from_frame(data.metrics)
    group_rows = idx.all("group_pearson_r")
    assert group_rows
    significant = [r for r in group_rows if r.p_adjusted is not None and r.p_adjusted < 0.05]
    marks = table(html, "group-r").count('<td class="sig" title="BH-adjusted p &lt; 0.05">*</td>')
    assert marks == len(significant)
    gender = next(p for p in next(s for s in data.sections if s.id == "groups").parts if p.title == "gender")
    reading = gender.readings[0]
    detectable = [r.value for r in idx.all("min_detectable_r_difference") if r.slice.startswith("gender=")
                  and "&" not in r.slice and r.value is not None]
    assert detectable and "to be detected with 80% power" in reading
    assert f"range {num(min(detectable))}–{num(max(detectable))}" in reading
    if not significant:
        assert "No group's r differs" in reading
    assert gender.plots[0].name == "groups-gender"


def test_consistency_failures_and_subjects(reported: dict[str, Any]) -> None:
    data = reported["data"]
    idx = MetricIndex.from_frame(data.metrics)
    position = idx.all("position_bias_flip_rate")
    assert len(position) == 1 and position[0].value is not None
    assert any(f"changes {MODEL}'s answer on {share(position[0].value)}" in r for r in data.readings["consistency"])
    assert any("(CS)" in r for r in data.readings["consistency"])
    failures = " ".join(data.readings["failures"])
    refusal_rows = [r for r in idx.all("refusal_rate") if r.value]
    assert sum(r.details["count"] for r in refusal_rows) == len(REFUSALS)
    assert "refusals" in failures
    flagged = [r for r in idx.all("refusal_bias_chi2") + idx.all("failure_bias_chi2") if r.details.get("flag")]
    assert failures.count("FLAG:") == len(flagged)
    if not flagged:
        assert "no significant clustering" in failures
    # two subject models in the synthetic dataset: the ranking correlation needs three, and the report says so
    assert any("With only 2 subject models" in r for r in data.readings["subjects"])
    assert any("gender=" not in r and "predicted differences correlate" in r for r in data.readings["persona"])


def test_names_are_escaped(reported: dict[str, Any]) -> None:
    html = reported["html"]
    assert "<script>" not in html
    assert "gpt&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_json_has_the_summary_every_metric_and_the_readings(reported: dict[str, Any]) -> None:
    data = reported["data"]
    doc = json.loads(json.dumps(data.to_json()))
    assert doc["run"]["id"] == reported["run_id"] and doc["run"]["failed"] == N_FAILED
    got = sorted((m["name"], m["slice"], m["model"], m["template"]) for m in doc["metrics"])
    assert got == sorted(m[:4] for m in reported["metrics"])
    by_key = {(m["name"], m["slice"], m["model"], m["template"]): m for m in doc["metrics"]}
    for name, slice_, model, template, value, n in reported["metrics"]:
        m = by_key[(name, slice_, model, template)]
        assert m["n"] == n and (m["value"] == pytest.approx(value) if value is not None else m["value"] is None)
    assert doc["readings"] == data.readings and doc["readings"]["alignment"]


def test_terminal_table_and_dashboard_sections(reported: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(metrics_table(reported["data"]))
    text = console.export_text()
    assert "pearson_r_vs_mean" in text and "annotator_loo_r_median" in text
    assert not re.search(r"\b\d+\.000\b\s*│\s*$", text, re.MULTILINE)     # the n column holds integers

    from accord.api.http.reports import report_sections

    sections = report_sections(reported["data"])
    assert sections["alignment"] and all(r["n"].isdigit() for r in sections["alignment"])


def test_report_is_quick(reported: dict[str, Any]) -> None:
    assert reported["seconds"] < 20, reported["seconds"]


def test_render_to_file(reported: dict[str, Any]) -> None:
    out: Path = reported["dir"] / "report.html"
    out.write_text(reported["html"], encoding="utf-8")
    assert out.stat().st_size > 100_000
