"""A run over a subset of a dataset's items: the report shows the baseline of the run's items and of the whole
dataset, each labelled (finding 1), and the campaign's analysis: section reaches the metric suite."""

from __future__ import annotations

from pathlib import Path

import pytest
from accord.analysis.describe import human_baseline
from accord.analysis.frames import build_human_matrix
from accord.report.build import build_report_data
from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from accord.scheduler.postprocess import compute_run_metrics, postprocess_run
from accord.models.run_frames import load_dataset_frames

from tests.fakes.openai_server import OpenAIFakeServer
from tests.fakes.synthetic_dataset import make_sparse_dataset


def test_subset_run_reports_both_baselines_labelled(sqlite_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kwargs = make_sparse_dataset(tmp_path, n_items=40, n_annotators=30, seed=4)
    import_dataset(sqlite_engine, ImportSpec(**{**kwargs, "name": "syn"}, meaning="low=tolerable,high=offensive"))
    with OpenAIFakeServer() as server:
        plan = create_run(sqlite_engine, parse_campaign({
            "name": "subset", "dataset": "syn", "items": {"limit": 12},
            "models": [{"name": "m", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url}],
            "templates": ["binary_unsafe"],
            "analysis": {"group_attributes": ["gender"], "n_bootstrap": 50, "n_permutations": 20,
                         "alt_test": {"epsilon": 0.2, "min_items": 2}}}))
        run_embedded(sqlite_engine, plan.run_id, backoff_initial=0.01)
    postprocess_run(sqlite_engine, plan.run_id)
    data = build_report_data(sqlite_engine, plan.run_id)
    whole = load_dataset_frames(sqlite_engine, "syn").human
    hm = build_human_matrix(whole)
    expected = human_baseline(hm.values, hm.annotator_ids, hm.value_domain())["annotator_loo_r"]["median"]
    readings = " ".join(data.readings["baseline"])
    assert "Baseline of this run's 12 items: median annotator r = " in readings
    assert f"Baseline of the whole dataset (40 items): median annotator r = {expected:.3f}" in readings
    assert data.run["meaning"] == {"low": "tolerable", "high": "offensive"}  # the dataset's meaning
    rows = {(r["name"], r["slice"]) for r in data.to_json()["metrics"]}
    assert ("dataset_annotator_loo_r_median", "all") in rows
    # the analysis section: only gender groups, alt-test with the campaign's epsilon
    records = compute_run_metrics(sqlite_engine, plan.run_id)
    group_slices = {r.slice for r in records if r.name == "group_mean_rating"}
    assert group_slices and all(s.startswith("gender=") for s in group_slices)
    alt = next(r for r in records if r.name == "alt_test_winning_rate" and r.slice == "all")
    assert alt.details.get("epsilon") == pytest.approx(0.2) or "reason" in alt.details


def test_report_sections_for_group_means_alt_test_and_prevalence(sqlite_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A judge rates every item; people rated 30 of 40 (the others are extrapolated to)."""
    import numpy as np
    import pandas as pd
    from accord.analysis.suite import SuiteOptions, compute_all
    from accord.report.build import assemble_report, render_html, summarize_run
    from accord.report.metrics import metrics_frame

    from tests.unit.test_report import run_fields, run_frames_from

    rng = np.random.default_rng(1)
    items = [f"i{k}" for k in range(40)]
    truth = (rng.random(40) < 0.4).astype(float)
    human = pd.DataFrame([(items[k], f"a{j}", truth[k] if rng.random() < 0.8 else 1 - truth[k])
                          for k in range(30) for j in range(8)], columns=["item_id", "annotator_id", "value"])
    annotators = pd.DataFrame({"annotator_id": [f"a{j}" for j in range(8)], "gender": ["Woman", "Man"] * 4})
    llm = pd.DataFrame({"item_id": items, "model": "judge", "template": "binary_unsafe", "sample_index": 0,
                        "value": truth, "parse_status": "ok", "status": "done"})
    records = compute_all(human, annotators, llm, None, SuiteOptions(n_resamples=50, n_permutations=50,
                                                                      alt_min_items=20))
    metrics = metrics_frame({"name": r.name, "slice": r.slice, "model": r.model, "template": r.template,
                             "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high, "pvalue": r.pvalue,
                             "n": r.n, "details": r.details} for r in records)
    frames = run_frames_from(human.assign(raw_label=""), annotators, llm, pd.DataFrame({"item_id": items}))
    data = assemble_report(summarize_run(run_fields(frames), frames), metrics, frames)
    ids = [s.id for s in data.sections]
    assert {"group_means", "alt_test", "prevalence"} <= set(ids)
    alt = " ".join(data.readings["alt_test"])
    assert "judge · binary_unsafe beats 100% of 8 annotators" in alt and "can stand in" in alt
    prev = " ".join(data.readings["prevalence"])
    assert "of 10 unrated items positive" in prev
    html = render_html(data)
    assert "Can this LLM stand in for an annotator" in html and "Raw and corrected prevalence" in html
