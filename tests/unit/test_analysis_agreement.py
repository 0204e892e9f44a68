"""Krippendorff's alpha, delta alpha, Cohen's and Fleiss' kappa, IRR/XRR/GAI."""

import krippendorff
import numpy as np
import pytest
from accord.analysis.agreement import (
    cohen_kappa,
    delta_alpha,
    fleiss_kappa,
    interval_alpha,
    krippendorff_alpha,
    snap_to_domain,
)
from accord.analysis.association import (
    alpha_from_counts,
    cross_replication_reliability,
    group_association,
)

NAN = np.nan
# the example of the krippendorff package / Krippendorff (2011): 3 coders x 15 units
RELIABILITY = np.array([
    [NAN, NAN, NAN, NAN, NAN, 3, 4, 1, 2, 1, 1, 3, 3, NAN, 3],
    [1, NAN, 2, 1, 3, 3, 4, 3, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
    [NAN, NAN, 2, 1, 3, 4, 4, NAN, 2, 1, 1, 3, 3, NAN, 4],
])


def test_krippendorff_reference_values():
    items_by_raters = RELIABILITY.T
    assert krippendorff_alpha(items_by_raters, "nominal") == pytest.approx(0.691358, abs=1e-6)
    assert krippendorff_alpha(items_by_raters, "interval") == pytest.approx(0.810845, abs=1e-6)


def test_ordinal_alpha_uses_full_value_domain():
    data = RELIABILITY.T
    with_domain = krippendorff_alpha(data, "ordinal", np.array([1.0, 2, 3, 4, 5]))
    ref = krippendorff.alpha(reliability_data=RELIABILITY, level_of_measurement="ordinal",
                             value_domain=[1, 2, 3, 4, 5])
    assert with_domain == pytest.approx(ref)
    # ordinal distances depend on category frequencies, so unused categories do not change alpha
    assert with_domain == pytest.approx(krippendorff_alpha(data, "ordinal"))
    with pytest.raises(ValueError, match="outside the value domain"):
        krippendorff_alpha(data, "ordinal", np.array([1.0, 2.0, 3.0]))


def test_alpha_undefined_cases_raise():
    with pytest.raises(ValueError, match="same value"):
        krippendorff_alpha(np.ones((4, 3)), "nominal")
    with pytest.raises(ValueError, match="two ratings"):
        krippendorff_alpha(np.array([[1.0, NAN], [NAN, 0.0]]), "interval")
    with pytest.raises(ValueError, match="unknown level"):
        krippendorff_alpha(RELIABILITY.T, "cardinal")


def test_delta_alpha_perfect_llm_raises_alpha():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 40).astype(float)
    ratings = np.where(rng.random((40, 6)) < 0.7, truth[:, None], rng.integers(0, 3, (40, 6)))
    good = delta_alpha(ratings, truth, "nominal", np.array([0.0, 1.0, 2.0]))
    bad = delta_alpha(ratings, rng.integers(0, 3, 40).astype(float), "nominal", np.array([0.0, 1, 2]))
    assert good.delta > 0 > bad.delta
    joined = np.column_stack([ratings, truth])
    assert good.alpha_with_llm == pytest.approx(
        krippendorff.alpha(reliability_data=joined.T, level_of_measurement="nominal"))
    with pytest.raises(ValueError, match="no parsed answer"):
        delta_alpha(ratings, np.full(40, NAN), "nominal")


def test_cohen_kappa_hand_computed():
    # 2x2 table [[20, 5], [10, 15]]: po = 0.7, pe = 0.5 -> kappa 0.4
    a = np.array([0] * 25 + [1] * 25, dtype=float)
    b = np.array([0] * 20 + [1] * 5 + [0] * 10 + [1] * 15, dtype=float)
    res = cohen_kappa(a, b, np.array([0.0, 1.0]))
    assert res.statistic == pytest.approx(0.4)
    assert res.n == 50
    assert res.confidence_interval[0] < 0.4 < res.confidence_interval[1]


def test_weighted_cohen_kappa_hand_computed():
    domain = np.array([0.0, 0.5, 1.0])
    table = np.array([[10, 3, 1], [2, 8, 4], [1, 2, 9]], dtype=float)
    a, b = [], []
    for i in range(3):
        for j in range(3):
            a += [domain[i]] * int(table[i, j])
            b += [domain[j]] * int(table[i, j])
    n = table.sum()
    w = np.abs(np.subtract.outer(np.arange(3), np.arange(3))) / 2.0
    expected = np.outer(table.sum(1), table.sum(0)) / n
    kw = 1 - (w * table).sum() / (w * expected).sum()
    res = cohen_kappa(np.array(a), np.array(b), domain, "linear")
    assert res.statistic == pytest.approx(kw)


