"""Format consistency (CS/CSS), self-consistency and position bias."""

import numpy as np
import pytest
from accord.analysis.consistency import format_consistency, position_flip_rate, self_consistency
from scipy import stats

NAN = np.nan


def test_format_consistency_hand_computed():
    a = np.array([1, 0, 1, 1, NAN, 0], dtype=float)
    b = np.array([1, 0, 0, 1, 1, 0], dtype=float)
    ref = np.array([1, 1, 1, 1, 0, NAN])
    res = format_consistency(a, b, ref)
    assert res.n == 5
    assert res.cs == pytest.approx(4 / 5)
    # with reference: items 0..3: agree&correct on 0 and 3
    assert res.n_with_reference == 4
    assert res.css == pytest.approx(2 / 4)
    assert format_consistency(a, b).css is None


def test_self_consistency():
    samples = np.array([
        [1.0, 1.0, 1.0],
        [0.0, 1.0, 0.0],
        [0.5, 0.5, NAN],
        [1.0, NAN, NAN],
        [0.0, 0.0, 0.5],
    ])
    res = self_consistency(samples)
    assert res.n_items == 4
    assert res.flip_rate == pytest.approx(2 / 4)
    # disagreeing ordered pairs: item 1: 4/6, item 4: 4/6, others 0
    assert res.mean_pairwise_disagreement == pytest.approx((4 / 6 + 4 / 6) / 4)
    rs = []
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        ok = np.isfinite(samples[:, i]) & np.isfinite(samples[:, j])
        rs.append(stats.pearsonr(samples[ok, i], samples[ok, j]).statistic)
    assert res.test_retest_r == pytest.approx(np.mean(rs))


def test_self_consistency_single_sample():
    res = self_consistency(np.array([[1.0], [0.0], [1.0]]))
    assert np.isnan(res.test_retest_r) and np.isnan(res.flip_rate)


def test_position_flip_rate():
    res = position_flip_rate(np.array([1, 0, 0.5, NAN]), np.array([1, 1, 0.5, 0]))
    assert (res.n, res.n_flipped) == (3, 1)
    assert res.flip_rate == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        position_flip_rate(np.array([NAN]), np.array([1.0]))
