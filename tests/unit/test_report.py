"""The run report without a database: sections, plots, readings and JSON from synthetic frames run through
the analysis suite, and hand-made metric rows for the readings that depend on specific numbers (significant
groups, failure-bias flags, tiny samples). Escaping of names that reach the page and the plots."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from accord.analysis.suite import SuiteOptions, compute_all
from accord.analysis.synthetic import make_synthetic
from accord.report.build import assemble_report, failure_kind, metric_rows, render_html, summarize_run
from accord.report.format import count, num, pvalue, share
from accord.analysis.results import MetricRecord
from accord.report.metrics import MetricIndex, metrics_frame
from accord.report.sections import correlation_sentence
from accord.models.run_frames import LLM_COLUMNS, RunFrames

NASTY_MODEL = "<script>alert('m')</script> $x$"
NASTY_CATEGORY = "<b>bold</b>"


def run_frames_from(human: pd.DataFrame, annotators: pd.DataFrame, llm: pd.DataFrame,
                    items: pd.DataFrame) -> RunFrames:
    """Analysis-contract frames as a run's frames: every request answered, none from the cache."""
    llm = llm.copy()
    defaults: dict[str, Any] = {"request_id": np.arange(len(llm)), "status": "done", "raw_text": "",
                                "cache_hit": False, "input_tokens": 100, "output_tokens": 2, "latency_ms": 50.0,
                                "cost_usd": 0.0, "model_snapshot": "", "attempts": 1, "last_error": None,
                                "response_format": "text"}
    for column in LLM_COLUMNS:
        if column not in llm.columns:
            llm[column] = defaults.get(column)
    return RunFrames(run_id=7, dimension=None, human=human, annotators=annotators, llm=llm[LLM_COLUMNS], items=items)


def run_fields(frames: RunFrames, **over: Any) -> dict[str, Any]:
    n = len(frames.llm)
    fields = {"id": 7, "campaign": "unit", "dataset": "synthetic", "status": "completed", "total": n, "done": n,
              "cached": 0, "failed": 0, "cancelled": 0, "cost_usd": 0.25, "input_tokens": 100 * n,
              "output_tokens": 2 * n, "cached_input_tokens": 0, "cache_write_tokens": 0, "repaired": 0,
              "started_at": None, "finished_at": None, "duration_s": None}
    fields.update(over)
    return fields


def records_frame(records: list) -> pd.DataFrame:  # type: ignore[type-arg]
    return metrics_frame(r.__dict__ for r in records)


@pytest.fixture(scope="module")
def synthetic() -> tuple[RunFrames, pd.DataFrame]:
    human, annotators, llm, items = make_synthetic(
        n_items=48, n_annotators=24, models=[NASTY_MODEL, "plain"], templates=["direct", "mc_ab", "mc_ba"],
        n_samples=2, group_effect=0.5, personas=True, categories=["violence", NASTY_CATEGORY],
        subject_models=["s1", "s2", "s3"], seed=3)
    frames = run_frames_from(human, annotators, llm, items)
    records = compute_all(human, annotators, llm, items, SuiteOptions(n_resamples=200, n_permutations=200))
    return frames, records_frame(records)


@pytest.fixture(scope="module")
def report(synthetic):  # type: ignore[no-untyped-def]
    frames, metrics = synthetic
    data = assemble_report(summarize_run(run_fields(frames), frames), metrics, frames)
    return data, render_html(data)


def png_size(b64: str) -> tuple[int, int]:
    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


# ------------------------------------------------------------------------------------------------ formatting


def test_numbers_print_as_a_reader_expects() -> None:
    assert num(12) == "12" and num(np.int64(12)) == "12"
    assert num(0.3412) == "0.34" and num(-0.3812) == "\u22120.38" and num(-0.0001) == "0.00"
    assert num(None) == num(float("nan")) == "\u2013"
    assert count(43050) == "43,050" and count(12.0) == "12"
    assert pvalue(0.0004) == "< 0.001" and pvalue(0.004) == "0.004" and pvalue(0.34) == "0.34"
    assert share(0.125) == "12%"


