"""Issue 15, finding 1-2: the group-difference test must not be blind to a small group the LLM favours.

Simulations (seeded, a few seconds each): 40 annotators in groups of 8 and 32 (and 20/20), 60 items. Item i
has a latent harm z_i; group g sees z_i + tau * e_gi (e ~ N(0, 1)); each annotator adds a bias and noise. The
LLM sees z_i (+ the view of the group it tracks) + noise. Under no difference (tau = 0) every test must keep
its size; with the LLM tracking the small group at tau = 0.5 the equal-tailed test must find it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from accord.analysis.disparity import group_correlation_test
from accord.analysis.resampling import permutation_pvalue

N_ITEMS, NOISE, K = 60, 1.5, 199
UNEQUAL = np.array([0] * 8 + [1] * 32)
EQUAL = np.array([0] * 20 + [1] * 20)


def _dataset(rng: np.random.Generator, labels: np.ndarray, tau: float, track: int | None):
    n_ann = labels.size
    z = rng.normal(size=N_ITEMS)
    shift = tau * rng.normal(size=(2, N_ITEMS))
    view = z[:, None] + shift[labels].T
    ratings = view + rng.normal(0, NOISE, size=(N_ITEMS, n_ann)) + rng.normal(0, 0.3, size=(1, n_ann))
    scores = z + (shift[track] if track is not None else 0.0) + rng.normal(0, 0.5, size=N_ITEMS)
    return scores[:, None], ratings


def _simulate(seed: int, labels: np.ndarray, tau: float, track: int | None, n_datasets: int):
    """Per dataset: the small group's equal-tailed p, its old |d| p, and the gap p."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_datasets):
        scores, ratings = _dataset(rng, labels, tau, track)
        res = group_correlation_test(scores, ratings, labels, 2, K, rng)
        old = permutation_pvalue(res.difference, res.null_difference, "two-sided")[0, 0]
        out.append((res.difference_pvalue[0, 0], old, res.gap_pvalue[0], res.effect[0, 0],
                    res.null_mean_difference[0, 0]))
    return np.array(out)


def test_unequal_groups_no_difference_keeps_its_size():
    sims = _simulate(1, UNEQUAL, 0.0, None, 500)
    fpr_group, fpr_gap = np.mean(sims[:, 0] < 0.05), np.mean(sims[:, 2] < 0.05)
    assert fpr_group <= 0.06, fpr_group
    assert fpr_gap <= 0.06, fpr_gap
    assert fpr_group >= 0.01 and fpr_gap >= 0.01          # not trivially conservative
    # the null of r_G - r_rest of the small group is centred well below zero (that was the trap) ...
    assert np.mean(sims[:, 4]) < -0.05
    # ... and the effect relative to it is centred at zero
    assert abs(np.mean(sims[:, 3])) < 0.02


def test_llm_tracking_the_small_group_is_detected():
    sims = _simulate(2, UNEQUAL, 0.5, 0, 100)
    power_group, power_gap = np.mean(sims[:, 0] < 0.05), np.mean(sims[:, 2] < 0.05)
    assert power_group >= 0.8, power_group
    assert power_gap >= 0.8, power_gap
    assert np.all(sims[sims[:, 0] < 0.05, 3] > 0)          # detected in the right direction
    # the old |null| >= |observed| p-value was blind to it (issue 15: power 0.000 at tau = 0.5)
    assert np.mean(sims[:, 1] < 0.05) <= 0.2


def test_llm_tracking_the_large_group_is_still_detected():
    sims = _simulate(3, UNEQUAL, 0.5, 1, 40)
    assert np.mean(sims[:, 2] < 0.05) >= 0.8


def test_equal_groups_as_before():
    null = _simulate(4, EQUAL, 0.0, None, 400)
    assert np.mean(null[:, 0] < 0.05) <= 0.06 and np.mean(null[:, 2] < 0.05) <= 0.06
    alt = _simulate(5, EQUAL, 0.5, 0, 40)
    assert np.mean(alt[:, 0] < 0.05) >= 0.8 and np.mean(alt[:, 2] < 0.05) >= 0.8
    # with equal groups the null is centred at zero and the equal-tailed p agrees with the old one
    assert abs(np.mean(null[:, 4])) < 0.02
    np.testing.assert_allclose(np.mean(null[:, 0] < 0.05), np.mean(null[:, 1] < 0.05), atol=0.02)


def test_minimal_case_from_the_issue():
    """Observed d = +0.036, null centred at -0.120 with its 97.5% quantile at -0.021: the old p was 0.947."""
    rng = np.random.default_rng(0)
    null = rng.normal(-0.120, 0.05, size=(999, 1))
    observed = np.array([0.036])
    assert np.quantile(null, 0.975) < 0.0
    share_above = np.mean(null[:, 0] >= 0.036)
    p_new = permutation_pvalue(observed, null, "equal-tailed")[0]
    p_old = permutation_pvalue(observed, null, "two-sided")[0]
    assert share_above < 0.005
    assert p_new == pytest.approx(2 * (1 + np.sum(null[:, 0] >= 0.036)) / 1000)
    assert p_new < 0.01
    assert p_old > 0.5


