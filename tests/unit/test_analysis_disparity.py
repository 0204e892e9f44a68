"""Group correlations, permutation tests, idiosyncratic variation, minimum detectable difference."""

import numpy as np
import pytest
from accord.analysis.disparity import (
    GroupMeanCalculator,
    group_correlation_test,
    idiosyncratic_variation,
    membership_matrix,
    min_detectable_difference,
)
from accord.analysis.resampling import benjamini_hochberg, label_permutations, permutation_pvalue
from scipy import stats


def _data(seed=0, n_items=40, n_ann=16):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n_items)
    ratings = z[:, None] + rng.normal(size=(n_items, n_ann))
    ratings[rng.random(ratings.shape) < 0.25] = np.nan
    scores = np.column_stack([z + rng.normal(0, 0.5, n_items), rng.normal(size=n_items)])
    labels = np.array([0, 1, 2, -1] * (n_ann // 4))
    return scores, ratings, labels


def test_membership_matrix():
    m = membership_matrix(np.array([[0, 1, -1], [1, 1, 0]]), 2)
    np.testing.assert_array_equal(m, [[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 0]])


def test_label_permutations_keep_group_sizes():
    labels = np.array([0, 0, 1, 1, 1, 2])
    perms = label_permutations(labels, 100, np.random.default_rng(0))
    assert perms.shape == (100, 6)
    for row in perms:
        assert sorted(row) == sorted(labels)
    assert len({tuple(r) for r in perms}) > 10


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_group_means_sparse_and_dense_agree():
    _, ratings, labels = _data()
    calc = GroupMeanCalculator(ratings, labels)
    gm = calc.means(labels[labels >= 0][None, :], 3)
    for g in range(3):
        expected = np.nanmean(np.where(np.isfinite(ratings[:, labels == g]), ratings[:, labels == g], np.nan), axis=1)
        np.testing.assert_allclose(gm.mean[:, g], expected, equal_nan=True)
        rest = ratings[:, (labels >= 0) & (labels != g)]
        np.testing.assert_allclose(gm.rest[:, g], np.nanmean(rest, axis=1), equal_nan=True)
    sparse_ratings = ratings.copy()
    sparse_ratings[np.random.default_rng(1).random(ratings.shape) < 0.7] = np.nan
    calc_sparse = GroupMeanCalculator(sparse_ratings, labels)
    from scipy import sparse
    assert sparse.issparse(calc_sparse.values)
    gm_sparse = calc_sparse.means(labels[labels >= 0][None, :], 3)
    expected = np.nanmean(np.where(labels == 0, sparse_ratings, np.nan), axis=1)
    np.testing.assert_allclose(gm_sparse.mean[:, 0], expected, equal_nan=True)


def test_group_correlation_test_observed_values():
    scores, ratings, labels = _data()
    res = group_correlation_test(scores, ratings, labels, 3, n_permutations=99,
                                 rng=np.random.default_rng(0))
    assert res.group_r.shape == (2, 3)
    assert res.null_difference.shape == (99, 2, 3)
    for g in range(3):
        mu = np.nanmean(np.where(labels == g, ratings, np.nan), axis=1)
        ok = np.isfinite(mu)
        assert res.group_r[0, g] == pytest.approx(stats.pearsonr(scores[ok, 0], mu[ok]).statistic)
        assert res.n_items[0, g] == ok.sum()
    # the gap is size-adjusted: range of r_G minus the mean r_G of random groups of the same size
    assert res.raw_gap[0] == pytest.approx(res.group_r[0].max() - res.group_r[0].min())
    excess = res.group_r[0] - res.null_mean_r[0]
    assert res.gap[0] == pytest.approx(excess.max() - excess.min())
    assert np.all((res.difference_pvalue >= 0.01) & (res.difference_pvalue <= 1))
    assert res.gap_pvalue.shape == (2,)


def test_group_correlation_test_is_seeded():
    scores, ratings, labels = _data(seed=3)
    a = group_correlation_test(scores, ratings, labels, 3, 50, np.random.default_rng(7))
    b = group_correlation_test(scores, ratings, labels, 3, 50, np.random.default_rng(7))
    np.testing.assert_array_equal(a.gap_pvalue, b.gap_pvalue)
    np.testing.assert_array_equal(a.null_gap, b.null_gap)


def test_group_correlation_test_rejects_single_group():
    scores, ratings, labels = _data()
    with pytest.raises(ValueError, match="two groups"):
        group_correlation_test(scores, ratings, labels, 1)


def test_permutation_pvalue_and_bh():
    null = np.array([[0.1], [0.5], [-0.9], [0.2]])
    assert permutation_pvalue(np.array([0.5]), null)[0] == pytest.approx(3 / 5)
    assert permutation_pvalue(np.array([0.5]), null, "greater")[0] == pytest.approx(2 / 5)
    p = np.array([0.01, 0.04, np.nan, 0.03])
    adj = benjamini_hochberg(p)
    np.testing.assert_allclose(adj[[0, 1, 3]], stats.false_discovery_control([0.01, 0.04, 0.03]))
    assert np.isnan(adj[2])


def test_idiosyncratic_variation():
    r = np.array([0.1, 0.3, 0.5, 0.7, np.nan, 0.2])
    labels = np.array([0, 0, 1, 1, 1, -1])
    res = idiosyncratic_variation(r, labels, ["g=a", "g=b"])
    assert res.sd_all == pytest.approx(np.std([0.1, 0.3, 0.5, 0.7], ddof=1))
    assert res.sd_within == pytest.approx(np.std([0.1, 0.3], ddof=1))
    assert res.group_n == {"g=a": 2, "g=b": 2}
    with pytest.raises(ValueError):
        idiosyncratic_variation(np.array([0.1, np.nan]), np.array([0, 1]), ["a", "b"])


def test_min_detectable_difference_formula():
    res = min_detectable_difference(0.0, 103, 103)
    expected_dz = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * np.sqrt(2 / 100)
    assert res.delta_z == pytest.approx(expected_dz)
    assert res.delta_r == pytest.approx(2 * np.tanh(expected_dz / 2))
    assert min_detectable_difference(0.5, 1003, 1003).delta_r < res.delta_r
    with pytest.raises(ValueError, match="more than 3"):
        min_detectable_difference(0.3, 3, 50)