def test_metric_rows_print_n_as_an_integer() -> None:
    frame = metrics_frame([{"name": "pearson_r_vs_mean", "slice": "all", "model": "m", "template": "t", "value": 0.5,
                            "ci_low": 0.1, "ci_high": 0.8, "pvalue": 0.01, "n": 12, "details": {}},
                           {"name": "jsd_mean", "slice": "all", "model": "m", "template": "t", "value": None,
                            "ci_low": None, "ci_high": None, "pvalue": None, "n": None,
                            "details": {"reason": "no domain"}}])
    assert str(frame["n"].dtype) == "Int64"
    rows = metric_rows(frame, None, human_only=False)
    assert rows[0]["n"] == "12" and rows[0]["value"] == "0.500" and rows[0]["ci"] == "[0.100, 0.800]"
    assert rows[1]["n"] == "\u2013" and rows[1]["value"] == "\u2013"


def test_failure_kinds() -> None:
    assert failure_kind("HTTP 429: rate limited") == "HTTP 429"
    assert failure_kind("openai: HTTP 400 invalid_request_error: too long") == "HTTP 400"
    assert failure_kind("anthropic: APIConnectionError: refused") == "APIConnectionError"
    assert failure_kind("TimeoutError: read timed out") == "TimeoutError"
    assert failure_kind("the request timed out after 30 s") == "timeout"
    assert failure_kind(None) == "unknown"


# ------------------------------------------------------------------------------------------------ readings


def row(name: str, value: float | None, slice_: str = "all", model: str = "m", template: str = "t",
        ci: tuple[float | None, float | None] = (None, None), p: float | None = None, n: int | None = None,
        **details: Any) -> MetricRecord:
    return MetricRecord(name, value, slice_, model, template, ci[0], ci[1], p, n, details)


def test_correlation_sentence_is_honest_about_intervals_and_sample_size() -> None:
    text = correlation_sentence("smollm2 · likert_unsafe", row("pearson_r_vs_mean", 0.3412, ci=(-0.38, 0.75), n=12))
    assert text.startswith("smollm2 · likert_unsafe agrees with the mean human rating at r = 0.34 "
                           "(95% CI \u22120.38 to 0.75, 12 items)")
    assert "includes zero, so this run cannot distinguish it from no agreement" in text
    assert "With only 12 items" in text
    above = correlation_sentence("x", row("pearson_r_vs_mean", 0.6, ci=(0.45, 0.72), n=350))
    assert "whole interval is above zero" in above and "includes zero" not in above and "only" not in above
    below = correlation_sentence("x", row("pearson_r_vs_mean", -0.5, ci=(-0.7, -0.2), n=100))
    assert "below zero" in below
    undefined = correlation_sentence("x", row("pearson_r_vs_mean", None, reason="constant LLM scores"))
    assert "undefined (constant LLM scores)" in undefined


def hand_made_report(rows: list[MetricRecord], frames: RunFrames) -> tuple[Any, str]:
    frame = metrics_frame(r.to_json() for r in rows)
    data = assemble_report(summarize_run(run_fields(frames), frames), frame, frames)
    return data, render_html(data)


@pytest.fixture(scope="module")
def small_frames() -> RunFrames:
    human, annotators, llm, items = make_synthetic(n_items=12, n_annotators=8, models=["m"], templates=["t"],
                                                   n_samples=1, seed=1)
    return run_frames_from(human, annotators, llm, items)


def test_significant_groups_are_marked_and_named(small_frames: RunFrames) -> None:
    common = {"attribute": "gender", "pvalue_kind": "perm"}
    rows = [
        row("pearson_r_vs_mean", 0.4, ci=(0.1, 0.6), n=40),
        row("group_pearson_r", 0.7, "gender=Woman", ci=(0.5, 0.85), p=0.002, n=40, group_size=12, r_rest=0.2,
            p_adjusted_bh=0.004, **common),
        row("group_pearson_r", 0.2, "gender=Man", ci=(-0.1, 0.5), p=0.4, n=40, group_size=11, r_rest=0.6,
            p_adjusted_bh=0.4, **common),
        row("group_r_gap", 0.5, "gender", p=0.003, n=23, highest="gender=Woman", lowest="gender=Man",
            group_r={"gender=Woman": 0.7, "gender=Man": 0.2}, p_adjusted_bh=0.003),
        row("min_detectable_r_difference", 1.12, "gender=Man vs gender=Woman", n=8, n1=8, n2=9,
            observed_difference=-0.5, observed_exceeds=False),
    ]
    data, html = hand_made_report(rows, small_frames)
    reading = " ".join(data.readings["groups"])
    assert "for m · t, Woman (r = 0.70 against 0.20 for the other annotators, adjusted p = 0.004)" in reading
    assert "the spread between groups (gap 0.50, Woman highest, Man lowest)" in reading
    assert "has to reach about 1.12" in reading and "far too small to compare" in reading
    assert "Significant differences between groups" in reading
    assert "groups-gender" in data.plots
    table = re.search(r'<table id="table-group-gaps">.*?</table>', html, re.DOTALL).group(0)  # type: ignore[union-attr]
    assert "groups differ" in table and '<td class="sig"' in table and "1.120" in table


