"""Correlations in weight form against scipy, bootstrap intervals, masked column correlations."""

import numpy as np
import pytest
from accord.analysis.correlation import (
    METHODS,
    WeightedCorrelation,
    correlation_with_ci,
    masked_pearson_columns,
    paired_column_pearson,
    two_way_bootstrap_correlation,
    weighted_ranks,
)
from accord.analysis.resampling import derive_rng, resample_counts
from scipy import stats

SCIPY = {"pearson": stats.pearsonr, "spearman": stats.spearmanr, "kendall": stats.kendalltau}


def _tied_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, n).astype(float)
    y = np.round(x + rng.normal(0, 2, n))
    return x, y


@pytest.mark.parametrize("method", METHODS)
def test_weighted_statistic_with_unit_weights_equals_scipy(method):
    x, y = _tied_data()
    got = WeightedCorrelation(x, y, method)(np.ones((1, x.size)))[0]
    assert got == pytest.approx(SCIPY[method](x, y).statistic, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_weighted_statistic_with_counts_equals_statistic_of_resampled_data(method):
    x, y = _tied_data(seed=1)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, x.size, size=(6, x.size))
    counts = np.stack([np.bincount(i, minlength=x.size) for i in idx]).astype(float)
    got = WeightedCorrelation(x, y, method)(counts)
    expected = [SCIPY[method](x[i], y[i]).statistic for i in idx]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_weighted_ranks_match_rankdata_of_resample():
    x = np.array([3.0, 1.0, 3.0, 2.0, 5.0])
    idx = np.array([0, 0, 1, 2, 4])
    w = np.bincount(idx, minlength=5).astype(float)[None, :]
    ranks = weighted_ranks(w, x)[0]
    expected = stats.rankdata(x[idx])
    # each drawn copy of item i has rank ranks[i]
    np.testing.assert_allclose(ranks[idx], expected)


def test_resample_counts_rows_sum_to_n_and_are_seeded():
    a = resample_counts(7, 50, derive_rng(3, "x"))
    b = resample_counts(7, 50, derive_rng(3, "x"))
    assert a.shape == (50, 7)
    assert np.all(a.sum(axis=1) == 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, resample_counts(7, 50, derive_rng(4, "x")))


@pytest.mark.parametrize("method", METHODS)
def test_ci_close_to_scipy_bootstrap(method):
    rng = np.random.default_rng(2)
    x = rng.normal(size=60)
    y = 0.6 * x + rng.normal(size=60)
    ours = correlation_with_ci(x, y, method, n_resamples=3000, seed=1)
    ref = stats.bootstrap((x, y), lambda a, b: SCIPY[method](a, b).statistic, paired=True,
                          vectorized=False, n_resamples=1500, method="BCa", random_state=0)
    assert ours.statistic == pytest.approx(SCIPY[method](x, y).statistic)
    assert ours.pvalue == pytest.approx(SCIPY[method](x, y).pvalue)
    assert ours.confidence_interval.low == pytest.approx(ref.confidence_interval.low, abs=0.04)
    assert ours.confidence_interval.high == pytest.approx(ref.confidence_interval.high, abs=0.04)
    assert ours.confidence_interval.low < ours.statistic < ours.confidence_interval.high


def test_percentile_ci_and_nan_pairs_dropped():
    rng = np.random.default_rng(3)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    x[:5] = np.nan
    y[-3:] = np.nan
    res = correlation_with_ci(x, y, "pearson", n_resamples=500, ci_method="percentile")
    ok = np.isfinite(x) & np.isfinite(y)
    assert res.n == 42
    assert res.statistic == pytest.approx(stats.pearsonr(x[ok], y[ok]).statistic)
    assert res.confidence_interval.low < res.statistic < res.confidence_interval.high


def test_same_seed_same_interval():
    x, y = _tied_data(seed=4)
    a = correlation_with_ci(x, y, "spearman", n_resamples=300, seed=9)
    b = correlation_with_ci(x, y, "spearman", n_resamples=300, seed=9)
    assert a.confidence_interval == b.confidence_interval


@pytest.mark.parametrize(
    "x, y, reason",
    [
        ([1.0, 2.0], [2.0, 3.0], "fewer than 3"),
        ([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0], "constant LLM"),
        ([1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5], "constant human"),
        ([np.nan] * 4, [1.0, 2.0, 3.0, 4.0], "fewer than 3"),
    ],
)
def test_undefined_correlations_give_nan_and_reason(x, y, reason):
    res = correlation_with_ci(np.array(x), np.array(y), "pearson", n_resamples=100)
    assert np.isnan(res.statistic)
    assert reason in res.reason


def test_unknown_method_is_a_value_error():
    with pytest.raises(ValueError, match="unknown correlation method"):
        correlation_with_ci(np.arange(5.0), np.arange(5.0), "cosine")


def test_masked_pearson_columns_matches_scipy_pairwise_complete():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 3))
    y = x[:, :2] @ rng.normal(size=(2, 4)) + rng.normal(size=(30, 4))
    x[rng.random(x.shape) < 0.2] = np.nan
    y[rng.random(y.shape) < 0.2] = np.nan
    r, n = masked_pearson_columns(x, y)
    for a in range(3):
        for b in range(4):
            ok = np.isfinite(x[:, a]) & np.isfinite(y[:, b])
            assert n[a, b] == ok.sum()
            assert r[a, b] == pytest.approx(stats.pearsonr(x[ok, a], y[ok, b]).statistic, abs=1e-10)


def test_masked_pearson_constant_column_is_nan():
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = np.array([[2.0, 1.0], [2.0, 3.0], [2.0, 2.0], [2.0, 5.0]])
    r, _ = masked_pearson_columns(x, y)
    assert np.isnan(r[0, 0])
    assert r[0, 1] == pytest.approx(stats.pearsonr(x[:, 0], y[:, 1]).statistic)


def test_paired_column_pearson():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(20, 5))
    y = x + rng.normal(size=(20, 5))
    y[:3, 0] = np.nan
    r, n = paired_column_pearson(x, y)
    assert n[0] == 17
    assert r[0] == pytest.approx(stats.pearsonr(x[3:, 0], y[3:, 0]).statistic)
    assert r[4] == pytest.approx(stats.pearsonr(x[:, 4], y[:, 4]).statistic)


@pytest.mark.parametrize("method", METHODS)
def test_two_way_bootstrap_statistic_and_interval(method):
    rng = np.random.default_rng(7)
    z = rng.normal(size=40)
    ratings = z[:, None] + rng.normal(size=(40, 12))
    ratings[rng.random(ratings.shape) < 0.3] = np.nan
    s = z + rng.normal(0, 0.5, size=40)
    res = two_way_bootstrap_correlation(s, ratings, method, n_resamples=400, seed=1)
    mean = np.nanmean(ratings, axis=1)
    assert res.statistic == pytest.approx(SCIPY[method](s, mean).statistic)
    lo, hi = res.confidence_interval
    assert -1 <= lo < hi <= 1
    # the two-way interval also reflects annotator sampling: at least as wide as the item bootstrap
    item_only = correlation_with_ci(s, mean, method, n_resamples=400, seed=1, ci_method="percentile")
    assert hi - lo >= 0.8 * (item_only.confidence_interval.high - item_only.confidence_interval.low)
