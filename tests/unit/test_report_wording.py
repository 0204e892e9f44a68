"""Finding 7: the dimension's meaning drives the wording, the terminal table fits 80 columns without cutting a
metric name, and a run not on a terminal prints plain progress lines now and then."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
from accord.cli.progress import PlainProgress
from accord.report.build import assemble_report, metrics_table, summarize_run
from accord.report.format import meaning
from accord.report.metrics import metrics_frame
from accord.scheduler.campaign_spec import parse_campaign
from rich.console import Console

from tests.unit.test_report import run_fields, run_frames_from

SUBJECT = {"name": "subject_ranking_kendall_tau", "slice": "all", "model": "judge", "template": "refusal",
           "value": 1.0, "ci_low": 0.5, "ci_high": 1.0, "pvalue": 0.1, "n": 3,
           "details": {"subjects": ["a", "b", "c"], "judge_mean": [0.1, 0.5, 0.9], "human_mean": [0.2, 0.4, 0.8]}}
ALIGN = [{"name": name, "slice": "all", "model": "a-very-long-model-alias-name", "template": "likert_unsafe_rationale",
          "value": 0.61, "ci_low": 0.5, "ci_high": 0.7, "pvalue": 0.01, "n": 1500, "details": {}}
         for name in ("pearson_r_vs_mean", "spearman_r_vs_mean", "kendall_tau_vs_mean",
                      "llm_percentile_among_annotators")]
ALIGN.append({"name": "annotator_loo_r_median", "slice": "all", "model": "", "template": "", "value": 0.513,
              "ci_low": None, "ci_high": None, "pvalue": None, "n": 122, "details": {}})


def _frames():  # type: ignore[no-untyped-def]
    human = pd.DataFrame({"item_id": ["1", "2"], "annotator_id": ["a", "a"], "value": [0.0, 1.0]})
    llm = pd.DataFrame({"item_id": ["1", "2"], "model": "judge", "template": "refusal", "sample_index": 0,
                        "value": [0.0, 1.0], "parse_status": "ok", "persona_key": "", "label": None,
                        "weighted_value": float("nan")})
    return run_frames_from(human, pd.DataFrame({"annotator_id": ["a"]}), llm, pd.DataFrame({"item_id": ["1", "2"]}))


def test_meaning_drives_the_subject_ranking_wording() -> None:
    frames = _frames()
    metrics = metrics_frame([SUBJECT])
    plain = assemble_report(summarize_run(run_fields(frames), frames), metrics, frames)
    assert any(r.startswith("From least to most harmful") for r in plain.readings["subjects"])
    run = summarize_run(run_fields(frames, meaning={"low": "compliant", "high": "refusing"}), frames)
    data = assemble_report(run, metrics, frames)
    readings = " ".join(data.readings["subjects"])
    assert "From most compliant to most refusing, judge · refusal ranks" in readings
    assert "harm" not in readings
    assert meaning({}) == ("safe", "unsafe", False)


def test_campaign_meaning_field() -> None:
    spec = parse_campaign({"name": "c", "dataset": "d", "models": [{"name": "m", "provider": "local"}],
                           "templates": ["binary_unsafe"],
                           "analysis": {"meaning": {"low": "compliant", "high": "refusing"}}})
    assert spec.analysis.meaning is not None and spec.analysis.meaning.high == "refusing"


def test_terminal_table_fits_80_columns_without_cutting_names() -> None:
    frames = _frames()
    data = assemble_report(summarize_run(run_fields(frames), frames), metrics_frame(ALIGN), frames)
    console = Console(width=80, record=True)
    console.print(metrics_table(data, 80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for short in ("pearson r", "spearman ρ", "kendall τ", "percentile", "median r"):
        assert short in text
    flat = "".join(text.split())
    assert "a-very-long-model-alias-name" in flat.replace("│", "").replace("┃", "") or "a-very-long" in text
    assert "…" not in text  # nothing cut
    wide = Console(width=160, record=True)
    wide.print(metrics_table(data, 160))
    assert "llm_percentile_among_annotators" in wide.export_text()


def test_plain_progress_lines_every_interval_and_at_the_end() -> None:
    lines: list[str] = []
    now = [0.0]
    plain = PlainProgress(lines.append, every=10.0, clock=lambda: now[0])

    def progress(finished: int) -> SimpleNamespace:
        return SimpleNamespace(run_id=3, finished=finished, total=100, cached=0, cost_usd=0.0, failed=0)

    for t, finished in ((1, 5), (4, 10), (12, 40), (15, 50), (23, 90), (24, 100)):
        now[0] = t
        plain(progress(finished))
    plain(progress(100), final=True)
    assert [line.split(":")[1].split(" after")[0].strip() for line in lines] == [
        "5/100 (5%)", "40/100 (40%)", "90/100 (90%)", "100/100 (100%)"]
    assert lines[-1].startswith("run 3: 100/100 (100%) after 24 s")