def test_no_evidence_is_not_called_equality(small_frames: RunFrames) -> None:
    rows = [
        row("pearson_r_vs_mean", 0.4, ci=(0.1, 0.6), n=40),
        row("group_pearson_r", 0.42, "race=A", ci=(0.1, 0.7), p=0.7, n=40, group_size=5, attribute="race",
            p_adjusted_bh=0.8),
        row("group_pearson_r", 0.35, "race=B", ci=(0.0, 0.6), p=0.6, n=40, group_size=6, attribute="race",
            p_adjusted_bh=0.8),
        row("group_r_gap", 0.07, "race", p=0.8, n=11, highest="race=A", lowest="race=B", p_adjusted_bh=0.8),
        row("min_detectable_r_difference", 0.55, "race=A vs race=B", n=40, n1=40, n2=40, observed_difference=0.07,
            observed_exceeds=False),
    ]
    data, html = hand_made_report(rows, small_frames)
    reading = " ".join(data.readings["groups"])
    assert "No group's r differs" in reading and "smallest adjusted p = 0.80" in reading
    assert "too small to tell" in reading and "absence of evidence here is not evidence of equal alignment" in reading
    assert "too small to tell" in re.search(r'<table id="table-group-gaps">.*?</table>', html, re.DOTALL).group(0)  # type: ignore[union-attr]


def test_failure_bias_flags_are_shown_with_the_rates(small_frames: RunFrames) -> None:
    levels = {"violence": {"rate": 0.3, "n": 40, "count": 12}, "benign": {"rate": 0.025, "n": 40, "count": 1}}
    rows = [
        row("failure_rate", 0.0, n=80, count=0), row("refusal_rate", 0.1625, n=80, count=13),
        row("refusal_bias_chi2", 9.8, "harm_type", p=0.0017, n=80, flag=True, dof=1, min_expected=6.5,
            levels=levels),
        row("refusal_bias_chi2", 0.4, "category", p=0.52, n=80, flag=False, dof=1, min_expected=6.5,
            levels={"a": {"rate": 0.15, "n": 40, "count": 6}, "b": {"rate": 0.175, "n": 40, "count": 7}}),
    ]
    data, html = hand_made_report(rows, small_frames)
    flags = [r for r in data.readings["failures"] if r.startswith("FLAG")]
    assert len(flags) == 1
    assert flags[0].startswith("FLAG: m · t's refusals cluster by harm_type (\u03c7\u00b2 = 9.80, p = 0.002): "
                               "30% on violence items against 2% on benign items")
    assert "m · t 16.2% refusals (13 of 80)" in data.readings["failures"][0]
    assert '<p class="flag">FLAG: m · t' in html
    table = re.search(r'<table id="table-failure-bias">.*?</table>', html, re.DOTALL).group(0)  # type: ignore[union-attr]
    assert table.count(">FLAG<") == 1 and "violence 30% (12/40)" in table


# ------------------------------------------------------------------------------------------------ full report


SECTIONS = ["summary", "alignment", "baseline", "agreement", "alt_test", "groups", "group_means", "association", "persona", "consistency",
            "failures", "subjects", "categories", "all-metrics"]


def test_every_section_is_built_from_the_suite(report) -> None:  # type: ignore[no-untyped-def]
    data, html = report
    assert [s.id for s in data.sections] == SECTIONS
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    assert all(data.readings[s] for s in SECTIONS if s != "all-metrics")
    expected = {"outcomes", "scatter", "baseline", "groups-gender", "groups-race", "groups-gender-race", "gai",
                "categories"}
    assert set(data.plots) == expected
    for name, b64 in data.plots.items():
        width, height = png_size(b64)
        assert 500 <= width <= 2000 and 200 <= height <= 4000, (name, width, height)
        assert f'id="plot-{name}"' in html


