"""Issue 15 ("Statistics that mean what they say"): one regression test per finding, each asserting the value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from accord.analysis.association import cross_replication_reliability, group_association
from accord.analysis.failures import item_level_breakdown
from accord.analysis.frames import UNKNOWN, UNTESTED, build_groups, build_llm_scores, normalise_llm
from accord.analysis.resampling import permutation_pvalue
from accord.analysis.suite import SuiteOptions, compute_all

FAST = SuiteOptions(n_resamples=50, n_permutations=100)


def _llm(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["item_id", "model", "template", "sample_index", "value", "weighted_value",
                                       "parse_status"])


def _human_frame(ratings: np.ndarray, items: list[str], annotators: list[str]) -> pd.DataFrame:
    ii, jj = np.nonzero(np.isfinite(ratings))
    return pd.DataFrame({"item_id": [items[i] for i in ii], "annotator_id": [annotators[j] for j in jj],
                         "value": ratings[ii, jj]})


def _by(records):  # type: ignore[no-untyped-def]
    return {r.key(): r for r in records}


# ------------------------------------------------------------------------------------- finding 3: small groups


def _gender_data(n_items: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    items = [f"i{i:02d}" for i in range(n_items)]
    ann = [f"a{j:02d}" for j in range(9)]
    z = rng.normal(size=n_items)
    ratings = np.clip(np.round(2 + z[:, None] + rng.normal(0, 1, size=(n_items, 9))), 0, 4)
    human = _human_frame(ratings, items, ann)
    annotators = pd.DataFrame({"annotator_id": ann,
                               "gender": ["Man"] * 4 + ["Woman"] * 3 + ["Non-binary"] + ["nan"]})
    llm = _llm([(items[i], "m", "t", 0, float(np.clip(np.round(2 + z[i]), 0, 4)), np.nan, "ok")
                for i in range(n_items)])
    return human, annotators, llm, pd.DataFrame({"item_id": items}), ratings


def test_finding3_small_group_listed_and_kept_in_the_rest():
    human, annotators, llm, items, ratings = _gender_data()
    by = _by(compute_all(human, annotators, llm, items, FAST))
    untested = by[("group_not_tested", "gender=Non-binary", "", "")]
    assert untested.n == 1 and untested.details["group_size"] == 1
    assert "fewer than min_group_size=2" in untested.details["skipped"]
    gap = by[("group_r_gap", "gender", "m", "t")]
    assert gap.n == 8                                      # 4 + 3 + the non-binary annotator; not the unknown one
    assert gap.details["not_tested"][0]["group"] == "gender=Non-binary"
    assert by[("group_unknown_annotators", "gender", "", "")].value == 1.0
    # the rest of "Woman" is every other annotator with a known gender: the 4 men and the non-binary annotator
    rest = np.nanmean(ratings[:, [0, 1, 2, 3, 7]], axis=1)
    score = llm["value"].to_numpy()
    woman = by[("group_pearson_r", "gender=Woman", "m", "t")]
    assert woman.details["r_rest"] == pytest.approx(np.corrcoef(score, rest)[0, 1], abs=1e-12)


# ------------------------------------------------------------------------------------- finding 4: "nan" strings


def test_finding4_nan_strings_are_unknown_never_a_group():
    annotators = pd.DataFrame({"annotator_id": list("abcdefg"),
                               "gender": ["Man", "nan", "None", "", "  ", "Woman", "NULL"]})
    (gender,) = build_groups(annotators, list("abcdefg"), min_group_size=1)
    assert gender.group_names == ["gender=Man", "gender=Woman"]
    assert gender.labels.tolist() == [0, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, 1, UNKNOWN]
    human, annotators, llm, items, _ = _gender_data()
    records = compute_all(human, annotators, llm, items, FAST)
    assert not any("nan" in r.slice.lower() for r in records)


def test_untested_label_is_distinct_from_unknown():
    annotators = pd.DataFrame({"annotator_id": list("abcde"), "g": ["x", "x", "y", None, "x"]})
    (g,) = build_groups(annotators, list("abcde"), min_group_size=2)
    assert g.labels.tolist() == [0, 0, UNTESTED, UNKNOWN, 0]
    assert g.untested()[0]["group"] == "g=y" and g.untested()[0]["group_size"] == 1
    assert g.n_groups == 1                                 # kept (and reported) although nothing can be tested


# ------------------------------------------------------------------------------------- finding 5: GAI / XRR


def test_finding5_xrr_weights_items_by_their_ratings():
    # items x annotators; G = first three, H = last two. Item 1: G {1}, H {0}; item 2: G {1, 1, 0}, H {0, 1}.
    r = np.array([[1.0, np.nan, np.nan, 0.0, np.nan],
                  [1.0, 1.0, 0.0, 0.0, 1.0]])
    labels = np.array([0, 0, 0, 1, 1])
    # by hand: per-item mean cross disagreement 1 and 3/6; weights R_i + S_i = 2 and 5; d_e = 7/12
    d_e = 7 / 12
    by_ratings = 1 - (2 * 1.0 + 5 * 0.5) / 7 / d_e
    by_items = 1 - (1.0 + 0.5) / 2 / d_e
    assert by_ratings == pytest.approx(-0.1020408163)
    res = group_association(r, labels, ["g=G", "g=H"], "interval", 10, np.random.default_rng(0))
    assert res.xrr[0] == pytest.approx(by_ratings)
    assert res.xrr_weighting == "ratings"
    old = group_association(r, labels, ["g=G", "g=H"], "interval", 10, np.random.default_rng(0), "items")
    assert old.xrr[0] == pytest.approx(by_items)
    assert cross_replication_reliability(r[:, :3], r[:, 3:]) == pytest.approx(by_ratings)
    assert cross_replication_reliability(r[:, :3], r[:, 3:], weighting="items") == pytest.approx(by_items)


def test_finding5_gai_is_two_sided_and_the_rest_includes_small_groups():
    rng = np.random.default_rng(3)
    z = rng.normal(size=30)
    r = z[:, None] + rng.normal(0, 1, size=(30, 9))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, UNTESTED])
    res = group_association(r, labels, ["g=a", "g=b"], "interval", 199, np.random.default_rng(1))
    upper = permutation_pvalue(res.gai, res.null_gai, "greater")
    lower = permutation_pvalue(res.gai, res.null_gai, "less")
    np.testing.assert_allclose(res.gai_pvalue, np.minimum(1, 2 * np.minimum(upper, lower)))
    assert res.alternative == "equal-tailed"
    # the untested annotator is part of the rest of both groups
    assert res.xrr[0] == pytest.approx(cross_replication_reliability(r[:, :4], r[:, 4:]), abs=1e-12)
    assert res.xrr[1] == pytest.approx(cross_replication_reliability(r[:, 4:8], r[:, [0, 1, 2, 3, 8]]), abs=1e-12)
    assert res.group_sizes.tolist() == [4, 4]
    # a group whose GAI sits in the lower tail is flagged: place the observation below the whole null
    low = permutation_pvalue(np.array([-10.0]), res.null_gai[:, :1], "equal-tailed")[0]
    assert low == pytest.approx(2 / 200)


# ------------------------------------------------------------------------------------- finding 6: refusals


def test_finding6_refusals_carry_no_rating():
    """12 items: two ok samples at 0.1 and a refusal whose stored probabilities say 0.95."""
    rows = []
    for i in range(12):
        rows += [(f"i{i}", "m", "t", 0, 0.0, 0.1, "ok"), (f"i{i}", "m", "t", 1, 0.0, 0.1, "ok"),
                 (f"i{i}", "m", "t", 2, 1.0, 0.95, "refused")]
    llm = _llm(rows)
    llm["value_probs"] = [{0.0: 0.9, 1.0: 0.1}, {0.0: 0.9, 1.0: 0.1}, {0.0: 0.052, 1.0: 0.948}] * 12
    scores = build_llm_scores(llm, [f"i{i}" for i in range(12)])
    (s,) = scores.values()
    np.testing.assert_allclose(s.score, 0.1)               # was 0.383
    np.testing.assert_array_equal(s.n_parsed, 2)           # was 3
    np.testing.assert_array_equal(s.label, 0.0)
    norm = normalise_llm(llm)
    refused = norm["parse_status"] == "refused"
    assert norm.loc[refused, "value"].isna().all() and norm.loc[refused, "weighted_value"].isna().all()
    assert norm.loc[refused, "value_probs"].isna().all()
    # the label distribution (JSD) uses the two ok samples' probabilities only
    human = pd.DataFrame([{"item_id": f"i{i}", "annotator_id": f"a{j}", "value": float(j < 1)}
                          for i in range(12) for j in range(10)])       # 10% say 1
    jsd = next(r for r in compute_all(human, None, llm, None, FAST) if r.name == "jsd_mean" and r.slice == "all")
    assert jsd.value == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------- finding 7: failure bias


def test_finding7_failure_bias_is_tested_at_the_item_level():
    """Failure is a property of the item and unrelated to category: the item-level test keeps alpha."""
    rng = np.random.default_rng(5)
    n_items, n_samples = 350, 5
    levels = pd.Series(np.repeat(np.array(["a", "b", "c"] * 117)[:n_items], n_samples))
    item_index = np.repeat(np.arange(n_items), n_samples)
    flagged, naive = [], []
    for _ in range(500):
        p = np.where(rng.random(n_items) < 0.15, 0.9, 0.02)
        flags = (rng.random((n_items, n_samples)) < p[:, None]).ravel()
        res = item_level_breakdown(flags, item_index, levels, "category", 199, rng)
        flagged.append(res.flag)
        naive.append(res.sample_level_pvalue < 0.05)
    assert np.mean(flagged) <= 0.06, np.mean(flagged)        # 0.046
    assert np.mean(flagged) >= 0.01, np.mean(flagged)
    assert np.mean(naive) >= 0.3, np.mean(naive)            # what the sample-level chi-square did (0.45)


def test_finding7_item_level_test_still_finds_real_bias():
    rng = np.random.default_rng(6)
    n_items, n_samples = 120, 3
    cat = np.array(["violence", "other"] * 60)
    p = np.where(cat == "violence", 0.4, 0.05)
    flags = (rng.random((n_items, n_samples)) < p[:, None]).ravel()
    res = item_level_breakdown(flags, np.repeat(np.arange(n_items), n_samples),
                               pd.Series(np.repeat(cat, n_samples)), "category", 199, rng)
    assert res.flag and res.pvalue == pytest.approx(1 / 200) and res.n_items == 120


# ------------------------------------------------------------------------------------- finding 9: silent numbers


def test_finding9_nan_value_with_status_ok_is_a_failure():
    items = [f"i{i}" for i in range(10)]
    human = pd.DataFrame([{"item_id": i, "annotator_id": f"a{j}", "value": float((k + j) % 2)}
                          for k, i in enumerate(items) for j in range(3)])
    llm = _llm([(i, "m", "t", 0, np.nan if k == 0 else float(k % 2), np.nan, "ok") for k, i in enumerate(items)])
    by = _by(compute_all(human, None, llm, None, FAST))
    rate = by[("failure_rate", "all", "m", "t")]
    assert rate.value == pytest.approx(0.1) and rate.details["ok_without_value"] == 1


# ------------------------------------------------------------------------------------- finding 8: tie rule, views


def _tied_data(n_items: int = 40, seed: int = 1):
    """Four annotators per item with 0/1 ratings (many 2-2 ties); the LLM's samples are the same four ratings."""
    rng = np.random.default_rng(seed)
    items = [f"i{i:02d}" for i in range(n_items)]
    ratings = (rng.random((n_items, 4)) < 0.5).astype(float)
    human = _human_frame(ratings, items, ["a0", "a1", "a2", "a3"])
    rows = []
    for template, order in (("mc_ab", "ab"), ("mc_ba", "ba")):
        for i in range(n_items):
            for s in range(4):
                rows.append((items[i], "m", template, s, ratings[i, s], np.nan, "ok", "mc", order))
    llm = pd.DataFrame(rows, columns=["item_id", "model", "template", "sample_index", "value", "weighted_value",
                                      "parse_status", "template_family", "option_order"])
    return human, llm, ratings, items


