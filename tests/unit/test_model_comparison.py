"""Model against model (issue 15): paired differences with a paired item bootstrap, Steiger's test / paired
permutation, Holm across pairs; a winner only when the interval excludes zero."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from accord.analysis.comparison import (
    PairedDifference,
    adjust_and_decide,
    paired_correlation_difference,
    paired_kappa_difference,
    steiger_z,
)
from accord.analysis.suite import SuiteOptions, compute_all
from scipy import stats


def test_steiger_hand_computed():
    # r(A,y) = 0.5, r(B,y) = 0.3, r(A,B) = 0.4, n = 100, by hand:
    # rm = 0.4; psi = 0.4 * 0.68 - 0.5 * 0.16 * (0.68 - 0.16) = 0.2304; c = 0.2304 / 0.84^2 = 0.326531
    # Z = (atanh 0.5 - atanh 0.3) * sqrt(97) / sqrt(2 - 2c) = 0.239786 * 9.848858 / 1.160577 = 2.03487
    res = steiger_z(0.5, 0.3, 0.4, 100)
    assert res.statistic == pytest.approx(2.03487, abs=1e-4)
    assert res.pvalue == pytest.approx(2 * stats.norm.sf(2.03487), abs=1e-5)
    assert res.pvalue == pytest.approx(0.04186, abs=1e-4)
    assert steiger_z(0.3, 0.5, 0.4, 100).statistic == pytest.approx(-res.statistic)
    # the more the raters correlate with each other, the more precise their difference
    assert steiger_z(0.5, 0.3, 0.8, 100).pvalue < res.pvalue
    with pytest.raises(ValueError):
        steiger_z(0.5, 0.3, 0.4, 3)


def test_paired_correlation_difference_values():
    rng = np.random.default_rng(0)
    y = rng.normal(size=80)
    a = y + rng.normal(0, 0.5, 80)
    b = y + rng.normal(0, 1.5, 80)
    a[3] = np.nan                                            # items must be shared: item 3 leaves both
    res = paired_correlation_difference(a, b, y, n_resamples=500, rng=np.random.default_rng(1), names=("a", "b"))
    ok = np.isfinite(a)
    ra, rb = stats.pearsonr(a[ok], y[ok]).statistic, stats.pearsonr(b[ok], y[ok]).statistic
    assert res.n == 79 and res.value_a == pytest.approx(ra) and res.value_b == pytest.approx(rb)
    assert res.difference == pytest.approx(ra - rb)
    assert res.ci_low < res.difference < res.ci_high and res.ci_low > 0
    assert res.pvalue == pytest.approx(steiger_z(ra, rb, np.corrcoef(a[ok], b[ok])[0, 1], 79).pvalue)


def test_paired_kappa_difference_hand_computed():
    ref = np.array([0, 1] * 10, dtype=float)
    a = ref.copy()                                           # kappa 1
    b = ref.copy()
    b[:8] = 1 - b[:8]                                        # 8 of 20 wrong, 4 on each side
    res = paired_kappa_difference(a, b, ref, np.array([0.0, 1.0]), n_resamples=300, n_permutations=999,
                                  rng=np.random.default_rng(0))
    # b's table: ref 0: 6 right, 4 wrong; ref 1: 6 right, 4 wrong; po = 12/20, pe = 0.5 -> kappa 0.2
    assert res.value_a == pytest.approx(1.0)
    assert res.value_b == pytest.approx((0.6 - 0.5) / 0.5)
    assert res.difference == pytest.approx(0.8)
    # only the 8 discordant items move under the swap: |null| >= 0.8 needs all 8 on one side, 2 / 2^8
    assert res.pvalue == pytest.approx(2 / 256, abs=0.006)
    assert res.ci_low > 0


def test_holm_and_winner_rule():
    def pd_(diff, lo, hi, p):
        return PairedDifference("A", "B", "pearson_r", 0, 0, diff, lo, hi, p, "t", 50)

    results = adjust_and_decide([pd_(0.2, 0.05, 0.35, 0.01), pd_(-0.1, -0.2, -0.01, 0.02),
                                 pd_(0.3, -0.05, 0.6, 0.001), pd_(0.05, -0.1, 0.2, 0.5)])
    # Holm: sorted p 0.001, 0.01, 0.02, 0.5 -> 0.004, 0.03, 0.04, 0.5
    np.testing.assert_allclose([r.pvalue_holm for r in results], [0.03, 0.04, 0.004, 0.5])
    assert [r.winner for r in results] == ["A", "B", None, None]   # third: interval includes zero


def _equal_raters(rng: np.random.Generator, n: int = 60):
    z = rng.normal(size=n)
    y = z + rng.normal(0, 0.5, n)
    a = z + rng.normal(0, 0.8, n)
    b = z + rng.normal(0, 0.8, n)
    return a, b, y


def test_null_simulation_two_equally_aligned_raters():
    """1,000 datasets of 100 items: Steiger's test, the interval and the winner rule keep their size."""
    rng = np.random.default_rng(11)
    steiger, ci_excl, winner, kappa = [], [], [], []
    for _ in range(1000):
        a, b, y = _equal_raters(rng, 100)
        r = paired_correlation_difference(a, b, y, n_resamples=300, rng=rng)
        excludes = r.ci_low > 0 or r.ci_high < 0
        steiger.append(r.pvalue < 0.05)
        ci_excl.append(excludes)
        winner.append(excludes and r.pvalue < 0.05)          # one pair: Holm = the raw p
    for _ in range(200):
        a, b, y = _equal_raters(rng)
        k = paired_kappa_difference((a > 0).astype(float), (b > 0).astype(float), (y > 0).astype(float),
                                    np.array([0.0, 1.0]), n_resamples=50, n_permutations=199, rng=rng)
        kappa.append(k.pvalue < 0.05)
    assert np.mean(steiger) <= 0.06, np.mean(steiger)       # 0.051
    assert np.mean(winner) <= 0.06, np.mean(winner)         # 0.048
    assert np.mean(ci_excl) <= 0.08, np.mean(ci_excl)       # percentile interval alone: 0.068
    assert np.mean(kappa) <= 0.06, np.mean(kappa)
    assert np.mean(steiger) >= 0.02 and np.mean(kappa) >= 0.01


