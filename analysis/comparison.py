"""Model against model: is one LLM rater more aligned with the people than another, on the same items?

For every pair of raters A, B (model x template) and a statistic T of a rater against the people
(Pearson r with the mean human rating; Cohen's kappa with the human majority label) we report the
paired difference T(A) - T(B) on the items both raters scored, with

- a paired item-bootstrap interval: items are resampled with their (A, B, people) triple, so the
  dependence of the two statistics (same items, same human side) is kept;
- a test of no difference: for correlations Steiger's (1980) Z for two dependent correlations with a
  variable in common (r(A, y) vs r(B, y), given r(A, B)); for kappa a paired permutation test that
  swaps A's and B's labels item by item (under no difference the two raters are exchangeable);
- Holm's adjustment across the pairs of one statistic (statsmodels ``multipletests``).

A winner is named only when the Holm-adjusted p is below alpha *and* the interval excludes zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from accord.analysis.correlation import WeightedCorrelation
from accord.analysis.resampling import resample_counts, weighted_bootstrap
from scipy import stats
from statsmodels.stats.multitest import multipletests


@dataclass
class SteigerResult:
    statistic: float  # Z
    pvalue: float  # two-sided
    n: int


def steiger_z(r_ay: float, r_by: float, r_ab: float, n: int) -> SteigerResult:
    """Steiger's (1980) Z test of H0: rho(A, y) = rho(B, y) for correlations sharing y (his eq. 14, Fisher z
    with the pooled correlation rm = (r_ay + r_by) / 2):

    psi = r_ab (1 - 2 rm^2) - rm^2 (1 - 2 rm^2 - r_ab^2) / 2, c = psi / (1 - rm^2)^2,
    Z = (atanh r_ay - atanh r_by) sqrt(n - 3) / sqrt(2 - 2c)."""
    if n <= 3:
        raise ValueError(f"Steiger's test needs more than 3 items (n={n})")
    if not all(np.isfinite(v) for v in (r_ay, r_by, r_ab)):
        raise ValueError("Steiger's test needs three defined correlations")
    rm = (r_ay + r_by) / 2.0
    rm2 = rm * rm
    if rm2 >= 1.0 - 1e-12 or abs(r_ab) >= 1.0 - 1e-12:
        raise ValueError("Steiger's test is undefined: a perfect correlation (identical or perfectly aligned raters)")
    psi = r_ab * (1.0 - 2.0 * rm2) - 0.5 * rm2 * (1.0 - 2.0 * rm2 - r_ab * r_ab)
    c = psi / (1.0 - rm2) ** 2
    clip = 1 - 1e-12
    z = (np.arctanh(np.clip(r_ay, -clip, clip)) - np.arctanh(np.clip(r_by, -clip, clip))) * np.sqrt(n - 3.0)
    denom = 2.0 - 2.0 * c
    if denom <= 0:
        raise ValueError("Steiger's test is undefined: the two raters are (nearly) identical")
    statistic = float(z / np.sqrt(denom))
    return SteigerResult(statistic, float(2.0 * stats.norm.sf(abs(statistic))), int(n))


@dataclass
class PairedDifference:
    """T(A) - T(B) for one pair of raters on their shared items."""

    rater_a: str
    rater_b: str
    statistic: str  # "pearson_r" or "cohen_kappa"
    value_a: float
    value_b: float
    difference: float
    ci_low: float
    ci_high: float
    pvalue: float
    test: str
    n: int
    pvalue_holm: float = float("nan")
    winner: str | None = None


def _kappa_from_tables(tables: np.ndarray) -> np.ndarray:
    """Cohen's kappa of k x L x L confusion tables (weights allowed)."""
    total = tables.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        po = np.trace(tables, axis1=1, axis2=2) / total
        pe = (tables.sum(axis=2) * tables.sum(axis=1)).sum(axis=1) / (total * total)
        kappa = (po - pe) / (1.0 - pe)
    return np.where(pe < 1.0 - 1e-12, kappa, np.nan)


class _WeightedKappa:
    """Cohen's kappa of (labels, reference) as a function of item weights: ``stat(W)`` -> one value per row."""

    def __init__(self, labels: np.ndarray, reference: np.ndarray, domain: np.ndarray) -> None:
        self.size = domain.size
        a = np.searchsorted(domain, labels)
        r = np.searchsorted(domain, reference)
        self.onehot = np.zeros((labels.size, self.size * self.size))
        self.onehot[np.arange(labels.size), a * self.size + r] = 1.0

    def tables(self, w: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(w) @ self.onehot).reshape(-1, self.size, self.size)

    def __call__(self, w: np.ndarray) -> np.ndarray:
        return _kappa_from_tables(self.tables(w))