@pytest.mark.parametrize("basis", ["vote", "mean"])
def test_finding8_binary_view_compares_like_with_like(basis):
    """An LLM that reproduces the people exactly agrees perfectly, whatever the ties (was F1 0.717)."""
    human, llm, ratings, items = _tied_data()
    n_ties = int(np.sum(ratings.sum(axis=1) == 2))
    assert n_ties >= 5
    meta = pd.DataFrame({"item_id": items, "expert_label": np.where(ratings.mean(axis=1) >= 0.5, "Yes", "No")})
    by = _by(compute_all(human, None, llm, meta, SuiteOptions(n_resamples=20, n_permutations=20,
                                                               binary_basis=basis)))
    acc = by[("accuracy_vs_majority", "all", "m", "mc_ab")]
    assert acc.value == 1.0 and by[("f1_vs_majority", "all", "m", "mc_ab")].value == 1.0
    assert acc.details["n_reference_ties"] == n_ties and acc.details["basis"] == basis
    assert by[("cohen_kappa_binary_vs_majority", "all", "m", "mc_ab")].value == pytest.approx(1.0)
    assert by[("cohen_kappa_binary_vs_expert", "all", "m", "mc_ab")].value == pytest.approx(1.0)
    # one tie rule: format consistency and position bias read the same verdicts (identical templates agree)
    assert by[("format_consistency_cs", "all", "m", "mc_ab|mc_ba")].value == 1.0
    assert by[("format_consistency_css", "all", "m", "mc_ab|mc_ba")].value == 1.0
    assert by[("position_bias_flip_rate", "all", "m", "mc_ab|mc_ba")].value == 0.0


