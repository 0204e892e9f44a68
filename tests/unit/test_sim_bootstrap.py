"""Simulations: coverage of the bootstrap confidence intervals."""

import numpy as np
from accord.analysis.correlation import correlation_with_ci

RHO = 0.5
N = 40


def _coverage(method, truth, n_sims, ci_method, seed):
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, RHO], [RHO, 1.0]])
    hits = 0
    for _ in range(n_sims):
        x, y = rng.multivariate_normal([0, 0], cov, size=N).T
        res = correlation_with_ci(x, y, method, n_resamples=400, rng=rng, ci_method=ci_method)
        hits += res.confidence_interval.low <= truth <= res.confidence_interval.high
    return hits / n_sims


def test_pearson_bca_coverage_near_95():
    coverage = _coverage("pearson", RHO, 200, "bca", 1)
    assert 0.88 <= coverage <= 0.99, coverage


def test_pearson_percentile_coverage_near_95():
    coverage = _coverage("pearson", RHO, 200, "percentile", 2)
    assert 0.88 <= coverage <= 0.99, coverage


def test_spearman_bca_coverage_near_95():
    truth = 6 / np.pi * np.arcsin(RHO / 2)  # Spearman's rho of a bivariate normal
    coverage = _coverage("spearman", truth, 200, "bca", 3)
    assert 0.88 <= coverage <= 0.99, coverage


def test_kendall_bca_coverage_near_95():
    truth = 2 / np.pi * np.arcsin(RHO)  # Kendall's tau of a bivariate normal
    coverage = _coverage("kendall", truth, 200, "bca", 4)
    assert 0.88 <= coverage <= 0.99, coverage
