"""Disparity: does the LLM agree more with some groups of people than with others?

For a group G of annotators (by one attribute such as gender=Woman, or an intersection), mu_G is the
mean rating of G's members per item and r_G = Pearson(s, mu_G) over the items G rated. We test each
group against the rest of the annotators with a known value of the same attribute
(d_G = r_G - r_notG) and the attribute as a whole by the range gap = max_G r_G - min_G r_G.

Significance comes from permuting the annotator -> group mapping (group sizes kept), which breaks any
link between group membership and ratings while keeping who rated what, as in the group-association
tests of Prabhakaran et al. 2024 (GRASP) and the demographic disparity analyses on DICES (Aroyo et
al. 2023). All permutations are evaluated at once: a K x J matrix of permuted labels becomes a
membership matrix and the group means of all permutations are two matrix products; correlations of
every LLM rater with every permuted group mean are six more (`masked_pearson_columns`).

Group size. A small group's mean rating is a noisier estimate of what the group thinks, so its r_G
is lower whatever the LLM does, and the permutation null of d_G is centred well below 0 for a small
group (above 0 for a large one). Two consequences are handled here:

- the p-value of d_G is *equal-tailed* (twice the smaller one-sided permutation p), so it measures
  where the observation lies in the null distribution, wherever that is centred; comparing |d_G|
  with |null| would call a small group's expected shortfall "significant" and miss an LLM that
  tracks the small group;
- the effect is reported *relative to the null*: d_G - mean(null d_G), with the interval from
  inverting the permutation test (`null_centred_effect`), so a group's size does not read as
  disagreement. The attribute's gap is the range of r_G - E0[r_G] (each group's r relative to random
  groups of the same size), tested against the same statistic under permutation.

Size-robust estimates beside r_G: the mean of the per-annotator correlations r(s, y_j) of the
group's members (its expectation does not depend on how many members there are) and r_G corrected
for the reliability of a k-annotator mean (Spearman-Brown, `spearman_brown_r`).

Annotators whose group is too small to test (label `UNTESTED`) are part of every other group's rest;
annotators with an unknown value (label `UNKNOWN`) are in no group and no rest.

Also here: idiosyncratic variation (spread of per-annotator correlations within vs across groups)
and the minimum detectable difference in r for a group comparison (Fisher z approximation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from accord.analysis.correlation import masked_pearson_columns
from accord.analysis.frames import UNKNOWN
from accord.analysis.resampling import (
    label_permutations,
    null_centred_effect,
    permutation_blocks,
    permutation_pvalue,
)
from scipy import sparse, stats

# Rough cap on the number of float64 cells in one chunk of permuted group means (items x perms x groups)
CHUNK_CELLS = 2_000_000


def _as_operand(matrix: np.ndarray) -> np.ndarray | sparse.csr_matrix:
    """Dense for dense data, CSR when at most a quarter of the cells are filled (sparse designs)."""
    if matrix.size and np.count_nonzero(matrix) <= 0.25 * matrix.size:
        return sparse.csr_matrix(matrix)
    return matrix


def _dense(product: np.ndarray | sparse.csr_matrix) -> np.ndarray:
    if isinstance(product, np.ndarray):
        return np.asarray(product)
    return np.asarray(product.toarray())


def membership_matrix(perm_labels: np.ndarray, n_groups: int) -> np.ndarray:
    """J x (K * G) 0/1 matrix: column k * G + g marks the annotators in group g under permutation k.
    ``perm_labels`` is K x J with group indices (negative = in no group)."""
    k, j = perm_labels.shape
    out = np.zeros((j, k * n_groups))
    kk, jj = np.nonzero(perm_labels >= 0)
    out[jj, kk * n_groups + perm_labels[kk, jj]] = 1.0
    return out


@dataclass
class GroupMeans:
    """Per-item mean rating of each group and of the rest (annotators of the attribute not in G)."""

    mean: np.ndarray  # I x C (NaN where no member rated the item)
    rest: np.ndarray  # I x C
    count: np.ndarray  # I x C members who rated the item


class ItemSums:
    """Per-item sums of ratings over annotators, ready to be split by group: the value, square and count
    operands (dense or sparse) and the totals over every annotator. ``values`` has 0 where ``mask`` is False."""

    def __init__(self, values: np.ndarray, mask: np.ndarray) -> None:
        self.values = _as_operand(values)
        self.squares = _as_operand(values * values)
        self.mask = _as_operand(mask.astype(float))
        self.total = values.sum(axis=1, keepdims=True)
        self.total_sq = (values * values).sum(axis=1, keepdims=True)
        self.total_n = mask.sum(axis=1, keepdims=True).astype(float)

    def of_members(self, member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sum, sum of squares, count) per item for each column of the annotator x column ``member``."""
        return _dense(self.values @ member), _dense(self.squares @ member), _dense(self.mask @ member)