def test_finding8_vote_tie_counts_as_positive():
    from accord.analysis.binary import vote_verdicts
    share, verdict = vote_verdicts(np.array([[0.0, 1.0], [0.0, 0.0], [1.0, np.nan], [np.nan, np.nan]]), 0.5)
    np.testing.assert_array_equal(share, [0.5, 0.0, 1.0, np.nan])
    np.testing.assert_array_equal(verdict, [1.0, 0.0, 1.0, np.nan])


def test_finding8_position_bias_has_a_direction_and_a_test():
    from accord.analysis.consistency import position_bias
    from scipy import stats
    rng = np.random.default_rng(0)
    a = (rng.random(100) < 0.4).astype(float)
    b = a.copy()
    shift = np.flatnonzero(a == 0)[:10]                    # planted: 10 items move to "unsafe" in order b
    b[shift] = 1.0
    res = position_bias(a, b)
    assert (res.n_flipped, res.n_to_positive, res.n_to_negative) == (10, 10, 0)
    assert res.mcnemar_pvalue == pytest.approx(stats.binomtest(10, 10, 0.5).pvalue)       # 0.00195
    assert res.mcnemar_pvalue == pytest.approx(2 * 0.5 ** 10)
    b2 = a.copy()
    b2[shift[:5]] = 1.0
    b2[np.flatnonzero(a == 1)[:5]] = 0.0                   # the same flip rate without a direction
    sym = position_bias(a, b2)
    assert sym.flip_rate == res.flip_rate and sym.mcnemar_pvalue == pytest.approx(1.0)


