"""Correlations between an LLM's item scores and human item ratings, with bootstrap intervals.

Pearson, Spearman and Kendall (tau-b) are written as functions of item weights (see
`accord.analysis.resampling`), so all bootstrap resamples are evaluated with a handful of matrix
products and no Python loop over resamples:

- Pearson: weighted moments, ``W @ x`` etc.
- Spearman: the average rank of an item in a resample is (weight of smaller values) +
  (weight of equal values + 1) / 2, from cumulative sums of tie-group weights; then Pearson on ranks.
- Kendall tau-b: numerator ``sum_ij w_i w_j sign(x_i-x_j) sign(y_i-y_j)`` = ``((W @ P) * W).sum(1)``;
  the tie corrections are (sum w)^2 - sum over tie groups of (group weight)^2.

With all weights 1 each function equals scipy.stats.pearsonr / spearmanr / kendalltau, and with
bootstrap counts it equals the statistic of the resampled data (tests check both).

Confidence intervals follow the paired item bootstrap (items resampled with their (x, y) pairs), BCa
by default like ``scipy.stats.bootstrap``. The optional two-way bootstrap resamples items and
annotators independently and recomputes the human item means in each resample, so the interval also
reflects which annotators happened to be recruited.
"""

from __future__ import annotations

import numpy as np
from accord.analysis.resampling import (
    derive_rng,
    percentile_interval,
    resample_counts,
    weighted_bootstrap,
)
from accord.analysis.results import ConfidenceInterval, CorrelationResult
from scipy import stats

METHODS = ("pearson", "spearman", "kendall")
# Above this many items the Kendall bootstrap (n × n pair matrix) is replaced by the Fieller et al.
# (1957) normal approximation on Fisher's z with variance 0.437 / (n - 4).
MAX_KENDALL_BOOTSTRAP_N = 1000