class GroupMeanCalculator(ItemSums):
    """Group means of the ratings of the annotators with a known group label, for any relabelling."""

    def __init__(self, ratings: np.ndarray, labels: np.ndarray) -> None:
        ratings = np.asarray(ratings, dtype=float)
        self.labels = np.asarray(labels, dtype=int)
        if ratings.shape[1] != self.labels.size:
            raise ValueError(f"{self.labels.size} group labels for {ratings.shape[1]} annotators")
        self.known = np.flatnonzero(self.labels != UNKNOWN)
        sub = ratings[:, self.known]
        mask = np.isfinite(sub)
        super().__init__(np.where(mask, sub, 0.0), mask)

    def sums(self, known_labels: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sum, sum of squares, count) per item for each (permutation, group) column.
        ``known_labels`` is K x J_known."""
        return self.of_members(membership_matrix(np.atleast_2d(known_labels), n_groups))

    def means(self, known_labels: np.ndarray, n_groups: int) -> GroupMeans:
        s, _, n = self.sums(known_labels, n_groups)
        rest_n = self.total_n - n
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, s / n, np.nan)
            rest = np.where(rest_n > 0, (self.total - s) / rest_n, np.nan)
        return GroupMeans(mean, rest, n)


@dataclass
class GroupCorrelationTest:
    """Outcome of `group_correlation_test` for R LLM raters and G groups of one attribute."""

    group_r: np.ndarray  # R x G   r(s, mu_G)
    rest_r: np.ndarray  # R x G   r(s, mu_notG)
    n_items: np.ndarray  # R x G   items behind r_G
    difference: np.ndarray  # R x G   d_G = r_G - r_notG
    gap: np.ndarray  # R       range over groups of r_G - E0[r_G] (size-adjusted gap)
    difference_pvalue: np.ndarray  # R x G   equal-tailed two-sided permutation p of d_G
    gap_pvalue: np.ndarray  # R       one-sided (larger gap) permutation p
    null_difference: np.ndarray  # K x R x G
    null_gap: np.ndarray  # K x R   size-adjusted gaps of the permutations
    n_permutations: int
    effect: np.ndarray  # R x G   d_G - E0[d_G] (relative to random groups of the same size)
    effect_low: np.ndarray  # R x G   interval of the effect (inverted permutation test)
    effect_high: np.ndarray  # R x G
    null_mean_difference: np.ndarray  # R x G   E0[d_G]
    null_mean_r: np.ndarray  # R x G   E0[r_G]: r of random groups of the same size
    excess_r: np.ndarray  # R x G   r_G - E0[r_G]
    raw_gap: np.ndarray  # R       max_G r_G - min_G r_G (not size-adjusted; for reference)
    confidence_level: float = 0.95


def _range(r: np.ndarray) -> np.ndarray:
    """max - min over the last axis, ignoring NaN; NaN with fewer than two defined values."""
    defined = np.isfinite(r).sum(axis=-1)
    with np.errstate(invalid="ignore"):
        hi = np.where(np.isfinite(r), r, -np.inf).max(axis=-1)
        lo = np.where(np.isfinite(r), r, np.inf).min(axis=-1)
    return np.where(defined >= 2, hi - lo, np.nan)


def _correlate(scores: np.ndarray, gm: GroupMeans, k: int, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, n = masked_pearson_columns(scores, gm.mean)
    rr, _ = masked_pearson_columns(scores, gm.rest)
    shape = (scores.shape[1], k, n_groups)
    return r.reshape(shape), rr.reshape(shape), n.reshape(shape)


def group_correlation_test(
    scores: np.ndarray,
    ratings: np.ndarray,
    labels: np.ndarray,
    n_groups: int,
    n_permutations: int = 1000,
    rng: np.random.Generator | None = None,
    confidence_level: float = 0.95,
) -> GroupCorrelationTest:
    """Correlation of each LLM rater with each group's mean rating, and permutation tests.

    ``scores``: I x R (one column per LLM rater, NaN = no answer); ``ratings``: I x J human ratings;
    ``labels``: group index per annotator (-1 = unknown, left out; -2 = known but not tested: in the
    rest). Permutations shuffle the labels of the annotators with a known value, keeping group sizes."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        scores = scores[:, None]
    ratings = np.asarray(ratings, dtype=float)
    if scores.shape[0] != ratings.shape[0]:
        raise ValueError(f"scores have {scores.shape[0]} items, ratings {ratings.shape[0]}")
    labels = np.asarray(labels, dtype=int)
    if n_groups < 2:
        raise ValueError("a group comparison needs at least two groups")
    if n_permutations < 1:
        raise ValueError("n_permutations must be positive")
    rng = rng if rng is not None else np.random.default_rng(0)
    calc = GroupMeanCalculator(ratings, labels)
    known_labels = labels[calc.known]
    observed = calc.means(known_labels[None, :], n_groups)
    r_obs, rr_obs, n_obs = (a[:, 0, :] for a in _correlate(scores, observed, 1, n_groups))
    diff_obs = r_obs - rr_obs
    gap_obs = _range(r_obs)

    perms = label_permutations(known_labels, n_permutations, rng)
    n_r = scores.shape[1]
    null_diff = np.empty((n_permutations, n_r, n_groups))
    null_r = np.empty((n_permutations, n_r, n_groups))
    for start, block in permutation_blocks(perms, ratings.shape[0] * n_groups, CHUNK_CELLS):
        k = block.shape[0]
        r, rr, _ = _correlate(scores, calc.means(block, n_groups), k, n_groups)
        null_diff[start:start + k] = np.transpose(r - rr, (1, 0, 2))
        null_r[start:start + k] = np.transpose(r, (1, 0, 2))
    effect, low, high, null_mean_diff = null_centred_effect(diff_obs, null_diff, confidence_level)
    _, _, _, null_mean_r = null_centred_effect(r_obs, null_r, confidence_level)
    excess = r_obs - null_mean_r
    gap_obs = _range(excess)
    null_gap = _range(null_r - null_mean_r[None])
    return GroupCorrelationTest(
        group_r=r_obs,
        rest_r=rr_obs,
        n_items=n_obs,
        difference=diff_obs,
        gap=gap_obs,
        difference_pvalue=permutation_pvalue(diff_obs, null_diff, "equal-tailed"),
        gap_pvalue=permutation_pvalue(gap_obs, null_gap, "greater"),
        null_difference=null_diff,
        null_gap=null_gap,
        n_permutations=n_permutations,
        effect=effect,
        effect_low=low,
        effect_high=high,
        null_mean_difference=null_mean_diff,
        null_mean_r=null_mean_r,
        excess_r=excess,
        raw_gap=_range(r_obs),
        confidence_level=confidence_level,
    )