def test_finding8_test_retest_n_is_items():
    human, llm, _, _ = _tied_data()
    by = _by(compute_all(human, None, llm, None, FAST))
    retest = by[("test_retest_r", "all", "m", "mc_ab")]
    assert retest.n == 40 and retest.details["n_sample_pairs"] == 6


def test_finding9_threshold_outside_the_scale_is_refused():
    rng = np.random.default_rng(2)
    items = [f"i{i}" for i in range(20)]
    ratings = rng.integers(1, 6, size=(20, 3)).astype(float)                 # a 1-5 scale
    human = _human_frame(ratings, items, ["a", "b", "c"])
    llm = _llm([(i, "m", "t", 0, float(rng.integers(1, 6)), np.nan, "ok") for i in items])
    by = _by(compute_all(human, None, llm, None, FAST))                       # default threshold 0.5
    acc = by[("accuracy_vs_majority", "all", "m", "t")]
    assert acc.value is None and "outside the rating scale [1, 5]" in acc.details["reason"]
    assert ("cohen_kappa_binary_vs_majority", "all", "m", "t") not in by
    ok = _by(compute_all(human, None, llm, None, SuiteOptions(n_resamples=20, n_permutations=20,
                                                                binary_threshold=3.5)))
    assert ok[("accuracy_vs_majority", "all", "m", "t")].value is not None