def _vector_pearson(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weighted Pearson per row of w (k × n) for fixed vectors x, y: one pass over w (a k × n by
    n × 6 matrix product gives every weighted moment)."""
    xc = x - x.mean()
    yc = y - y.mean()
    moments = w @ np.column_stack([np.ones_like(xc), xc, yc, xc * xc, yc * yc, xc * yc])
    sw = moments[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = moments[:, 1] / sw
        my = moments[:, 2] / sw
        vx = moments[:, 3] / sw - mx * mx
        vy = moments[:, 4] / sw - my * my
        cov = moments[:, 5] / sw - mx * my
        r = cov / np.sqrt(vx * vy)
    tiny_x = (1e-7 * max(float(np.max(np.abs(xc))), 1e-300)) ** 2
    tiny_y = (1e-7 * max(float(np.max(np.abs(yc))), 1e-300)) ** 2
    r = np.where((vx <= tiny_x) | (vy <= tiny_y) | (sw <= 0), np.nan, r)
    return np.clip(r, -1.0, 1.0)


def _rowwise_pearson(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weighted Pearson per row; w is k × n, x and y broadcast to k × n. NaN when a row is constant."""
    if np.ndim(x) == 1 and np.ndim(y) == 1:
        return _vector_pearson(w, x, y)
    x = np.broadcast_to(x, w.shape)
    y = np.broadcast_to(y, w.shape)
    sw = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.einsum("ij,ij->i", w, x) / sw
        my = np.einsum("ij,ij->i", w, y) / sw
        dx = x - mx[:, None]
        dy = y - my[:, None]
        vx = np.einsum("ij,ij,ij->i", w, dx, dx)
        vy = np.einsum("ij,ij,ij->i", w, dy, dy)
        cov = np.einsum("ij,ij,ij->i", w, dx, dy)
        scale_x = np.max(np.abs(x)) if np.size(x) else 1.0
        scale_y = np.max(np.abs(y)) if np.size(y) else 1.0
        tiny_x = sw * (1e-10 * max(scale_x, 1e-300)) ** 2
        tiny_y = sw * (1e-10 * max(scale_y, 1e-300)) ** 2
        r = cov / np.sqrt(vx * vy)
    r = np.where((vx <= tiny_x) | (vy <= tiny_y) | (sw <= 0), np.nan, r)
    return np.clip(r, -1.0, 1.0)


def _tie_structure(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort order, start positions of tie groups in sorted order, and each item's tie group."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.r_[True, xs[1:] != xs[:-1]]
    starts = np.flatnonzero(new)
    group = np.empty(x.size, dtype=int)
    group[order] = np.cumsum(new) - 1
    return order, starts, group


def _group_weights(w: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.add.reduceat(w[:, order], starts, axis=1)


def weighted_ranks(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """k × n average ranks of x in each weighted sample (items with weight 0 get a rank but no
    weight)."""
    order, starts, group = _tie_structure(x)
    gw = _group_weights(w, order, starts)
    less = np.cumsum(gw, axis=1) - gw
    return np.asarray((less + (gw + 1.0) / 2.0)[:, group], dtype=float)


def _tie_square_sum(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    order, starts, _ = _tie_structure(x)
    gw = _group_weights(w, order, starts)
    return np.asarray((gw * gw).sum(axis=1), dtype=float)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown correlation method {method!r}; use one of {METHODS}")


class WeightedCorrelation:
    """A correlation of fixed (x, y) as a function of item weights: ``stat(W)`` -> one value per row."""

    def __init__(self, x: np.ndarray, y: np.ndarray, method: str = "pearson") -> None:
        _check_method(method)
        self.x = np.asarray(x, dtype=float)
        self.y = np.asarray(y, dtype=float)
        if self.x.shape != self.y.shape or self.x.ndim != 1:
            raise ValueError(f"x and y must be 1-d of equal length, got {self.x.shape}, {self.y.shape}")
        self.method = method
        self._pairs: np.ndarray | None = None
        if method == "kendall":
            sx = np.sign(self.x[:, None] - self.x[None, :])
            sy = np.sign(self.y[:, None] - self.y[None, :])
            self._pairs = sx * sy

    def __call__(self, w: np.ndarray, chunk: int = 512) -> np.ndarray:
        w = np.atleast_2d(np.asarray(w, dtype=float))
        if self.method == "pearson":
            return _rowwise_pearson(w, self.x, self.y)
        if self.method == "spearman":
            out = np.empty(w.shape[0])
            for start in range(0, w.shape[0], chunk):
                wc = w[start:start + chunk]
                out[start:start + chunk] = _rowwise_pearson(
                    wc, weighted_ranks(wc, self.x), weighted_ranks(wc, self.y)
                )
            return out
        assert self._pairs is not None
        numerator = ((w @ self._pairs) * w).sum(axis=1)
        total = w.sum(axis=1) ** 2
        dx = total - _tie_square_sum(w, self.x)
        dy = total - _tie_square_sum(w, self.y)
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = numerator / np.sqrt(dx * dy)
        tau = np.where((dx <= 0) | (dy <= 0), np.nan, tau)
        return np.clip(tau, -1.0, 1.0)


def _undefined(method: str, n: int, reason: str) -> CorrelationResult:
    nan = float("nan")
    return CorrelationResult(nan, nan, ConfidenceInterval(nan, nan), n, method, reason)


def _scipy_statistic(x: np.ndarray, y: np.ndarray, method: str) -> tuple[float, float]:
    if method == "pearson":
        pearson = stats.pearsonr(x, y)
        return float(pearson.statistic), float(pearson.pvalue)
    ranked = stats.spearmanr(x, y) if method == "spearman" else stats.kendalltau(x, y)
    return float(ranked.statistic), float(ranked.pvalue)


def pairwise_complete(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def undefined_reason(x: np.ndarray, y: np.ndarray) -> str | None:
    """Why a correlation of the (complete) pairs x, y is undefined, or None if it is defined."""
    if x.size < 3:
        return f"fewer than 3 paired items (n={x.size})"
    if np.ptp(x) == 0:
        return "constant LLM scores / first variable"
    if np.ptp(y) == 0:
        return "constant human ratings / second variable"
    return None


def _observed(xs: np.ndarray, ys: np.ndarray, method: str) -> CorrelationResult:
    """The correlation of the complete pairs xs, ys with scipy's p-value and no interval yet; NaN with the reason
    when it is undefined."""
    reason = undefined_reason(xs, ys)
    if reason is not None:
        return _undefined(method, int(xs.size), reason)
    statistic, pvalue = _scipy_statistic(xs, ys, method)
    nan = float("nan")
    return CorrelationResult(statistic, pvalue, ConfidenceInterval(nan, nan), int(xs.size), method)


def correlation_with_ci(
    x: np.ndarray, y: np.ndarray, method: str = "pearson", *, n_resamples: int = 1000,
    confidence_level: float = 0.95, rng: np.random.Generator | None = None, seed: int = 0, ci_method: str = "bca",
    keep_distribution: bool = False, counts: np.ndarray | None = None,
) -> CorrelationResult:
    """Correlation of x and y (pairs with a NaN dropped) with a paired item-bootstrap interval.

    The statistic and p-value are scipy's (``pearsonr``, ``spearmanr``, ``kendalltau`` tau-b); the
    interval is BCa (or percentile) over ``n_resamples`` paired resamples of the items, computed in
    weight form without a Python loop over resamples. Undefined cases (n < 3, a constant variable)
    return NaN with ``reason`` instead of raising. ``counts`` (B × n_complete) supplies resamples of
    the complete pairs drawn by the caller (shared between statistics); else they come from ``rng``."""
    _check_method(method)
    xs, ys = pairwise_complete(x, y)
    observed = _observed(xs, ys, method)
    if observed.reason is not None or n_resamples <= 0:
        return observed
    n, statistic, pvalue = observed.n, observed.statistic, observed.pvalue
    rng = rng if rng is not None else derive_rng(seed, "correlation", method)
    if method == "kendall" and n > MAX_KENDALL_BOOTSTRAP_N:
        z = np.arctanh(np.clip(statistic, -0.999999, 0.999999))
        half = stats.norm.ppf(0.5 + confidence_level / 2.0) * np.sqrt(0.437 / (n - 4))
        ci = ConfidenceInterval(float(np.tanh(z - half)), float(np.tanh(z + half)))
        return CorrelationResult(statistic, pvalue, ci, n, method)
    stat = WeightedCorrelation(xs, ys, method)
    _, boot, ci, _used = weighted_bootstrap(
        stat, n, n_resamples, rng, confidence_level=confidence_level, method=ci_method, counts=counts
    )
    return CorrelationResult(
        statistic, pvalue, ci, n, method, None, boot if keep_distribution else None
    )


def _crossprod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a.T @ b for a (I × p), b (I × q); computed as (b.T @ a).T when p < q, which OpenBLAS runs
    several times faster for a thin a."""
    if a.shape[1] < b.shape[1]:
        return np.asarray((b.T @ a).T)
    return np.asarray(a.T @ b)


def _column_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=0)
    total = np.where(mask, x, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def masked_pearson_columns(
    x: np.ndarray, y: np.ndarray, min_n: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r between every column of x (I × a) and every column of y (I × b), each pair on the
    rows where both are finite (pairwise complete). Returns (r: a × b, n: a × b); r is NaN where
    n < min_n or a column is constant on the shared rows. Computed with six matrix products."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    mx = np.isfinite(x)
    my = np.isfinite(y)
    # centre each column on its own mean to limit cancellation in the sums of squares
    cx = np.where(mx, x - _column_mean(x, mx), 0.0)
    cy = np.where(my, y - _column_mean(y, my), 0.0)
    fx = mx.astype(float)
    fy = my.astype(float)
    n = _crossprod(fx, fy)
    sx = _crossprod(cx, fy)
    sy = _crossprod(fx, cy)
    sxx = _crossprod(cx * cx, fy)
    syy = _crossprod(fx, cy * cy)
    sxy = _crossprod(cx, cy)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sxy - sx * sy / n
        vx = sxx - sx * sx / n
        vy = syy - sy * sy / n
        r = cov / np.sqrt(vx * vy)
    scale_x = np.nanmax(np.abs(cx), axis=0, initial=0.0)[:, None] if cx.size else 1.0
    scale_y = np.nanmax(np.abs(cy), axis=0, initial=0.0)[None, :] if cy.size else 1.0
    tiny_x = n * (1e-9 * np.maximum(scale_x, 1e-300)) ** 2
    tiny_y = n * (1e-9 * np.maximum(scale_y, 1e-300)) ** 2
    bad = (n < min_n) | (vx <= tiny_x) | (vy <= tiny_y) | ~np.isfinite(r)
    return np.where(bad, np.nan, np.clip(r, -1.0, 1.0)), n.astype(int)


def paired_column_pearson(
    x: np.ndarray, y: np.ndarray, min_n: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r between column j of x and column j of y (both I × J), on rows where both are finite.
    Returns (r, n) of length J; NaN where n < min_n or a column is constant."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    w = ok.astype(float)
    n = w.sum(axis=0)
    xz = np.where(ok, x, 0.0)
    yz = np.where(ok, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = xz.sum(axis=0) / n
        my = yz.sum(axis=0) / n
        dx = np.where(ok, x - mx, 0.0)
        dy = np.where(ok, y - my, 0.0)
        vx = (dx * dx).sum(axis=0)
        vy = (dy * dy).sum(axis=0)
        r = (dx * dy).sum(axis=0) / np.sqrt(vx * vy)
    scale_x = np.abs(dx).max(axis=0, initial=0.0)
    scale_y = np.abs(dy).max(axis=0, initial=0.0)
    bad = (n < min_n) | (vx <= n * (1e-9 * np.maximum(scale_x, 1e-300)) ** 2) | (
        vy <= n * (1e-9 * np.maximum(scale_y, 1e-300)) ** 2
    )
    bad |= ~np.isfinite(r)
    return np.where(bad, np.nan, np.clip(r, -1.0, 1.0)), n.astype(int)


def _rowwise_ranks_and_ties(w: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted average ranks of each row of y (k × n) under row weights w, and per row the sum of
    squared tie-group weights."""
    k, n = y.shape
    order = np.argsort(y, axis=1, kind="stable")
    ys = np.take_along_axis(y, order, axis=1)
    ws = np.take_along_axis(w, order, axis=1)
    new = np.concatenate([np.ones((k, 1), dtype=bool), ys[:, 1:] != ys[:, :-1]], axis=1)
    gid = np.cumsum(new, axis=1) - 1
    flat = (gid + (np.arange(k) * n)[:, None]).ravel()
    totals = np.bincount(flat, weights=ws.ravel(), minlength=k * n).reshape(k, n)
    less = np.cumsum(totals, axis=1) - totals
    rank_g = less + (totals + 1.0) / 2.0
    rank_sorted = np.take_along_axis(rank_g, gid, axis=1)
    ranks = np.empty_like(rank_sorted)
    np.put_along_axis(ranks, order, rank_sorted, axis=1)
    return ranks, (totals * totals).sum(axis=1)


def two_way_bootstrap_correlation(
    scores: np.ndarray, ratings: np.ndarray, method: str = "pearson", *, n_resamples: int = 1000,
    confidence_level: float = 0.95, rng: np.random.Generator | None = None, seed: int = 0,
    max_pair_elements: int = 4_000_000,
) -> CorrelationResult:
    """Correlation of LLM scores with the human item mean, with a two-way bootstrap interval.

    ``scores``: length-I LLM scores; ``ratings``: I × J human ratings (NaN = missing). In each of the
    B resamples items and annotators are drawn independently with replacement; the human mean of an
    item is recomputed from the drawn annotators (items none of them rated drop out of that resample).
    The interval is the percentile interval of the B correlations."""
    _check_method(method)
    scores = np.asarray(scores, dtype=float)
    ratings = np.asarray(ratings, dtype=float)
    if ratings.ndim != 2 or ratings.shape[0] != scores.shape[0]:
        raise ValueError(
            f"ratings must be items × annotators with {scores.shape[0]} rows, got {ratings.shape}"
        )
    mask = np.isfinite(ratings)
    counts = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, np.where(mask, ratings, 0).sum(axis=1) / counts, np.nan)
    keep = np.isfinite(scores) & np.isfinite(mean)
    xs, ys = scores[keep], mean[keep]
    observed = _observed(xs, ys, method)
    if observed.reason is not None:
        return observed
    sub = ratings[keep]
    sub_mask = mask[keep].astype(float)
    sub_vals = np.where(mask[keep], sub, 0.0)
    n_items, n_ann = sub.shape
    rng = rng if rng is not None else derive_rng(seed, "two-way", method)
    item_w = resample_counts(n_items, n_resamples, rng)
    ann_w = resample_counts(n_ann, n_resamples, rng)
    num = ann_w @ sub_vals.T  # B × I
    den = ann_w @ sub_mask.T
    with np.errstate(invalid="ignore", divide="ignore"):
        boot_mean = num / den
    ok = den > 0
    w = np.where(ok, item_w, 0.0)
    y_boot = np.where(ok, boot_mean, 0.0)
    if method == "pearson":
        boot = _rowwise_pearson(w, xs[None, :], y_boot)
    elif method == "spearman":
        ry, _ = _rowwise_ranks_and_ties(w, y_boot)
        boot = _rowwise_pearson(w, weighted_ranks(w, xs), ry)
    else:
        sx = np.sign(xs[:, None] - xs[None, :])
        _, ties_y = _rowwise_ranks_and_ties(w, y_boot)
        ties_x = _tie_square_sum(w, xs)
        numerator = np.empty(n_resamples)
        chunk = max(1, max_pair_elements // max(1, n_items * n_items))
        for start in range(0, n_resamples, chunk):
            yc = y_boot[start:start + chunk]
            wc = w[start:start + chunk]
            sy = np.sign(yc[:, :, None] - yc[:, None, :])
            numerator[start:start + chunk] = np.einsum("bi,ij,bij,bj->b", wc, sx, sy, wc)
        total = w.sum(axis=1) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = numerator / np.sqrt((total - ties_x) * (total - ties_y))
    ci = percentile_interval(boot, confidence_level)
    return CorrelationResult(observed.statistic, observed.pvalue, ci, observed.n, method)
