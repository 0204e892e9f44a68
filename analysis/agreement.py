"""Chance-corrected agreement: Krippendorff's alpha, Cohen's kappa, Fleiss' kappa.

- Krippendorff's alpha (Krippendorff 2004; Hayes & Krippendorff 2007) via the ``krippendorff``
  package, which wants a raters × units matrix; ordinal alpha uses the full value domain so that
  unused categories still count in the ordinal distances.
- Delta alpha: alpha of the humans plus the LLM as one more rater, minus alpha of the humans alone
  (positive = the LLM's labels are more in line with the crowd than a typical member's).
- Cohen's kappa (Cohen 1960; linearly weighted for ordinal data, Cohen 1968) between the LLM's label
  and the human majority label, via statsmodels.stats.inter_rater.cohens_kappa.
- Fleiss' kappa (Fleiss 1971) among the humans, via statsmodels, defined only when every item has
  the same number of ratings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import krippendorff
import numpy as np
from statsmodels.stats import inter_rater

Level = Literal["nominal", "ordinal", "interval", "ratio"]
LEVELS: tuple[Level, ...] = ("nominal", "ordinal", "interval", "ratio")
# With more distinct values than this, interval alpha uses the closed form (`interval_alpha`).
MAX_PACKAGE_VALUES = 20


def interval_alpha(ratings: np.ndarray) -> float:
    """Krippendorff's interval alpha of an items × raters matrix from per-item moments.

    With m_u ratings on unit u (only units with m_u >= 2 count) and n = sum m_u:
    D_o = (1/n) sum_u 2 (m_u sum x^2 - (sum x)^2) / (m_u - 1) and
    D_e = 2 (n sum x^2 - (sum x)^2) / (n (n - 1)), alpha = 1 - D_o / D_e; equal to
    ``krippendorff.alpha(ratings.T, level_of_measurement="interval")`` (tested)."""
    ratings = np.asarray(ratings, dtype=float)
    mask = np.isfinite(ratings)
    m = mask.sum(axis=1).astype(float)
    v = np.where(mask, ratings, 0.0)
    s1, s2 = v.sum(axis=1), (v * v).sum(axis=1)
    pair = m >= 2
    m, s1, s2 = m[pair], s1[pair], s2[pair]
    n = m.sum()
    if n < 2:
        return float("nan")
    d_o = np.sum(2.0 * (m * s2 - s1 * s1) / (m - 1.0)) / n
    d_e = 2.0 * (n * s2.sum() - s1.sum() ** 2) / (n * (n - 1.0))
    if d_e <= 0:
        return float("nan")
    return float(1.0 - d_o / d_e)


def krippendorff_alpha(
    ratings: np.ndarray, level: str = "interval", value_domain: np.ndarray | None = None
) -> float:
    """Krippendorff's alpha of an items × raters matrix (NaN = missing).

    Raises ValueError when alpha is undefined (fewer than two values in the data, or no item with
    two ratings)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level of measurement {level!r}; use one of {LEVELS}")
    ratings = np.asarray(ratings, dtype=float)
    if ratings.ndim != 2:
        raise ValueError(f"ratings must be items × raters, got shape {ratings.shape}")
    counts = np.isfinite(ratings).sum(axis=1)
    if not np.any(counts >= 2):
        raise ValueError("Krippendorff's alpha needs at least one item with two ratings")
    present = np.unique(ratings[np.isfinite(ratings)])
    if present.size < 2:
        raise ValueError("Krippendorff's alpha is undefined: all ratings have the same value")
    if value_domain is not None:
        value_domain = np.asarray(value_domain, dtype=float)
        outside = np.setdiff1d(present, value_domain)
        if outside.size:
            raise ValueError(f"ratings {outside.tolist()} are outside the value domain "
                             f"{value_domain.tolist()}")
    if level == "interval" and present.size > MAX_PACKAGE_VALUES:
        # the package builds a values × values coincidence matrix per unit, which is slow for
        # continuous scores; the closed form from per-unit moments gives the same alpha
        value = interval_alpha(ratings)
        if not np.isfinite(value):
            raise ValueError("Krippendorff's alpha is undefined for these ratings (no expected disagreement)")
        return value
    # pairable units only: keeps the package's value-count matrix small for sparse data
    data = ratings[counts >= 2].T
    # the domain matters for ordinal distances only; for interval/ratio it would just enlarge the
    # package's values × values matrices
    kwargs = {"value_domain": value_domain} if value_domain is not None and level == "ordinal" else {}
    value = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level, **kwargs))
    if not np.isfinite(value):
        raise ValueError("Krippendorff's alpha is undefined for these ratings (no expected disagreement)")
    return value


