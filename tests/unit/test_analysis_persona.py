"""Predicting group differences from persona ratings."""

import numpy as np
import pytest
from accord.analysis.persona import persona_gap_prediction
from scipy import stats


def test_persona_gap_prediction_good_and_bad_models():
    rng = np.random.default_rng(0)
    n = 80
    true_gap = rng.normal(0, 0.4, n)
    mu_a = rng.random(n)
    mu_b = mu_a - true_gap
    good = persona_gap_prediction(mu_a + rng.normal(0, 0.05, n), mu_b + rng.normal(0, 0.05, n),
                                  mu_a, mu_b, 0.2, n_resamples=200, rng=np.random.default_rng(1))
    assert good.correlation.statistic > 0.8
    assert good.direction_accuracy > 0.9
    assert good.sign_test_pvalue < 0.001 and good.wilcoxon_pvalue < 0.001
    large = np.abs(true_gap) > 0.2
    assert good.n_large_gap == large.sum()
    k = good.n_right
    assert good.sign_test_pvalue == pytest.approx(
        stats.binomtest(k, good.n_right + good.n_wrong, 0.5, alternative="greater").pvalue)
    flipped = persona_gap_prediction(mu_b, mu_a, mu_a, mu_b, 0.2, n_resamples=200)
    assert flipped.direction_accuracy == 0.0
    assert flipped.sign_test_pvalue > 0.99


def test_persona_gap_no_large_gaps():
    x = np.linspace(0, 1, 10)
    res = persona_gap_prediction(x, x, x, x + 0.01, 0.2, n_resamples=50)
    assert res.n_large_gap == 0 and np.isnan(res.direction_accuracy)
    assert res.correlation.reason is not None  # constant predicted/observed gaps