@dataclass
class SizeRobustEstimate:
    """Group alignment estimates that do not shrink with the group's size."""

    mean_annotator_r: np.ndarray  # G   mean of r(s, y_j) over the group's members with a defined r_j
    mean_annotator_r_low: np.ndarray  # G   t interval over members (NaN with fewer than two)
    mean_annotator_r_high: np.ndarray  # G
    n_annotators: np.ndarray  # G   members with a defined r_j


def mean_annotator_r(
    annotator_r: np.ndarray, labels: np.ndarray, n_groups: int, confidence_level: float = 0.95
) -> SizeRobustEstimate:
    """Mean per-annotator correlation with the LLM per group, with a t interval over the members.

    ``annotator_r``: r(s, y_j) per annotator (NaN = undefined); ``labels``: group index per annotator."""
    annotator_r = np.asarray(annotator_r, dtype=float)
    labels = np.asarray(labels, dtype=int)
    mean = np.full(n_groups, np.nan)
    low = np.full(n_groups, np.nan)
    high = np.full(n_groups, np.nan)
    count = np.zeros(n_groups, dtype=int)
    for g in range(n_groups):
        vals = annotator_r[(labels == g) & np.isfinite(annotator_r)]
        count[g] = vals.size
        if vals.size == 0:
            continue
        mean[g] = vals.mean()
        if vals.size >= 2:
            half = stats.t.ppf(0.5 + confidence_level / 2, vals.size - 1) * vals.std(ddof=1) / np.sqrt(vals.size)
            low[g], high[g] = mean[g] - half, mean[g] + half
    return SizeRobustEstimate(mean, low, high, count)