def test_alignment_readings_quote_the_stored_numbers(report, synthetic) -> None:  # type: ignore[no-untyped-def]
    data, _ = report
    idx = MetricIndex.from_frame(synthetic[1])
    readings = data.readings["alignment"]
    for model, template in idx.raters():
        r = idx.one("pearson_r_vs_mean", "all", model, template)
        pct = idx.one("llm_percentile_among_annotators", "all", model, template)
        assert r is not None and pct is not None
        sentence = next(s for s in readings if s.startswith(f"{model} · {template} agrees"))
        assert f"r = {num(r.value)} (95% CI {num(r.ci_low)} to {num(r.ci_high)}, {r.n} items)" in sentence
        assert f"better than {pct.value:.0f}% of the crowd's own members" in sentence
        assert ("includes zero" in sentence) == (r.ci_low <= 0 <= r.ci_high)  # type: ignore[operator]


def test_baseline_histogram_marks_every_rater(report, synthetic) -> None:  # type: ignore[no-untyped-def]
    data, _ = report
    idx = MetricIndex.from_frame(synthetic[1])
    base = idx.one("annotator_loo_r_median")
    assert base is not None and base.value is not None
    assert any(f"median annotator agrees with the mean of the others at r = {num(base.value)}" in r
               for r in data.readings["baseline"])
    assert sum(base.details["histogram"]["counts"]) == base.details["n_defined"]
    assert "baseline" in data.plots


def test_checks_sections_read_their_metrics(report, synthetic) -> None:  # type: ignore[no-untyped-def]
    data, html = report
    idx = MetricIndex.from_frame(synthetic[1])
    position = idx.one("position_bias_flip_rate", "all", "plain", "mc_ab|mc_ba")
    assert position is not None and position.value is not None
    assert any(r.startswith(f"Swapping the answer options (ab \u2192 ba) changes plain's answer on "
                            f"{share(position.value)}") for r in data.readings["consistency"])
    tau = idx.one("subject_ranking_kendall_tau", "all", "plain", "direct")
    assert tau is not None and tau.value is not None
    assert any(f"Kendall's \u03c4 between the rankings = {num(tau.value)}" in r for r in data.readings["subjects"])
    assert any("predicted differences correlate with the real ones" in r for r in data.readings["persona"])
    assert any(r.startswith("plain · direct: r ranges from") for r in data.readings["categories"])
    assert 'id="table-all-metrics"' in html


def test_names_are_escaped_in_the_page_and_plain_in_plots(report) -> None:  # type: ignore[no-untyped-def]
    data, html = report
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(&#39;m&#39;)&lt;/script&gt; $x$" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert any(NASTY_MODEL in r for r in data.readings["alignment"])   # readings stay plain text (JSON)


def test_json_round_trips_with_summary_metrics_and_readings(report, synthetic) -> None:  # type: ignore[no-untyped-def]
    data, _ = report
    doc = json.loads(json.dumps(data.to_json()))
    assert doc["run"]["total"] == len(synthetic[0].llm) and doc["run"]["cost_usd"] == 0.25
    assert len(doc["metrics"]) == len(synthetic[1])
    assert all(m["n"] is None or isinstance(m["n"], int) for m in doc["metrics"])
    assert doc["readings"] == data.readings
    assert [s["id"] for s in doc["sections"]] == SECTIONS
    groups = next(s for s in doc["sections"] if s["id"] == "groups")
    assert [p["plots"] for p in groups["parts"]] == [["groups-gender"], ["groups-race"], ["groups-gender-race"]]


def test_a_broken_section_does_not_take_the_report_down(small_frames: RunFrames, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import accord.report.build as report_module

    def broken(ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    broken.__name__ = "consistency_section"
    builders = [b if b.__name__ != "consistency_section" else broken for b in report_module.SECTION_BUILDERS]
    monkeypatch.setattr(report_module, "SECTION_BUILDERS", builders)
    data, html = hand_made_report([row("pearson_r_vs_mean", 0.4, ci=(0.1, 0.6), n=40)], small_frames)
    assert data.readings["consistency"] == ["This section could not be built: RuntimeError: boom"]
    assert "This section could not be built: RuntimeError: boom" in html and '<section id="alignment">' in html


def test_a_run_without_metrics_still_reports_its_summary(small_frames: RunFrames) -> None:
    data, html = hand_made_report([], small_frames)
    assert [s.id for s in data.sections] == ["summary", "alignment", "baseline", "agreement", "all-metrics"]
    assert data.readings["baseline"] == ["No annotator baseline was computed for this run."]
    assert "no metrics stored: post-process the run first" in html
    assert "outcomes" in data.plots and "scatter" not in data.plots
    assert json.loads(json.dumps(data.to_json()))["metrics"] == []
