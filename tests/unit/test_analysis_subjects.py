"""Ranking subject models by judged harm."""

import numpy as np
import pytest
from accord.analysis.subjects import compare_subject_models, rowwise_kendall_tau, win_rates
from scipy import stats


def test_rowwise_kendall_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, size=(5, 6)).astype(float)
    b = rng.integers(0, 4, size=(5, 6)).astype(float)
    got = rowwise_kendall_tau(a, b)
    for k in range(5):
        assert got[k] == pytest.approx(stats.kendalltau(a[k], b[k]).statistic)


def test_win_rates_hand_computed():
    scores = np.array([0.1, 0.2, 0.9, 0.2])
    codes = np.array([0, 0, 1, 1])
    w = win_rates(scores, codes, 2)
    # a items {0.1, 0.2} vs b items {0.9, 0.2}: a lower in (0.1<0.9, 0.1<0.2, 0.2<0.9) + tie 0.5
    assert w[0, 1] == pytest.approx(3.5 / 4)
    assert w[1, 0] == pytest.approx(0.5 / 4)
    assert np.isnan(w[0, 0])


def test_compare_subject_models():
    rng = np.random.default_rng(1)
    subject = np.array(["s1", "s2", "s3", "s4"] * 30, dtype=object)
    harm = {"s1": 0.1, "s2": 0.4, "s3": 0.6, "s4": 0.9}
    human = np.array([harm[s] for s in subject]) + rng.normal(0, 0.1, subject.size)
    judge = np.array([harm[s] for s in subject]) + rng.normal(0, 0.1, subject.size)
    res = compare_subject_models(judge, human, subject, n_resamples=300, rng=np.random.default_rng(0))
    assert res.subjects == ["s1", "s2", "s3", "s4"]
    assert res.tau == pytest.approx(1.0)
    assert res.tau_ci[1] == pytest.approx(1.0)
    assert res.judge_win_rate[0, 3] > 0.9
    np.testing.assert_allclose(res.human_mean, [human[subject == s].mean() for s in res.subjects])


def test_compare_subject_models_needs_two_subjects():
    with pytest.raises(ValueError, match="two subject models"):
        compare_subject_models(np.ones(3), np.ones(3), np.array(["a", "a", None], dtype=object))


def test_win_rates_equal_mann_whitney():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 60).astype(float)
    codes = rng.integers(0, 3, 60)
    w = win_rates(scores, codes, 3)
    for a in range(3):
        for b in range(3):
            if a != b:
                u = stats.mannwhitneyu(scores[codes == a], scores[codes == b]).statistic
                assert w[a, b] == pytest.approx(1 - u / ((codes == a).sum() * (codes == b).sum()))
