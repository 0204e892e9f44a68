"""Predicting group differences with persona-conditioned LLM ratings.

If an LLM asked to answer "as a woman" and "as a man" (persona keys ``gender=Woman``,
``gender=Man``) is a usable model of how these groups differ, its predicted gap f_G1 - f_G2 should
track the observed gap mu_G1 - mu_G2 across items. Two views, after Santurkar et al. 2023 and
Movva, Koh & Pierson 2024 ("Annotation alignment", which asks whether LLMs predict demographic rating
differences on DICES):

- Pearson r between predicted and observed gaps over all items (bootstrap interval);
- on the items where the groups really differ (|observed gap| > threshold): does the persona rating
  move in the right direction? Share of items with sign(predicted) = sign(observed), a one-sided sign
  test (scipy.stats.binomtest, H1: more than half right) and a one-sided Wilcoxon signed-rank test of
  the predicted gap oriented by the observed sign (scipy.stats.wilcoxon).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from accord.analysis.correlation import correlation_with_ci
from accord.analysis.results import CorrelationResult
from scipy import stats


@dataclass
class PersonaGapResult:
    correlation: CorrelationResult
    n_large_gap: int  # items with |observed gap| > threshold and a predicted gap
    direction_accuracy: float  # among those with a non-zero predicted gap
    n_right: int
    n_wrong: int
    sign_test_pvalue: float
    wilcoxon_pvalue: float
    mean_oriented_gap: float  # mean of predicted gap * sign(observed gap) on large-gap items


def persona_gap_prediction(
    persona_g1: np.ndarray,
    persona_g2: np.ndarray,
    human_g1: np.ndarray,
    human_g2: np.ndarray,
    gap_threshold: float = 0.2,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    rng: np.random.Generator | None = None,
) -> PersonaGapResult:
    """Compare predicted (persona) and observed (human group) gaps item by item.

    All four inputs are per-item arrays on the same items (NaN = missing)."""
    arrays = [np.asarray(a, dtype=float) for a in (persona_g1, persona_g2, human_g1, human_g2)]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"per-item arrays differ in shape: {[a.shape for a in arrays]}")
    predicted = arrays[0] - arrays[1]
    observed = arrays[2] - arrays[3]
    corr = correlation_with_ci(predicted, observed, "pearson", n_resamples=n_resamples,
                               confidence_level=confidence_level, rng=rng)
    large = np.isfinite(predicted) & np.isfinite(observed) & (np.abs(observed) > gap_threshold)
    oriented = predicted[large] * np.sign(observed[large])
    n_right = int(np.sum(oriented > 0))
    n_wrong = int(np.sum(oriented < 0))
    nan = float("nan")
    if n_right + n_wrong > 0:
        accuracy = n_right / (n_right + n_wrong)
        sign_p = float(stats.binomtest(n_right, n_right + n_wrong, 0.5, alternative="greater").pvalue)
        wilcoxon_p = float(stats.wilcoxon(oriented[oriented != 0], alternative="greater").pvalue)
    else:
        accuracy = sign_p = wilcoxon_p = nan
    return PersonaGapResult(
        correlation=corr,
        n_large_gap=int(large.sum()),
        direction_accuracy=accuracy,
        n_right=n_right,
        n_wrong=n_wrong,
        sign_test_pvalue=sign_p,
        wilcoxon_pvalue=wilcoxon_p,
        mean_oriented_gap=float(oriented.mean()) if oriented.size else nan,
    )
