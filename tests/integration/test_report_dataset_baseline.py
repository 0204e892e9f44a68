"""A run over a subset of a dataset's items: the report shows the baseline of the run's items and of the whole
dataset, each labelled (finding 1), and the campaign's analysis: section reaches the metric suite."""

from __future__ import annotations

from pathlib import Path

import pytest
from accord.analysis.describe import human_baseline
from accord.analysis.frames import build_human_matrix
from accord.api.report import build_report_data
from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from accord.scheduler.postprocess import compute_run_metrics, postprocess_run
from accord.scheduler.run_frames import load_dataset_frames

from tests.fakes.openai_server import OpenAIFakeServer
from tests.fakes.synthetic_dataset import make_sparse_dataset


def test_subset_run_reports_both_baselines_labelled(sqlite_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kwargs = make_sparse_dataset(tmp_path, n_items=40, n_annotators=30, seed=4)
    import_dataset(sqlite_engine, ImportSpec(**{**kwargs, "name": "syn"}))
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
    rows = {(r["name"], r["slice"]) for r in data.to_json()["metrics"]}
    assert ("dataset_annotator_loo_r_median", "all") in rows
    # the analysis section: only gender groups, alt-test with the campaign's epsilon
    records = compute_run_metrics(sqlite_engine, plan.run_id)
    group_slices = {r.slice for r in records if r.name == "group_mean_rating"}
    assert group_slices and all(s.startswith("gender=") for s in group_slices)
    alt = next(r for r in records if r.name == "alt_test_winning_rate" and r.slice == "all")
    assert alt.details.get("epsilon") == pytest.approx(0.2) or "reason" in alt.details