def test_finding8_jsd_splits_a_value_halfway_between_levels():
    from accord.analysis.distribution import label_distribution, level_weights
    domain = np.array([0.0, 0.5, 1.0])
    table = label_distribution(np.array([0, 1, 2, 3]), np.array([0.25, 0.75, 0.6, 1.0]), 4, domain)
    np.testing.assert_allclose(table, [[0.5, 0.5, 0.0],      # was "No"
                                       [0.0, 0.5, 0.5],      # was "Unsure"
                                       [0.0, 1.0, 0.0],      # nearest level
                                       [0.0, 0.0, 1.0]])
    assert level_weights(np.array([0.25, 0.75, 0.6]), domain)[3] == 2
    items = [f"i{k}" for k in range(10)]
    human = pd.DataFrame([{"item_id": i, "annotator_id": f"a{j}", "value": [0.0, 0.5][j % 2]}
                          for i in items for j in range(4)])                  # every item split No / Unsure
    llm = _llm([(i, "m", "t", 0, 0.25, np.nan, "ok") for i in items])
    jsd = _by(compute_all(human, None, llm, None, FAST))[("jsd_mean", "all", "m", "t")]
    assert jsd.value == pytest.approx(0.0, abs=1e-12) and jsd.details["n_tied_values"] == 10


# ------------------------------------------------------------------------------------- finding 8: personalisation


def test_finding8_persona_blind_control_scores_lower_within_bounds():
    from accord.analysis.synthetic import make_synthetic
    share, old = {}, {}
    for skill in (1.0, 0.0):                               # tracks its group / ignores the persona
        data = make_synthetic(n_items=80, n_annotators=40, attributes={"gender": ["Man", "Woman"]}, models=["m"],
                              templates=["t"], n_samples=3, personas=True, persona_skill=skill, group_effect=1.0,
                              seed=4, failure_rate=0.0)
        recs = [r for r in compute_all(*data, SuiteOptions(n_resamples=20, n_permutations=20))
                if r.name == "persona_within_human_bounds"]
        assert {r.slice for r in recs} == {"gender=Man", "gender=Woman"}
        share[skill] = np.mean([r.value for r in recs])
        old[skill] = np.mean([r.details["within_range_of_group_means"] for r in recs])
    assert share[1.0] > share[0.0] + 0.2, share            # 0.74 against 0.38
    assert old[0.0] >= old[1.0]                             # the range of group means rewarded the blind model


def test_persona_bounds_hand_computed():
    from accord.analysis.persona import persona_drift
    scores = np.array([[0.2, 0.8], [0.4, 0.4]])
    means = np.array([[0.1, 0.5], [0.3, 0.6]])
    se = np.array([[0.05, 0.1], [0.1, np.nan]])
    a, b = persona_drift(scores, means, own_group=np.array([0, 1]), group_se=se, z=1.0)
    # persona 0 (group 0): |0.2-0.1| = 0.1 > 0.05 out; |0.8-0.5| = 0.3 > 0.1 out
    assert (a.within_bounds_share, a.n) == (0.0, 2)
    # persona 1 (group 1): |0.4-0.3| = 0.1 <= 0.1 in; item 2 has no SE -> left out
    assert (b.within_bounds_share, b.n) == (1.0, 1)
    assert persona_drift(scores, means, 0.25, own_group=np.array([0, 1]), group_se=se, z=1.0)[0] \
        .within_bounds_share == 1.0