def snap_to_domain(values: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """Map each value to the nearest domain value (NaN stays NaN)."""
    values = np.asarray(values, dtype=float)
    domain = np.asarray(domain, dtype=float)
    out = np.full(values.shape, np.nan)
    ok = np.isfinite(values)
    out[ok] = domain[np.argmin(np.abs(values[ok, None] - domain[None, :]), axis=1)]
    return out


@dataclass
class DeltaAlpha:
    alpha_humans: float
    alpha_with_llm: float
    delta: float
    level: str


def delta_alpha(
    ratings: np.ndarray,
    llm_values: np.ndarray,
    level: str = "interval",
    value_domain: np.ndarray | None = None,
) -> DeltaAlpha:
    """Change in Krippendorff's alpha when the LLM joins the human raters as one more rater.

    ``llm_values`` has one value per item (NaN = no answer); for nominal/ordinal levels pass the
    LLM's labels on the human value domain (see `snap_to_domain`)."""
    ratings = np.asarray(ratings, dtype=float)
    llm_values = np.asarray(llm_values, dtype=float)
    if llm_values.shape != (ratings.shape[0],):
        raise ValueError(f"llm_values must have one value per item ({ratings.shape[0]}), "
                         f"got shape {llm_values.shape}")
    if not np.isfinite(llm_values).any():
        raise ValueError("the LLM has no parsed answer on any item")
    domain = value_domain
    if domain is not None and level == "ordinal":
        domain = np.union1d(domain, np.unique(llm_values[np.isfinite(llm_values)]))
    base = krippendorff_alpha(ratings, level, domain)
    joined = krippendorff_alpha(np.column_stack([ratings, llm_values]), level, domain)
    return DeltaAlpha(base, joined, joined - base, level)


@dataclass
class KappaResult:
    statistic: float
    confidence_interval: tuple[float, float]
    pvalue: float
    n: int
    weights: str


def cohen_kappa(
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    domain: np.ndarray,
    weights: str | None = None,
) -> KappaResult:
    """Cohen's kappa between two label vectors on a shared ordered domain (NaN pairs dropped).

    ``weights``: None (unweighted), 'linear' or 'quadratic' (statsmodels' ``wt``; distances by
    position in the domain). The interval is statsmodels' asymptotic 95% interval."""
    a = np.asarray(labels_a, dtype=float)
    b = np.asarray(labels_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"label vectors differ in length: {a.shape} vs {b.shape}")
    domain = np.asarray(domain, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 2:
        raise ValueError(f"Cohen's kappa needs at least 2 items labelled by both (n={a.size})")
    ia = np.searchsorted(domain, a)
    ib = np.searchsorted(domain, b)
    bad = (ia >= domain.size) | (ib >= domain.size)
    bad |= (domain[np.minimum(ia, domain.size - 1)] != a) | (domain[np.minimum(ib, domain.size - 1)] != b)
    if bad.any():
        raise ValueError(f"labels outside the domain {domain.tolist()}")
    table = np.zeros((domain.size, domain.size))
    np.add.at(table, (ia, ib), 1.0)
    # expected agreement of 1 (both raters always use one and the same category) leaves kappa undefined
    pa = table.sum(axis=1) / a.size
    pb = table.sum(axis=0) / a.size
    if np.isclose(np.sum(pa * pb), 1.0):
        raise ValueError("Cohen's kappa is undefined: both raters use a single, identical category")
    with np.errstate(invalid="ignore", divide="ignore"):
        res = inter_rater.cohens_kappa(table, wt=weights)
    kappa = float(res["kappa"])
    if not np.isfinite(kappa):
        raise ValueError("Cohen's kappa is undefined for these labels")
    return KappaResult(
        kappa,
        (float(res["kappa_low"]), float(res["kappa_upp"])),
        float(res["pvalue_two_sided"]),
        int(a.size),
        weights or "none",
    )


def value_count_table(ratings: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """items × values table of how many raters gave each domain value to each item."""
    ratings = np.asarray(ratings, dtype=float)
    domain = np.asarray(domain, dtype=float)
    return np.stack([(ratings == v).sum(axis=1) for v in domain], axis=1).astype(float)


def fleiss_kappa(ratings: np.ndarray, domain: np.ndarray) -> float:
    """Fleiss' kappa of an items × raters matrix; every rated item must have the same number of
    ratings (the raters may differ between items). Items without ratings are ignored."""
    ratings = np.asarray(ratings, dtype=float)
    counts = np.isfinite(ratings).sum(axis=1)
    rated = counts > 0
    if not rated.any():
        raise ValueError("Fleiss' kappa: no rated item")
    sizes = np.unique(counts[rated])
    if sizes.size != 1:
        raise ValueError(
            f"Fleiss' kappa needs the same number of ratings per item; found {sizes.min()}..{sizes.max()}"
        )
    if sizes[0] < 2:
        raise ValueError("Fleiss' kappa needs at least 2 ratings per item")
    table = value_count_table(ratings[rated], domain)
    if not np.allclose(table.sum(axis=1), sizes[0]):
        raise ValueError("Fleiss' kappa: some ratings are outside the value domain")
    p = table.sum(axis=0) / table.sum()
    if np.isclose(np.sum(p * p), 1.0):
        raise ValueError("Fleiss' kappa is undefined: every rating has the same value")
    return float(inter_rater.fleiss_kappa(table, method="fleiss"))