def test_cohen_kappa_constant_identical_raters_is_value_error():
    with pytest.raises(ValueError, match="single, identical category"):
        cohen_kappa(np.zeros(5), np.zeros(5), np.array([0.0, 1.0]))


def test_fleiss_kappa_wikipedia_example():
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                       [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                       [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    ratings = np.array([np.repeat(np.arange(5.0), row) for row in counts])
    assert fleiss_kappa(ratings, np.arange(5.0)) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_needs_equal_counts():
    ratings = np.array([[0.0, 1.0, NAN], [1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="same number of ratings"):
        fleiss_kappa(ratings, np.array([0.0, 1.0]))


def test_snap_to_domain():
    got = snap_to_domain(np.array([0.1, 0.74, NAN, 0.26]), np.array([0.0, 0.5, 1.0]))
    np.testing.assert_array_equal(got, [0.0, 0.5, NAN, 0.5])


def _sparse_ratings(seed, n_items=30, n_raters=9, levels=3):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, levels, n_items)
    r = np.where(rng.random((n_items, n_raters)) < 0.6, truth[:, None],
                 rng.integers(0, levels, (n_items, n_raters))).astype(float)
    r[rng.random(r.shape) < 0.3] = NAN
    return r


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_alphas_equal_package(seed):
    r = _sparse_ratings(seed)
    assert interval_alpha(r) == pytest.approx(
        krippendorff.alpha(reliability_data=r.T, level_of_measurement="interval"), abs=1e-10)
    counts = np.stack([(r == v).sum(axis=1) for v in range(3)], axis=1)[:, None, :].astype(float)
    assert alpha_from_counts(counts)[0] == pytest.approx(
        krippendorff.alpha(reliability_data=r.T, level_of_measurement="nominal"), abs=1e-10)


@pytest.mark.parametrize("metric", ["interval", "nominal"])
def test_group_association_matches_reference_formulas(metric):
    r = _sparse_ratings(5, n_items=40, n_raters=12)
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, -1, 0, 1])
    res = group_association(r, labels, ["g=a", "g=b"], metric, n_permutations=50,
                            rng=np.random.default_rng(0))
    for g in (0, 1):
        inside = r[:, labels == g]
        rest = r[:, (labels != g) & (labels >= 0)]
        assert res.irr[g] == pytest.approx(
            krippendorff.alpha(reliability_data=inside.T, level_of_measurement=metric), abs=1e-10)
        assert res.xrr[g] == pytest.approx(cross_replication_reliability(inside, rest, metric), abs=1e-10)
        assert res.gai[g] == pytest.approx(res.irr[g] / res.xrr[g])
    assert res.null_gai.shape == (50, 2)
    assert np.all((res.gai_pvalue > 0) & (res.gai_pvalue <= 1))
    assert list(res.group_sizes) == [5, 6]


def test_group_association_detects_cohesive_group():
    rng = np.random.default_rng(1)
    n_items = 60
    z = rng.normal(size=n_items)
    view_a = z + 1.5 * rng.normal(size=n_items)  # group a shares an idiosyncratic view
    r = np.empty((n_items, 20))
    r[:, :10] = view_a[:, None] + 0.5 * rng.normal(size=(n_items, 10))
    r[:, 10:] = z[:, None] + 1.5 * rng.normal(size=(n_items, 10))
    labels = np.array([0] * 10 + [1] * 10)
    res = group_association(r, labels, ["g=a", "g=b"], "interval", 200, np.random.default_rng(2))
    assert res.gai[0] > 1.5
    assert res.gai_pvalue[0] < 0.05


def test_interval_alpha_of_continuous_scores_equals_package():
    rng = np.random.default_rng(9)
    r = rng.normal(size=(60, 5)) + rng.normal(size=(60, 1))
    r[rng.random(r.shape) < 0.2] = NAN
    ref = krippendorff.alpha(reliability_data=r.T, level_of_measurement="interval")
    assert krippendorff_alpha(r, "interval") == pytest.approx(ref, abs=1e-10)