# ------------------------------------------------------------------------------------- finding 8: subject ranking


def test_finding8_subject_ranking_uses_one_item_set_for_humans_and_every_judge():
    items = [f"i{k}" for k in range(12)]
    subject = ["s1", "s2", "s3"] * 4
    harm = {"s1": 0.0, "s2": 1.0, "s3": 2.0}
    human = pd.DataFrame([{"item_id": i, "annotator_id": f"a{j}", "value": harm[subject[k]] + 0.1 * j + 0.05 * k}
                          for k, i in enumerate(items) for j in range(3)])
    rows = []
    for k, i in enumerate(items):
        rows.append((i, "j1", "t", 0, harm[subject[k]], np.nan, "ok"))
        # judge 2 fails on the first two items: they leave the comparison for everybody
        rows.append((i, "j2", "t", 0, np.nan if k < 2 else 2 - harm[subject[k]], np.nan,
                     "unparseable" if k < 2 else "ok"))
    meta = pd.DataFrame({"item_id": items, "subject_model": subject})
    recs = compute_all(human, None, _llm(rows), meta, FAST)
    humans = [r for r in recs if r.name == "subject_mean_harm" and r.model == ""]
    assert len(humans) == 3                                 # one human record per subject, not per judge
    by = {r.slice: r for r in humans}
    # computed on items 2..11 only: s1 items 3, 6, 9; s2 items 4, 7, 10; s3 items 2, 5, 8, 11
    expect_s3 = np.mean([2.0 + 0.1 + 0.05 * k for k in (2, 5, 8, 11)])
    assert by["subject_model=s3"].value == pytest.approx(expect_s3)
    assert by["subject_model=s3"].n == 4 and by["subject_model=s1"].n == 3
    taus = {r.model: r for r in recs if r.name == "subject_ranking_kendall_tau"}
    assert taus["j1"].value == pytest.approx(1.0) and taus["j2"].value == pytest.approx(-1.0)
    assert taus["j1"].details["human_mean"] == taus["j2"].details["human_mean"]
    assert taus["j1"].details["n_common_items"] == 10 and taus["j1"].details["n_judge_items_left_out"] == 2


def test_finding5_report_names_the_direction_of_a_low_gai():
    from accord.analysis.synthetic import make_synthetic

    from tests.unit.test_report import hand_made_report, row, run_frames_from

    frames = run_frames_from(*make_synthetic(n_items=12, n_annotators=8, models=["m"], templates=["t"],
                                             n_samples=1, seed=1))
    common = {"attribute": "gender", "group_size": 12, "null_quantiles": {"0.025": 1.0, "0.5": 1.1, "0.975": 1.2}}
    rows = [row("group_irr", 0.2, "gender=Woman", model="", template="", **common),
            row("group_xrr", 0.25, "gender=Woman", model="", template="", **common),
            row("group_gai", 0.8, "gender=Woman", model="", template="", p=0.002, p_adjusted_bh=0.004,
                direction="lower than random groups of the same size", **common)]
    data, _ = hand_made_report(rows, frames)
    reading = " ".join(data.readings["association"])
    assert "lower than random groups of the same size" in reading and "agree with each other less" in reading
    assert "two-sided" in reading


def test_finding3_report_lists_the_untested_group_with_size_and_reason():
    from accord.report.build import assemble_report, summarize_run

    from tests.unit.test_report import records_frame, run_fields, run_frames_from

    human, annotators, llm, items, _ = _gender_data()
    records = compute_all(human, annotators, llm, items, FAST)
    frames = run_frames_from(human, annotators, llm.assign(label=None, persona_key="", template_family="t",
                                                           option_order=""), items)
    data = assemble_report(summarize_run(run_fields(frames), frames), records_frame(records), frames)
    reading = " ".join(data.readings["groups"])
    assert "Not tested: Non-binary (1 annotator): 1 annotator, fewer than min_group_size=2" in reading
    assert "1 annotator has no known gender and belongs to no group" in reading
