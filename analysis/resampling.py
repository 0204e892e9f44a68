"""Random streams, bootstrap weights, confidence intervals and multiple-testing correction.

The bootstrap here works on *weights*: a resample of n items is represented by the number of times
each item was drawn (a row of a B × n count matrix). Any statistic written as a function of item
weights (weighted moments, weighted ranks, weighted pair counts) is then evaluated for all B
resamples at once with matrix products, and gives exactly the value the statistic takes on the
resampled data. The jackknife (for BCa) is the same with the weight matrix 1 - I.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Iterator

import numpy as np
from accord.analysis.results import ConfidenceInterval
from scipy import special, stats


def derive_rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the string form of ``keys`` (stable across runs;
    Python's ``hash`` is salted per process and is not used)."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode("utf-8")) for k in keys]
    return np.random.default_rng(words)


def resample_counts(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """B × n matrix: how often each of n items is drawn in each of B bootstrap resamples."""
    if n < 1:
        raise ValueError("cannot resample an empty set of items")
    idx = rng.integers(0, n, size=(n_resamples, n))
    idx += (np.arange(n_resamples) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(float)


def jackknife_weights(n: int) -> np.ndarray:
    """n × n weights of the n leave-one-out samples."""
    return 1.0 - np.eye(n)


def percentile_interval(boot: np.ndarray, confidence_level: float) -> ConfidenceInterval:
    finite = boot[np.isfinite(boot)]
    if finite.size == 0:
        return ConfidenceInterval(float("nan"), float("nan"))
    alpha = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return ConfidenceInterval(float(low), float(high))


def bca_interval(
    theta_hat: float, boot: np.ndarray, jack: np.ndarray, confidence_level: float
) -> ConfidenceInterval:
    """Bias-corrected and accelerated interval (Efron 1987), as in ``scipy.stats.bootstrap``.

    Falls back to the percentile interval when the correction is undefined (e.g. a bootstrap
    distribution with all mass on one side of ``theta_hat`` or a degenerate jackknife)."""
    finite = boot[np.isfinite(boot)]
    jack = jack[np.isfinite(jack)]
    if finite.size == 0 or not np.isfinite(theta_hat):
        return ConfidenceInterval(float("nan"), float("nan"))
    prop_below = (np.sum(finite < theta_hat) + 0.5 * np.sum(finite == theta_hat)) / finite.size
    if prop_below <= 0.0 or prop_below >= 1.0 or jack.size < 3:
        return percentile_interval(finite, confidence_level)
    z0 = special.ndtri(prop_below)
    centred = jack.mean() - jack
    denom = 6.0 * np.sum(centred**2) ** 1.5
    a_hat = float(np.sum(centred**3) / denom) if denom > 0 else 0.0
    alpha = (1.0 - confidence_level) / 2.0
    quantiles = []
    for z_alpha in (special.ndtri(alpha), special.ndtri(1.0 - alpha)):
        adj = z0 + (z0 + z_alpha) / (1.0 - a_hat * (z0 + z_alpha))
        quantiles.append(special.ndtr(adj))
    if not all(np.isfinite(quantiles)):
        return percentile_interval(finite, confidence_level)
    low, high = np.quantile(finite, quantiles)
    return ConfidenceInterval(float(low), float(high))


def weighted_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    n_resamples: int,
    rng: np.random.Generator,
    confidence_level: float = 0.95,
    method: str = "bca",
    max_jackknife_n: int = 2000,
    counts: np.ndarray | None = None,
) -> tuple[float, np.ndarray, ConfidenceInterval, str]:
    """Bootstrap a weight-vectorised statistic.

    ``statistic(W)`` takes a k × n weight matrix and returns k values. Returns the observed value
    (all weights 1), the B bootstrap values, the interval and the interval method actually used
    ("bca" needs the jackknife; above ``max_jackknife_n`` items the percentile interval is used).
    ``counts`` (B × n, from `resample_counts`) reuses resamples drawn elsewhere, e.g. the same
    resamples for several statistics of one item set (common random numbers); else they are drawn
    from ``rng``."""
    if method not in ("bca", "percentile"):
        raise ValueError(f"unknown confidence interval method {method!r} (use 'bca' or 'percentile')")
    if counts is None:
        counts = resample_counts(n, n_resamples, rng)
    elif counts.shape[1] != n:
        raise ValueError(f"resample counts have {counts.shape[1]} columns for {n} items")
    theta = float(statistic(np.ones((1, n)))[0])
    boot = statistic(counts)
    if method == "bca" and n <= max_jackknife_n:
        jack = statistic(jackknife_weights(n))
        return theta, boot, bca_interval(theta, boot, jack, confidence_level), "bca"
    return theta, boot, percentile_interval(boot, confidence_level), "percentile"


def benjamini_hochberg(pvalues: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (scipy.stats.false_discovery_control); NaN entries stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def permutation_pvalue(
    observed: np.ndarray, null: np.ndarray, alternative: str = "two-sided"
) -> np.ndarray:
    """Permutation p-values ``(1 + #extreme) / (1 + K)`` (Phipson & Smyth 2010).

    ``null`` has the permutations on axis 0; non-finite null values count as extreme (conservative).
    ``alternative``: "greater", "less", "equal-tailed" (two-sided: twice the smaller one-sided p, capped
    at 1, so the observation is placed within the null distribution wherever that is centred) or
    "two-sided" (|null| >= |observed|, valid only for a null symmetric about 0; kept for statistics
    that are, e.g. a centred one).
    """
    if alternative == "equal-tailed":
        upper = permutation_pvalue(observed, null, "greater")
        lower = permutation_pvalue(observed, null, "less")
        return np.asarray(np.minimum(1.0, 2.0 * np.minimum(upper, lower)), dtype=float)
    observed = np.asarray(observed, dtype=float)
    null = np.asarray(null, dtype=float)
    k = null.shape[0]
    tol = 1e-12 * np.maximum(1.0, np.abs(observed))
    if alternative == "two-sided":
        extreme = np.abs(null) >= np.abs(observed) - tol
    elif alternative == "greater":
        extreme = null >= observed - tol
    elif alternative == "less":
        extreme = null <= observed + tol
    else:
        raise ValueError(f"unknown alternative {alternative!r}")
    extreme |= ~np.isfinite(null)
    p = (1.0 + extreme.sum(axis=0)) / (1.0 + k)
    return np.where(np.isfinite(observed), p, np.nan)


def label_permutations(labels: np.ndarray, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """K × len(labels) matrix, each row a random permutation of ``labels`` (group sizes kept)."""
    return rng.permuted(np.tile(labels, (n_permutations, 1)), axis=1)


def permutation_blocks(
    perms: np.ndarray, cells_per_permutation: int, max_cells: int
) -> Iterator[tuple[int, np.ndarray]]:
    """The rows of ``perms`` in blocks of at most ``max_cells // cells_per_permutation`` rows (at least one),
    each with the index of its first row: a permutation test's working arrays stay within ``max_cells``."""
    chunk = max(1, max_cells // max(1, cells_per_permutation))
    for start in range(0, perms.shape[0], chunk):
        yield start, perms[start:start + chunk]


def null_centred_effect(
    observed: np.ndarray, null: np.ndarray, confidence_level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observed statistic relative to its permutation null: ``observed - mean(null)``, with the interval
    obtained by inverting the equal-tailed permutation test under a shift model,
    ``[observed - q_(1+c)/2, observed - q_(1-c)/2]`` of the null (a shift delta is inside iff the test of
    ``observed - delta`` against the null does not reject). Returns (effect, low, high, null mean);
    non-finite null values are ignored."""
    observed = np.asarray(observed, dtype=float)
    null = np.asarray(null, dtype=float)
    alpha = (1.0 - confidence_level) / 2.0
    finite = np.where(np.isfinite(null), null, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmean(finite, axis=0)
        q_low, q_high = np.nanquantile(finite, [alpha, 1.0 - alpha], axis=0)
    return observed - centre, observed - q_high, observed - q_low, centre