def test_power_simulation_better_rater_wins():
    rng = np.random.default_rng(12)
    wins = []
    for _ in range(40):
        z = rng.normal(size=80)
        y = z + rng.normal(0, 0.5, 80)
        a = z + rng.normal(0, 0.4, 80)
        b = z + rng.normal(0, 1.6, 80)
        (res,) = adjust_and_decide([paired_correlation_difference(a, b, y, n_resamples=200, rng=rng,
                                                                  names=("a", "b"))])
        wins.append(res.winner == "a")
    assert np.mean(wins) >= 0.8


def test_suite_records_pairs_with_holm_and_winner():
    rng = np.random.default_rng(3)
    items = [f"i{k:02d}" for k in range(60)]
    z = rng.normal(size=60)
    human = pd.DataFrame([{"item_id": i, "annotator_id": f"a{j}", "value": float(z[k] + rng.normal(0, 0.7) > 0)}
                          for k, i in enumerate(items) for j in range(5)])
    rows = []
    for model, noise in (("good", 0.2), ("bad", 3.0), ("good2", 0.2)):
        for k, i in enumerate(items):
            rows.append({"item_id": i, "model": model, "template": "t", "sample_index": 0,
                         "value": float(z[k] + rng.normal(0, noise) > 0), "parse_status": "ok"})
    recs = compute_all(human, None, pd.DataFrame(rows), None, SuiteOptions(n_resamples=300, n_permutations=300))
    pairs = {(r.model, r.slice): r for r in recs if r.name == "paired_difference_pearson_r"}
    assert set(pairs) == {("bad", "vs good · t"), ("bad", "vs good2 · t"), ("good", "vs good2 · t")}
    bad_good = pairs[("bad", "vs good · t")]
    assert bad_good.value < 0 and bad_good.details["winner"] == "good · t"
    assert bad_good.details["p_adjusted_holm"] >= bad_good.pvalue and bad_good.details["n_pairs_adjusted"] == 3
    assert pairs[("good", "vs good2 · t")].details["winner"] is None
    assert any(r.name == "paired_difference_cohen_kappa" for r in recs)


def test_report_names_only_established_winners():
    from accord.report.build import assemble_report, render_html, summarize_run

    from tests.unit.test_report import records_frame, run_fields, run_frames_from

    rng = np.random.default_rng(3)
    items = [f"i{k:02d}" for k in range(60)]
    z = rng.normal(size=60)
    human = pd.DataFrame([{"item_id": i, "annotator_id": f"a{j}", "value": float(z[k] + rng.normal(0, 0.7) > 0)}
                          for k, i in enumerate(items) for j in range(5)])
    rows = []
    for model, noise in (("good", 0.2), ("bad", 3.0), ("good2", 0.2)):
        for k, i in enumerate(items):
            rows.append({"item_id": i, "model": model, "template": "t", "sample_index": 0,
                         "value": float(z[k] + rng.normal(0, noise) > 0), "weighted_value": np.nan, "label": None,
                         "parse_status": "ok", "persona_key": "", "template_family": "t", "option_order": ""})
    llm = pd.DataFrame(rows)
    recs = compute_all(human, None, llm, None, SuiteOptions(n_resamples=300, n_permutations=300))
    frames = run_frames_from(human, pd.DataFrame({"annotator_id": [f"a{j}" for j in range(5)]}), llm,
                             pd.DataFrame({"item_id": items}))
    data = assemble_report(summarize_run(run_fields(frames), frames), records_frame(recs), frames)
    html = render_html(data)
    reading = " ".join(data.readings["alignment"])
    assert "good · t over bad · t" in reading and "good2 · t over bad · t" in reading
    assert "good · t over good2" not in reading and "good2 · t over good · t" not in reading
    assert 'id="table-model-comparison"' in html


def test_identical_raters_give_a_reason_not_a_crash():
    y = np.arange(10.0)
    a = y + np.array([0.1, -0.1] * 5)
    with pytest.raises(ValueError, match="identical"):
        paired_correlation_difference(a, a.copy(), y)
    with pytest.raises(ValueError, match="perfect correlation"):
        steiger_z(1.0, 1.0, 1.0, 40)
