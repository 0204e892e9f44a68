"""compute_all: coverage of the metric families, determinism, JSON safety, degenerate input."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from accord.analysis.results import MetricRecord
from accord.analysis.suite import SuiteOptions, compute_all
from accord.analysis.synthetic import make_synthetic

FAST = SuiteOptions(n_resamples=100, n_permutations=60)


def _check_records(records: list[MetricRecord]) -> None:
    keys = [r.key() for r in records]
    assert len(keys) == len(set(keys)), "duplicate (name, slice, model, template)"
    for r in records:
        for field in (r.value, r.ci_low, r.ci_high, r.pvalue):
            assert field is None or (type(field) is float and math.isfinite(field)), r
        assert r.n is None or type(r.n) is int
        json.dumps(r.details, allow_nan=False)
        assert not r.details.get("error"), r
        if r.value is None:
            assert "reason" in r.details or "skipped" in r.details, r


@pytest.fixture(scope="module")
def rich():
    return make_synthetic(n_items=50, n_annotators=24, personas=True, categories=["a", "b"],
                          subject_models=["s1", "s2", "s3"], group_effect=0.6, n_samples=3, seed=1)


@pytest.fixture(scope="module")
def rich_records(rich):
    return compute_all(*rich, FAST)


def test_all_metric_families_present(rich_records):
    names = {r.name for r in rich_records}
    expected = {
        "pearson_r_vs_mean", "spearman_r_vs_mean", "kendall_tau_vs_mean", "annotator_loo_r_median",
        "llm_percentile_among_annotators", "krippendorff_alpha_nominal", "krippendorff_alpha_ordinal",
        "krippendorff_alpha_interval", "krippendorff_delta_alpha_nominal", "cohen_kappa_vs_majority",
        "cohen_kappa_linear_vs_majority", "fleiss_kappa", "accuracy_vs_majority", "f1_vs_expert",
        "jsd_mean", "group_pearson_r", "group_r_gap", "idiosyncratic_sd_within_groups", "group_irr",
        "group_xrr", "group_gai", "persona_gap_pearson_r", "persona_gap_direction_accuracy",
        "min_detectable_r_difference", "failure_rate", "refusal_rate", "failure_bias_chi2",
        "format_consistency_cs", "format_consistency_css", "test_retest_r", "label_flip_rate",
        "position_bias_flip_rate", "subject_ranking_kendall_tau", "subject_mean_harm",
    }
    assert expected <= names, expected - names
    _check_records(rich_records)


def test_record_contents(rich, rich_records):
    by = {r.key(): r for r in rich_records}
    r = by[("pearson_r_vs_mean", "all", "model_a", "direct")]
    assert r.ci_low < r.value < r.ci_high and r.n == 50 and 0 <= r.pvalue <= 1
    assert ("pearson_r_vs_mean", "category=a", "model_a", "direct") in by
    g = by[("group_pearson_r", "gender=Woman", "model_a", "direct")]
    assert g.ci_low is not None and "p_adjusted_bh" in g.details and g.pvalue is not None
    assert ("group_pearson_r", "gender=Man&race=Asian", "model_a", "direct") in by
    gap = by[("group_r_gap", "gender", "model_a", "direct")]
    assert gap.value >= 0 and gap.details["highest"] in ("gender=Man", "gender=Woman")
    assert by[("position_bias_flip_rate", "all", "model_a", "mc_ab|mc_ba")].n > 0
    assert ("format_consistency_cs", "category=b", "model_a", "mc_ab|mc_ba") in by
    assert ("persona_gap_pearson_r", "gender=Man vs gender=Woman", "model_a", "direct") in by
    # persona raters are not mixed into the plain alignment metrics
    assert not any(r.template == "direct" and "persona" in r.slice for r in rich_records)


def test_rerun_is_identical(rich, rich_records):
    again = compute_all(*rich, FAST)
    assert [(r.key(), r.value, r.ci_low, r.ci_high, r.pvalue, r.n, r.details) for r in again] == [
        (r.key(), r.value, r.ci_low, r.ci_high, r.pvalue, r.n, r.details) for r in rich_records]


def test_other_seed_changes_intervals_only(rich, rich_records):
    other = compute_all(*rich, SuiteOptions(n_resamples=100, n_permutations=60, seed=5))
    a = {r.key(): r for r in rich_records}
    b = {r.key(): r for r in other}
    key = ("pearson_r_vs_mean", "all", "model_a", "direct")
    assert a[key].value == b[key].value
    assert a[key].ci_low != b[key].ci_low


def test_planted_group_difference_shows_in_gap():
    data = make_synthetic(n_items=80, n_annotators=30, attributes={"gender": ["Man", "Woman"]},
                          models=["m"], templates=["t"], group_effect=1.5, seed=3)
    human, ann, llm, items = data
    # let the LLM see the women's view: rebuild its scores from the women's mean rating
    woman = ann.loc[ann["gender"] == "Woman", "annotator_id"]
    mu_w = human[human["annotator_id"].isin(woman)].groupby("item_id")["value"].mean()
    llm = llm.assign(value=llm["item_id"].map(mu_w), weighted_value=np.nan, parse_status="ok")
    recs = compute_all(human, ann, llm, items, SuiteOptions(n_resamples=100, n_permutations=200))
    by = {r.key(): r for r in recs}
    woman_r = by[("group_pearson_r", "gender=Woman", "m", "t")]
    man_r = by[("group_pearson_r", "gender=Man", "m", "t")]
    assert woman_r.value > man_r.value + 0.2
    assert by[("group_r_gap", "gender", "m", "t")].pvalue < 0.01
    assert woman_r.details["p_adjusted_bh"] < 0.05


def _tiny():
    human = pd.DataFrame({
        "item_id": ["1", "1", "2", "2", "3", "3", "4", "4", "5"],
        "annotator_id": ["a", "b", "a", "b", "a", "c", "b", "c", "a"],
        "value": [1.0, 1.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 1.0],
    })
    annotators = pd.DataFrame({"annotator_id": ["a", "b", "c"], "gender": ["W", "M", None],
                               "age": ["old", "old", "young"]})
    return human, annotators


def _llm(values, statuses=None):
    n = len(values)
    return pd.DataFrame({"item_id": [str(i + 1) for i in range(n)], "model": "m", "template": "t",
                         "sample_index": 0, "value": values,
                         "parse_status": statuses or ["ok"] * n})


@pytest.mark.parametrize("values,statuses", [
    ([1.0, 1.0, 1.0, 1.0, 1.0], None),  # constant rater
    ([np.nan] * 5, ["unparseable", "refused", "empty", "truncated", "unparseable"]),  # nothing parsed
    ([1.0, 0.0, np.nan, 0.0, 1.0], ["ok", "ok", "refused", "ok", "ok"]),
])
def test_degenerate_inputs_never_crash(values, statuses):
    human, annotators = _tiny()
    recs = compute_all(human, annotators, _llm(values, statuses), None, FAST)
    _check_records(recs)
    by = {r.key(): r for r in recs}
    if np.isnan(values).all() or np.ptp(np.array(values)[np.isfinite(values)]) == 0:
        rec = by[("pearson_r_vs_mean", "all", "m", "t")]
        assert rec.value is None and rec.details["reason"]


def test_group_of_one_and_unknown_demographics():
    human, annotators = _tiny()
    recs = compute_all(human, annotators, _llm([1.0, 0.0, 1.0, 0.0, 1.0]), None, FAST)
    _check_records(recs)
    gaps = [r for r in recs if r.name == "group_r_gap"]
    # gender: W and M are groups of one (c is unknown) -> no group; age: old (2) vs young (1)
    assert all(r.value is None for r in gaps)
    assert not any(r.slice.startswith("gender=") for r in recs if r.name == "group_pearson_r")


def test_all_nan_humans_and_missing_frames():
    human = pd.DataFrame({"item_id": ["1", "2"], "annotator_id": ["a", "b"], "value": [np.nan, np.nan]})
    recs = compute_all(human, None, None, None, FAST)
    _check_records(recs)
    empty = pd.DataFrame({"item_id": pd.Series(dtype=str), "annotator_id": pd.Series(dtype=str),
                          "value": pd.Series(dtype=float)})
    recs = compute_all(empty, None, _llm([1.0, 0.0, 1.0]), None, FAST)
    _check_records(recs)
    assert any(r.name == "failure_rate" for r in recs)


def test_bad_input_errors_name_the_problem():
    human, annotators = _tiny()
    with pytest.raises(ValueError, match="human frame is missing column"):
        compute_all(human.drop(columns="value"), annotators, None, None, FAST)
    bad = human.assign(value=human["value"].astype(object))
    bad.loc[3, "value"] = "Yes"
    with pytest.raises(ValueError, match=r"human frame, column 'value', row 3"):
        compute_all(bad, annotators, None, None, FAST)
    llm = _llm([1.0, 0.0, 1.0])
    llm.loc[1, "parse_status"] = "weird"
    with pytest.raises(ValueError, match=r"parse_status', row 1"):
        compute_all(human, annotators, llm, None, FAST)
    with pytest.raises(ValueError, match="confidence_level"):
        SuiteOptions(confidence_level=95)


def test_two_way_option_and_persona_key_order():
    human, ann, llm, items = make_synthetic(n_items=40, n_annotators=16, models=["m"], templates=["t"],
                                            personas=True, group_effect=1.0, seed=4)
    # intersection personas written in the other attribute order still match their group
    llm["persona_key"] = llm["persona_key"].replace({"gender=Man": "race=Asian&gender=Man",
                                                      "gender=Woman": "race=Asian&gender=Woman"})
    recs = compute_all(human, ann, llm, items, SuiteOptions(n_resamples=100, n_permutations=50,
                                                            two_way_bootstrap=True))
    _check_records(recs)
    by = {r.key(): r for r in recs}
    two = by[("pearson_r_vs_mean_two_way", "all", "m", "t")]
    assert two.value == by[("pearson_r_vs_mean", "all", "m", "t")].value
    assert two.ci_low < two.value < two.ci_high
    assert ("persona_gap_pearson_r", "gender=Man&race=Asian vs gender=Woman&race=Asian", "m", "t") in by


def test_max_groups_skips_disparity():
    human, ann, llm, items = make_synthetic(n_items=30, n_annotators=20, models=["m"], templates=["t"],
                                            seed=5)
    recs = compute_all(human, ann, llm, items, SuiteOptions(n_resamples=50, n_permutations=20,
                                                            max_groups=2, group_attributes=["race"]))
    gap = {r.key(): r for r in recs}[("group_r_gap", "race", "m", "t")]
    assert gap.value is None and "max_groups" in gap.details["skipped"]
