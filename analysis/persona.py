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

import warnings
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


@dataclass
class PersonaDriftResult:
    """How far one persona's ratings move, and whether they stay inside the bounds of its group."""

    mean_abs_drift: float      # mean over items of |f_p(i) - consensus(i)|
    within_bounds_share: float  # share of items with f_p(i) inside the bounds (see `persona_drift`)
    n: int                      # items with a persona rating, a consensus and bounds
    within_range_share: float = float("nan")  # share inside [min_G mu_G(i), max_G mu_G(i)] (the old bounds)
    mean_abs_error: float = float("nan")  # mean |f_p(i) - mu_g(i)| for the persona's own group g
    n_drift: int = 0            # items behind mean_abs_drift


def persona_drift(
    persona_scores: np.ndarray,
    group_means: np.ndarray,
    tolerance: float = 0.0,
    *,
    own_group: np.ndarray | None = None,
    group_se: np.ndarray | None = None,
    z: float = 1.96,
) -> list[PersonaDriftResult]:
    """Personalisation within bounds (after Kirk et al. 2024, "The benefits, risks and bounds of personalizing
    the alignment of large language models to individuals"): a persona-conditioned rater may move with the
    persona, but only inside bounds; the drift of persona p is its distance from the model's own consensus (the
    mean over its personas).

    Bounds. With ``own_group`` (the group index of each persona) and ``group_se`` (groups x items standard
    error of each group's mean rating), persona p of group g is within bounds on item i when
    |f_p(i) - mu_g(i)| <= z * SE_g(i) + ``tolerance``: the interval accounts for the raters behind the group's
    mean, and a persona that ignores its group (the consensus for everyone) falls outside it wherever the
    groups differ. Items where the group's SE is undefined (fewer than two of its raters) are left out.
    Without them (the earlier definition, kept as ``within_range_share``) the bounds of item i are the range
    [min_G mu_G(i), max_G mu_G(i)] widened by ``tolerance``: zero-width where only one group rated and wide
    where a few raters' means scatter, so a persona-blind model in the middle scores high.

    ``persona_scores``: personas x items (NaN: no parsed rating); ``group_means``: groups x items (NaN: no
    rating by that group). Returns one result per persona, in row order; n = 0 and NaN values where no item
    has everything."""
    scores = np.asarray(persona_scores, dtype=float)
    means = np.asarray(group_means, dtype=float)
    with warnings.catch_warnings():   # all-NaN columns (an item no persona or group rated) give NaN, as meant
        warnings.simplefilter("ignore", RuntimeWarning)
        consensus = np.nanmean(np.where(np.isfinite(scores), scores, np.nan), axis=0)
        lo = np.nanmin(means, axis=0) if means.size else np.full(scores.shape[1], np.nan)
        hi = np.nanmax(means, axis=0) if means.size else np.full(scores.shape[1], np.nan)
    use_own = own_group is not None and group_se is not None
    se = np.asarray(group_se, dtype=float) if use_own else None
    out = []
    nan = float("nan")
    for p, row in enumerate(scores):
        ok_range = np.isfinite(row) & np.isfinite(consensus) & np.isfinite(lo) & np.isfinite(hi)
        drift = float(np.mean(np.abs(row[ok_range] - consensus[ok_range]))) if ok_range.any() else nan
        in_range = ((row[ok_range] >= lo[ok_range] - tolerance) & (row[ok_range] <= hi[ok_range] + tolerance))
        range_share = float(in_range.mean()) if ok_range.any() else nan
        if not use_own:
            out.append(PersonaDriftResult(drift, range_share, int(ok_range.sum()), range_share, nan,
                                          int(ok_range.sum())))
            continue
        g = int(np.asarray(own_group)[p])
        assert se is not None                     # use_own
        mu, s_e = means[g], se[g]
        ok = np.isfinite(row) & np.isfinite(mu) & np.isfinite(s_e)
        if not ok.any():
            out.append(PersonaDriftResult(drift, nan, 0, range_share, nan, int(ok_range.sum())))
            continue
        err = np.abs(row[ok] - mu[ok])
        inside = err <= z * s_e[ok] + tolerance + 1e-12
        out.append(PersonaDriftResult(drift, float(inside.mean()), int(ok.sum()), range_share,
                                      float(err.mean()), int(ok_range.sum())))
    return out
