"""Annotator leave-one-out baseline and the LLM's percentile."""

import numpy as np
import pytest
from accord.analysis.baseline import annotator_agreement, baseline_details
from scipy import stats

NAN = np.nan


def test_leave_one_out_r_hand_computed():
    ratings = np.array([
        [1.0, 1.0, 0.0],
        [0.0, 0.0, 0.0],
        [1.0, 0.0, 1.0],
        [0.0, 1.0, NAN],
        [1.0, 1.0, 1.0],
    ])
    res = annotator_agreement(ratings, ["a", "b", "c"])
    for j in range(3):
        rated = np.isfinite(ratings[:, j])
        others = np.delete(ratings, j, axis=1)
        loo = np.nanmean(others, axis=1)
        ok = rated & np.isfinite(loo)
        assert res.r[j] == pytest.approx(stats.pearsonr(ratings[ok, j], loo[ok]).statistic)
    assert res.median == pytest.approx(np.median(res.r))
    assert res.n_items.tolist() == [5, 5, 4]


def test_full_mean_option_is_higher():
    rng = np.random.default_rng(0)
    ratings = rng.normal(size=(30, 6)) + rng.normal(size=(30, 1))
    loo = annotator_agreement(ratings, leave_one_out=True)
    full = annotator_agreement(ratings, leave_one_out=False)
    assert np.all(full.r > loo.r)


def test_constant_annotator_and_sparse_items_are_nan_not_crash():
    ratings = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0],
                        [NAN, 1.0, NAN]])
    res = annotator_agreement(ratings)
    assert np.isnan(res.r[0])  # constant ratings
    assert res.n_defined == 2
    assert res.n_items[1] == 4  # the item only b rated has no leave-one-out mean


def test_percentile_of_with_ties():
    ratings = np.random.default_rng(1).normal(size=(20, 4)) + np.arange(20)[:, None]
    res = annotator_agreement(ratings)
    res.r = np.array([0.1, 0.2, 0.2, 0.4])
    assert res.percentile_of(0.2) == pytest.approx(100 * (1 + 0.5 * 2) / 4)
    assert res.percentile_of(1.0) == 100.0
    assert np.isnan(res.percentile_of(np.nan))


def test_details_are_distribution_summaries():
    ratings = np.random.default_rng(2).normal(size=(25, 8)) + np.random.default_rng(3).normal(size=(25, 1))
    det = baseline_details(annotator_agreement(ratings))
    assert set(det["quantiles"]) >= {"0.25", "0.5", "0.75"}
    assert sum(det["histogram"]["counts"]) == 8
    assert det["iqr"] == pytest.approx(det["q75"] - det["q25"])


def test_bad_shape_is_value_error():
    with pytest.raises(ValueError, match="2-d"):
        annotator_agreement(np.zeros(4))