def spearman_brown_r(r_group: float, raters_per_item: np.ndarray, single_rater_reliability: float) -> float:
    """r_G corrected for the unreliability of a k-annotator mean (Spearman 1904; Brown 1910).

    The mean of k ratings has reliability rel_k = k rho / (1 + (k - 1) rho) with rho the reliability of
    one rating; the correlation with the group's error-free mean is estimated as r_G / sqrt(rel_k)
    (correction for attenuation). k is the harmonic mean over items of the group's ratings per item
    (the average of 1/k is what the error variance of the mean scales with). NaN when rho <= 0 or
    undefined. The value can exceed 1 when the correction over-shoots (a noisy rho)."""
    k = np.asarray(raters_per_item, dtype=float)
    k = k[k > 0]
    if k.size == 0 or not np.isfinite(r_group) or not np.isfinite(single_rater_reliability):
        return float("nan")
    rho = float(single_rater_reliability)
    if rho <= 0:
        return float("nan")
    k_h = k.size / np.sum(1.0 / k)
    reliability = k_h * rho / (1.0 + (k_h - 1.0) * rho)
    return float(r_group / np.sqrt(reliability))


@dataclass
class IdiosyncraticVariation:
    """Spread of per-annotator correlations r_j = r(s, y_j) within and across groups."""

    sd_within: float  # mean over groups of the within-group SD of r_j
    sd_all: float  # SD of r_j over all annotators with a known group
    ratio: float  # sd_within / sd_all (near 1: groups explain little of the spread)
    group_sd: dict[str, float]
    group_n: dict[str, int]


def idiosyncratic_variation(
    annotator_r: np.ndarray, labels: np.ndarray, group_names: list[str]
) -> IdiosyncraticVariation:
    """Compare how much r_j varies inside groups with how much it varies overall (sample SDs).

    Groups with fewer than two defined r_j are left out of the within-group average."""
    annotator_r = np.asarray(annotator_r, dtype=float)
    labels = np.asarray(labels, dtype=int)
    ok = np.isfinite(annotator_r) & (labels >= 0)  # members of tested groups
    if ok.sum() < 2:
        raise ValueError("fewer than two annotators with a defined correlation and a known group")
    sd_all = float(np.std(annotator_r[ok], ddof=1))
    group_sd: dict[str, float] = {}
    group_n: dict[str, int] = {}
    for g, name in enumerate(group_names):
        vals = annotator_r[ok & (labels == g)]
        group_n[name] = int(vals.size)
        if vals.size >= 2:
            group_sd[name] = float(np.std(vals, ddof=1))
    if not group_sd:
        raise ValueError("no group has two annotators with a defined correlation")
    sd_within = float(np.mean(list(group_sd.values())))
    ratio = sd_within / sd_all if sd_all > 0 else float("nan")
    return IdiosyncraticVariation(sd_within, sd_all, ratio, group_sd, group_n)


@dataclass
class DetectableDifference:
    delta_z: float  # detectable difference on Fisher's z scale
    delta_r: float  # the same as a difference in r, centred on r0
    r0: float
    n1: int
    n2: int


def min_detectable_difference(
    r0: float, n1: int, n2: int, alpha: float = 0.05, power: float = 0.8
) -> DetectableDifference:
    """Smallest difference between two correlations that a two-sided z-test on Fisher's z detects
    with the given power: delta_z = (z_{1-alpha/2} + z_power) * sqrt(1/(n1-3) + 1/(n2-3)).

    Converted to r around the observed pooled r0: tanh(z0 + delta_z/2) - tanh(z0 - delta_z/2).
    The two correlations of a group comparison share the items (and the LLM scores), so they are not
    independent; the independent-samples formula is the usual rough guide (cf. Steiger 1980)."""
    if n1 <= 3 or n2 <= 3:
        raise ValueError(f"need more than 3 items per group (n1={n1}, n2={n2})")
    if not np.isfinite(r0):
        r0 = 0.0
    delta_z = float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
                    * np.sqrt(1.0 / (n1 - 3) + 1.0 / (n2 - 3)))
    z0 = float(np.arctanh(np.clip(r0, -0.999999, 0.999999)))
    delta_r = float(np.tanh(z0 + delta_z / 2) - np.tanh(z0 - delta_z / 2))
    return DetectableDifference(delta_z, delta_r, float(r0), int(n1), int(n2))