def _null_dataset_7_130(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_items, n_ann = 80, 137
    items = [f"i{i:03d}" for i in range(n_items)]
    ann = [f"a{j:03d}" for j in range(n_ann)]
    z = rng.normal(size=n_items)
    ratings = np.clip(np.round(2 + z[:, None] + rng.normal(0, 2.5, size=(n_items, n_ann))), 0, 4)
    human = pd.DataFrame({"item_id": np.repeat(items, n_ann), "annotator_id": np.tile(ann, n_items),
                          "value": ratings.ravel()})
    annotators = pd.DataFrame({"annotator_id": ann, "gender": ["Non-binary"] * 7 + ["Man"] * 130})
    llm = pd.DataFrame({"item_id": items, "model": "m", "template": "t", "sample_index": 0,
                        "value": np.clip(np.round(2 + z + rng.normal(0, 0.6, n_items)), 0, 4),
                        "parse_status": "ok"})
    return human, annotators, llm, pd.DataFrame({"item_id": items})


def test_null_report_with_groups_7_and_130_names_no_lowest_group():
    from accord.analysis.suite import SuiteOptions, compute_all
    from accord.report.build import assemble_report, render_html, summarize_run

    from tests.unit.test_report import records_frame, run_fields, run_frames_from

    human, annotators, llm, items = _null_dataset_7_130()
    records = compute_all(human, annotators, llm, items,
                          SuiteOptions(n_resamples=50, n_permutations=400, binary_threshold=2.0))
    by = {r.key(): r for r in records}
    gap = by[("group_r_gap", "gender", "m", "t")]
    small = by[("group_pearson_r", "gender=Non-binary", "m", "t")]
    large = by[("group_pearson_r", "gender=Man", "m", "t")]
    # the artefact is there in r_G: the 7-annotator group's r is far lower although nobody differs ...
    assert small.value < large.value - 0.1
    assert gap.details["raw_gap"] > 0.1
    # ... but relative to random groups of 7 it is not, and the size-robust estimates agree
    assert small.pvalue > 0.05 and gap.pvalue > 0.05
    low, high = small.details["mean_annotator_r_ci"]
    assert low < large.details["mean_annotator_r"] < high
    # Spearman-Brown corrects the 7-annotator mean much more than the 130-annotator one and removes the shortfall
    assert small.details["spearman_brown_r"] / small.value > 1.3 > large.details["spearman_brown_r"] / large.value
    assert small.details["spearman_brown_r"] > large.details["spearman_brown_r"] - 0.05
    effect_low, effect_high = small.details["effect_ci"]
    assert effect_low < 0 < effect_high
    assert "lowest" not in gap.details and "highest" not in gap.details
    assert gap.value < gap.details["raw_gap"]

    frames = run_frames_from(human, annotators, llm.assign(weighted_value=np.nan, label=None, persona_key="",
                                                            template_family="t", option_order=""), items)
    data = assemble_report(summarize_run(run_fields(frames), frames), records_frame(records), frames)
    html = render_html(data)
    reading = " ".join(data.readings["groups"])
    assert "lowest" not in reading.lower()
    table = re.search(r'<table id="table-group-gaps">.*?</table>', html, re.DOTALL).group(0)  # type: ignore[union-attr]
    assert "Non-binary (" not in table and "Man (" not in table      # no group named in highest/lowest columns
    assert "relative to random groups of the same size" in html      # the report says what the headline is


def test_significant_gap_names_the_groups_relative_to_random_groups():
    from accord.analysis.suite import SuiteOptions, compute_all
    from accord.analysis.synthetic import make_synthetic

    human, ann, llm, items = make_synthetic(n_items=80, n_annotators=30, attributes={"gender": ["Man", "Woman"]},
                                            models=["m"], templates=["t"], group_effect=1.5, seed=3)
    woman = ann.loc[ann["gender"] == "Woman", "annotator_id"]
    mu_w = human[human["annotator_id"].isin(woman)].groupby("item_id")["value"].mean()
    llm = llm.assign(value=llm["item_id"].map(mu_w), weighted_value=np.nan, parse_status="ok")
    by = {r.key(): r for r in compute_all(human, ann, llm, items, SuiteOptions(n_resamples=50, n_permutations=200))}
    gap = by[("group_r_gap", "gender", "m", "t")]
    assert gap.details["p_adjusted_bh"] < 0.05
    assert gap.details["highest"] == "gender=Woman" and gap.details["lowest"] == "gender=Man"
    woman_r = by[("group_pearson_r", "gender=Woman", "m", "t")]
    assert woman_r.details["effect_vs_random_groups"] > 0 and woman_r.details["effect_ci"][0] > 0
    assert woman_r.details["mean_annotator_r"] > by[("group_pearson_r", "gender=Man", "m", "t")].details[
        "mean_annotator_r"]
