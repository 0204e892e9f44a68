"""Group association: do members of a group agree with each other more than with outsiders?

- IRR(G): Krippendorff's alpha among G's annotators (items with at least two ratings from G).
- XRR(G, H): cross-replication reliability of Wong, Paritosh & Aroyo (2021),
  kappa_x = 1 - d_o / d_e, where d_o is the average over items (rated by both G and H) of the mean
  disagreement between a rating from G and a rating from H on that item, each item weighted by its
  number of ratings R_i + S_i as in the paper's definition (``xrr_weighting="ratings"``; "items"
  weights items equally, the earlier behaviour), and d_e the average disagreement between a G rating
  and an H rating over all pairs regardless of item.
- GAI(G) = IRR(G) / XRR(G, not G), the group association index of Prabhakaran et al. 2024 (GRASP),
  with H = every other annotator with a known value of the attribute, including members of groups
  too small to be tested themselves. GAI > 1: G is more cohesive than its agreement with the rest
  would suggest; GAI < 1: less.

Disagreement is squared difference ("interval", Krippendorff's interval metric) or inequality
("nominal"). Everything is computed from per-item group sums (or per-value counts), so all K
permutations of the annotator -> group mapping are evaluated with matrix products; the p-value of
GAI is two-sided and equal-tailed (twice the smaller of the one-sided permutation p-values), as GRASP
takes the tail on the observed side, so a significantly *low* association is flagged too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from accord.analysis.disparity import ItemSums, _as_operand, _dense, membership_matrix
from accord.analysis.frames import UNKNOWN
from accord.analysis.resampling import label_permutations, permutation_blocks, permutation_pvalue

METRICS = ("interval", "nominal")
XRR_WEIGHTINGS = ("ratings", "items")
CHUNK_CELLS = 1_000_000


def alpha_from_moments(n: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Krippendorff's interval alpha per column from per-item count, sum and sum of squares
    (items x columns arrays). NaN where fewer than two pairable values or no expected disagreement."""
    pairable = n >= 2
    n_p = np.where(pairable, n, 0.0)
    s1_p = np.where(pairable, s1, 0.0)
    s2_p = np.where(pairable, s2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.where(pairable, 2.0 * (n_p * s2_p - s1_p * s1_p) / np.maximum(n_p - 1.0, 1.0), 0.0)
        total_n = n_p.sum(axis=0)
        d_o = within.sum(axis=0) / total_n
        d_e = 2.0 * (total_n * s2_p.sum(axis=0) - s1_p.sum(axis=0) ** 2) / (total_n * (total_n - 1.0))
        alpha = 1.0 - d_o / d_e
    return np.where((total_n >= 2) & (d_e > 1e-12 * np.maximum(1.0, np.abs(d_o))), alpha, np.nan)


def alpha_from_counts(counts: np.ndarray) -> np.ndarray:
    """Krippendorff's nominal alpha per column from per-item value counts (items x columns x values)."""
    m = counts.sum(axis=-1)
    pairable = m >= 2
    c = np.where(pairable[..., None], counts, 0.0)
    m = np.where(pairable, m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        within = np.where(pairable, (m * m - (c * c).sum(axis=-1)) / np.maximum(m - 1.0, 1.0), 0.0)
        total_n = m.sum(axis=0)
        per_value = c.sum(axis=0)
        d_o = within.sum(axis=0) / total_n
        d_e = (total_n * total_n - (per_value * per_value).sum(axis=-1)) / (total_n * (total_n - 1.0))
        alpha = 1.0 - d_o / d_e
    return np.where((total_n >= 2) & (d_e > 0), alpha, np.nan)


@dataclass
class AssociationResult:
    """IRR, XRR and GAI for each group of one attribute, with permutation p-values for GAI."""

    group_names: list[str]
    irr: np.ndarray  # G
    xrr: np.ndarray  # G
    gai: np.ndarray  # G
    gai_pvalue: np.ndarray  # G
    null_gai: np.ndarray  # K x G
    group_sizes: np.ndarray  # G
    metric: str
    n_permutations: int
    xrr_weighting: str = "ratings"
    alternative: str = "equal-tailed"


def _item_average(per_item: np.ndarray, valid: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """Average over items (axis 0) of per_item where valid, weighted by ``weight`` (None: equally)."""
    w = valid.astype(float) if weight is None else np.where(valid, weight, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(valid, per_item * w, 0.0).sum(axis=0) / w.sum(axis=0), dtype=float)


class _Moments(ItemSums):
    """Per-item sums of each group and of the rest, for the interval metric."""

    def __init__(self, values: np.ndarray, mask: np.ndarray, weighting: str = "ratings") -> None:
        super().__init__(values, mask)
        self.weighting = weighting

    def stats(self, member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s1, s2, n = self.of_members(member)
        irr = alpha_from_moments(n, s1, s2)
        nh, s1h, s2h = self.total_n - n, self.total - s1, self.total_sq - s2
        valid = (n > 0) & (nh > 0)
        pairs = np.where(valid, n * nh, 1.0)
        cross = nh * s2 + n * s2h - 2.0 * s1 * s1h
        with np.errstate(invalid="ignore", divide="ignore"):
            d_o = _item_average(cross / pairs, valid, n + nh if self.weighting == "ratings" else None)
            ng_t = np.where(valid, n, 0).sum(axis=0)
            nh_t = np.where(valid, nh, 0).sum(axis=0)
            d_e = (nh_t * np.where(valid, s2, 0).sum(axis=0) + ng_t * np.where(valid, s2h, 0).sum(axis=0)
                   - 2.0 * np.where(valid, s1, 0).sum(axis=0) * np.where(valid, s1h, 0).sum(axis=0)) / (
                ng_t * nh_t)
            xrr = np.where(d_e > 0, 1.0 - d_o / d_e, np.nan)
        return irr, xrr, valid.sum(axis=0)


class _Counts:
    """Per-item value counts of each group and of the rest, for the nominal metric."""

    def __init__(self, values: np.ndarray, mask: np.ndarray, weighting: str = "ratings") -> None:
        self.weighting = weighting
        domain = np.unique(values[mask])
        self.indicators = [_as_operand((mask & (values == v)).astype(float)) for v in domain]
        self.tot = [np.asarray(ind.sum(axis=1)).reshape(-1, 1) for ind in self.indicators]

    def stats(self, member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        g = np.stack([_dense(ind @ member) for ind in self.indicators], axis=-1)  # I x C x V
        h = np.stack(self.tot, axis=-1) - g
        irr = alpha_from_counts(g)
        n, nh = g.sum(axis=-1), h.sum(axis=-1)
        valid = (n > 0) & (nh > 0)
        pairs = np.where(valid, n * nh, 1.0)
        cross = n * nh - (g * h).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            d_o = _item_average(cross / pairs, valid, n + nh if self.weighting == "ratings" else None)
            gv = np.where(valid[..., None], g, 0).sum(axis=0)
            hv = np.where(valid[..., None], h, 0).sum(axis=0)
            ng_t, nh_t = gv.sum(axis=-1), hv.sum(axis=-1)
            d_e = (ng_t * nh_t - (gv * hv).sum(axis=-1)) / (ng_t * nh_t)
            xrr = np.where(d_e > 0, 1.0 - d_o / d_e, np.nan)
        return irr, xrr, valid.sum(axis=0)


def _gai(irr: np.ndarray, xrr: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(xrr > 0, irr / xrr, np.nan)


def group_association(
    ratings: np.ndarray,
    labels: np.ndarray,
    group_names: list[str],
    metric: str = "interval",
    n_permutations: int = 1000,
    rng: np.random.Generator | None = None,
    xrr_weighting: str = "ratings",
    alternative: str = "equal-tailed",
) -> AssociationResult:
    """IRR(G), XRR(G, not G) and GAI(G) for every group of one attribute, and a permutation test of
    GAI that shuffles the group labels of the annotators with a known label (sizes kept).

    ``ratings``: items x annotators (NaN = missing); ``labels``: group index per annotator (-1 =
    unknown, left out; -2 = known but in no tested group: part of every rest). A GAI is NaN when
    XRR <= 0 or a reliability is undefined. ``alternative``: "equal-tailed" (two-sided, default),
    "greater" or "less"."""
    if metric not in METRICS:
        raise ValueError(f"unknown disagreement metric {metric!r}; use one of {METRICS}")
    if xrr_weighting not in XRR_WEIGHTINGS:
        raise ValueError(f"unknown XRR weighting {xrr_weighting!r}; use one of {XRR_WEIGHTINGS}")
    ratings = np.asarray(ratings, dtype=float)
    labels = np.asarray(labels, dtype=int)
    n_groups = len(group_names)
    if ratings.shape[1] != labels.size:
        raise ValueError(f"{labels.size} group labels for {ratings.shape[1]} annotators")
    if n_groups < 2:
        raise ValueError("group association needs at least two groups")
    known = np.flatnonzero(labels != UNKNOWN)
    sub = ratings[:, known]
    mask = np.isfinite(sub)
    values = np.where(mask, sub, 0.0)
    calc = (_Moments(values, mask, xrr_weighting) if metric == "interval"
            else _Counts(values, mask, xrr_weighting))
    known_labels = labels[known]
    irr, xrr, _ = calc.stats(membership_matrix(known_labels[None, :], n_groups))
    gai = _gai(irr, xrr)
    rng = rng if rng is not None else np.random.default_rng(0)
    perms = label_permutations(known_labels, n_permutations, rng)
    null = np.empty((n_permutations, n_groups))
    for start, block in permutation_blocks(perms, ratings.shape[0] * n_groups, CHUNK_CELLS):
        i_irr, i_xrr, _ = calc.stats(membership_matrix(block, n_groups))
        null[start:start + block.shape[0]] = _gai(i_irr, i_xrr).reshape(block.shape[0], n_groups)
    sizes = np.bincount(known_labels[known_labels >= 0], minlength=n_groups)
    return AssociationResult(
        group_names=list(group_names), irr=irr, xrr=xrr, gai=gai,
        gai_pvalue=permutation_pvalue(gai, null, alternative), null_gai=null, group_sizes=sizes,
        metric=metric, n_permutations=n_permutations, xrr_weighting=xrr_weighting, alternative=alternative,
    )


def cross_replication_reliability(
    ratings_g: np.ndarray, ratings_h: np.ndarray, metric: str = "interval", weighting: str = "ratings"
) -> float:
    """kappa_x of Wong et al. (2021) between two rater pools on the same items (items x raters each,
    NaN = missing). Reference implementation with explicit pairs, used to check the vectorised one.
    ``weighting="ratings"`` weights item i's mean cross-pool disagreement by R_i + S_i (the paper's
    d_o = sum_i (R_i + S_i) / (R_i S_i) sum_r sum_s D(x_ir, y_is) / (R + S)); "items" weights equally."""
    g = np.asarray(ratings_g, dtype=float)
    h = np.asarray(ratings_h, dtype=float)
    if g.shape[0] != h.shape[0]:
        raise ValueError("both rating matrices must have the same items (rows)")

    def dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray((a - b) ** 2 if metric == "interval" else (a != b).astype(float), dtype=float)

    per_item = []
    weights = []
    all_g, all_h = [], []
    for i in range(g.shape[0]):
        a = g[i][np.isfinite(g[i])]
        b = h[i][np.isfinite(h[i])]
        if a.size == 0 or b.size == 0:
            continue
        per_item.append(dist(a[:, None], b[None, :]).mean())
        weights.append(a.size + b.size if weighting == "ratings" else 1.0)
        all_g.append(a)
        all_h.append(b)
    if not per_item:
        raise ValueError("no item is rated by both pools")
    a = np.concatenate(all_g)
    b = np.concatenate(all_h)
    d_e = dist(a[:, None], b[None, :]).mean()
    if d_e <= 0:
        raise ValueError("cross-replication reliability undefined: no expected disagreement")
    return float(1.0 - np.average(per_item, weights=weights) / d_e)