def paired_correlation_difference(
    a: np.ndarray, b: np.ndarray, y: np.ndarray, *, n_resamples: int = 1000, confidence_level: float = 0.95,
    rng: np.random.Generator | None = None, ci_method: str = "percentile", names: tuple[str, str] = ("A", "B"),
) -> PairedDifference:
    """r(a, y) - r(b, y) (Pearson) on the items where a, b and y are all defined, with a paired item-bootstrap
    interval and Steiger's Z test."""
    a, b, y = (np.asarray(v, dtype=float) for v in (a, b, y))
    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(y)
    a, b, y = a[ok], b[ok], y[ok]
    n = int(a.size)
    if n < 4:
        raise ValueError(f"fewer than 4 items scored by both raters and the people (n={n})")
    if np.ptp(a) == 0 or np.ptp(b) == 0 or np.ptp(y) == 0:
        raise ValueError("a constant rater or constant human ratings on the shared items")
    if np.array_equal(a, b):
        raise ValueError("the two raters gave identical scores on every shared item (difference 0 by construction)")
    ra, rb = WeightedCorrelation(a, y), WeightedCorrelation(b, y)
    r_ab = float(np.corrcoef(a, b)[0, 1])
    rng = rng if rng is not None else np.random.default_rng(0)
    diff, _, ci, _ = weighted_bootstrap(lambda w: ra(w) - rb(w), n, n_resamples, rng, confidence_level,
                                        ci_method)
    value_a, value_b = float(ra(np.ones((1, n)))[0]), float(rb(np.ones((1, n)))[0])
    test = steiger_z(value_a, value_b, r_ab, n)
    return PairedDifference(names[0], names[1], "pearson_r", value_a, value_b, diff, ci.low, ci.high, test.pvalue,
                            "Steiger's Z (dependent correlations with y in common)", n)


def paired_kappa_difference(
    a: np.ndarray, b: np.ndarray, reference: np.ndarray, domain: np.ndarray, *, n_resamples: int = 1000,
    n_permutations: int = 1000, confidence_level: float = 0.95, rng: np.random.Generator | None = None,
    names: tuple[str, str] = ("A", "B"),
) -> PairedDifference:
    """kappa(a, ref) - kappa(b, ref) (unweighted Cohen's kappa) on the items where all three are defined, with
    a paired item-bootstrap (percentile) interval and a paired permutation test (A's and B's labels swapped
    item by item; p = (1 + #{|null| >= |observed|}) / (1 + K), the null being symmetric about 0)."""
    a, b, reference = (np.asarray(v, dtype=float) for v in (a, b, reference))
    domain = np.asarray(domain, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(reference)
    a, b, reference = a[ok], b[ok], reference[ok]
    n = int(a.size)
    if n < 4:
        raise ValueError(f"fewer than 4 items labelled by both raters and the reference (n={n})")
    for arr in (a, b, reference):
        if not np.isin(arr, domain).all():
            raise ValueError(f"labels outside the domain {domain.tolist()}")
    ka, kb = _WeightedKappa(a, reference, domain), _WeightedKappa(b, reference, domain)
    ones = np.ones((1, n))
    value_a, value_b = float(ka(ones)[0]), float(kb(ones)[0])
    if not (np.isfinite(value_a) and np.isfinite(value_b)):
        raise ValueError("Cohen's kappa is undefined for one of the raters (a single category on both sides)")
    if np.array_equal(a, b):
        raise ValueError("the two raters gave identical labels on every shared item (difference 0 by construction)")
    rng = rng if rng is not None else np.random.default_rng(0)
    counts = resample_counts(n, n_resamples, rng)
    boot = ka(counts) - kb(counts)
    finite = boot[np.isfinite(boot)]
    alpha = (1.0 - confidence_level) / 2.0
    low, high = (np.quantile(finite, [alpha, 1.0 - alpha]) if finite.size else (np.nan, np.nan))
    swap = rng.random((n_permutations, n)) < 0.5
    table_a = (np.where(swap, 0.0, 1.0) @ ka.onehot + np.where(swap, 1.0, 0.0) @ kb.onehot)
    table_b = (np.where(swap, 1.0, 0.0) @ ka.onehot + np.where(swap, 0.0, 1.0) @ kb.onehot)
    size = domain.size
    null = (_kappa_from_tables(table_a.reshape(-1, size, size))
            - _kappa_from_tables(table_b.reshape(-1, size, size)))
    observed = value_a - value_b
    extreme = ~np.isfinite(null) | (np.abs(null) >= abs(observed) - 1e-12)
    p = float((1.0 + extreme.sum()) / (1.0 + n_permutations))
    return PairedDifference(names[0], names[1], "cohen_kappa", value_a, value_b, observed, float(low), float(high),
                            p, "paired permutation (labels of the two raters swapped per item)", n)


def adjust_and_decide(results: list[PairedDifference], alpha: float = 0.05) -> list[PairedDifference]:
    """Holm-adjust the p-values of one statistic's pairs and name a winner where the adjusted p < alpha and
    the interval excludes zero."""
    p = np.array([r.pvalue for r in results], dtype=float)
    ok = np.isfinite(p)
    adjusted = np.full(p.shape, np.nan)
    if ok.any():
        adjusted[ok] = multipletests(p[ok], method="holm")[1]
    for r, p_adj in zip(results, adjusted):
        r.pvalue_holm = float(p_adj)
        excludes_zero = np.isfinite(r.ci_low) and np.isfinite(r.ci_high) and (r.ci_low > 0 or r.ci_high < 0)
        if np.isfinite(p_adj) and p_adj < alpha and excludes_zero:
            r.winner = r.rater_a if r.difference > 0 else r.rater_b
    return results


def rater_pairs(names: list[str]) -> list[tuple[int, int]]:
    return list(combinations(range(len(names)), 2))
