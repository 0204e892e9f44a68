"""Distribution alignment: does the LLM reproduce the *spread* of human opinion on an item?

Per item, the Jensen–Shannon divergence (base 2, so in [0, 1]) between the LLM's label distribution
(its label probabilities where the provider exposed them, else the share of its parsed samples giving each
value; averaged over samples) and the human label distribution (the share of
annotators giving each value), on the shared value domain (the distinct human rating values). An LLM
value that is not a domain value goes to the nearest level; one exactly halfway between two levels
(a Likert 0.25 between "No" = 0 and "Unsure" = 0.5) gives half its mass to each, rather than silently
to the lower one (`level_weights`; the number of such values is reported). Only answers with parse
status ok contribute (refusals' label probabilities are never used). The per-item divergences are averaged over the items
where both distributions exist; for a group G the human distribution uses G's annotators only.
This is the distributional-alignment view of e.g. Santurkar et al. 2023 ("Whose opinions do language
models reflect?") and Meister et al. 2024 ("Benchmarking distributional alignment of LLMs").
"""

from __future__ import annotations

import numpy as np
from accord.analysis.agreement import snap_to_domain, value_count_table
from scipy.spatial import distance

TIE_RULE = "a value halfway between two levels gives half its mass to each"


def level_weights(values: np.ndarray, domain: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Map values to domain levels: (lower index, upper index, weight of the lower level, number of ties).

    A value goes wholly to its nearest level (lower = upper); a value exactly halfway between two
    neighbouring levels splits its mass 0.5 / 0.5. Values must be finite."""
    values = np.asarray(values, dtype=float)
    domain = np.asarray(domain, dtype=float)
    hi = np.clip(np.searchsorted(domain, values), 0, domain.size - 1)
    lo = np.clip(hi - 1, 0, domain.size - 1)
    d_lo = np.abs(values - domain[lo])
    d_hi = np.abs(domain[hi] - values)
    scale = 1e-9 * max(1.0, float(np.max(np.abs(domain))) if domain.size else 1.0)
    tie = (lo != hi) & (np.abs(d_lo - d_hi) <= scale)
    nearer_lo = d_lo < d_hi
    lower = np.where(tie | nearer_lo, lo, hi)
    upper = np.where(tie, hi, lower)
    w_lower = np.where(tie, 0.5, 1.0)
    return lower, upper, w_lower, int(tie.sum())


def _add_mass(table: np.ndarray, rows: np.ndarray, values: np.ndarray, mass: np.ndarray,
              domain: np.ndarray) -> int:
    lower, upper, w_lower, n_ties = level_weights(values, domain)
    np.add.at(table, (rows, lower), mass * w_lower)
    np.add.at(table, (rows, upper), mass * (1.0 - w_lower))
    return n_ties


def label_distribution(
    item_index: np.ndarray, values: np.ndarray, n_items: int, domain: np.ndarray
) -> np.ndarray:
    """n_items × len(domain) probability table from long (item row, value) pairs; all-zero rows
    (no values) stay zero. Values are mapped to levels by `level_weights`."""
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values) & (np.asarray(item_index) >= 0)
    counts = np.zeros((n_items, domain.size))
    _add_mass(counts, np.asarray(item_index)[ok], values[ok], np.ones(int(ok.sum())), domain)
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / np.maximum(total, 1.0), 0.0)


def mixed_distribution(
    item_index: np.ndarray, values: np.ndarray, value_probs: list[dict[float, float] | None], n_items: int,
    domain: np.ndarray
) -> tuple[np.ndarray, int]:
    """n_items × len(domain) table of the LLM's answer distribution: each row (sample) contributes its label
    probabilities where the provider gave them (mapped to values, snapped to the domain), else a one-hot of
    its parsed value; an item's distribution is the mean over its rows. Returns the table and how many rows
    contributed probabilities."""
    item_index = np.asarray(item_index)
    values = np.asarray(values, dtype=float)
    table = np.zeros((n_items, domain.size))
    weights = np.zeros(n_items)
    with_probs = 0
    for row, (item, value, probs) in enumerate(zip(item_index, values, value_probs)):
        if item < 0:
            continue
        if probs:
            keys = np.fromiter(probs.keys(), dtype=float)
            mass = np.fromiter(probs.values(), dtype=float)
            total = mass.sum()
            if total > 0 and np.isfinite(total) and np.all(np.isfinite(keys)):
                _add_mass(table, np.full(keys.size, item), keys, mass / total, domain)
                weights[item] += 1.0
                with_probs += 1
                continue
        if np.isfinite(value):
            _add_mass(table, np.array([item]), np.array([value]), np.ones(1), domain)
            weights[item] += 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weights[:, None] > 0, table / np.maximum(weights, 1.0)[:, None], 0.0), with_probs


def human_distribution(ratings: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """items × values share of annotators giving each value (zero rows for unrated items)."""
    counts = value_count_table(snap_to_domain(ratings, domain), domain)
    total = counts.sum(axis=1, keepdims=True)
    return np.where(total > 0, counts / np.maximum(total, 1.0), 0.0)


def jensen_shannon_per_item(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """JS divergence (base 2) per row of two items × values probability tables; NaN where either row
    is empty."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"distribution tables differ in shape: {p.shape} vs {q.shape}")
    ok = (p.sum(axis=1) > 0) & (q.sum(axis=1) > 0)
    out = np.full(p.shape[0], np.nan)
    if ok.any():
        out[ok] = distance.jensenshannon(p[ok], q[ok], base=2, axis=1) ** 2
    return out


def mean_jensen_shannon(p: np.ndarray, q: np.ndarray) -> tuple[float, int]:
    """Mean per-item JS divergence and the number of items it averages."""
    per_item = jensen_shannon_per_item(p, q)
    ok = np.isfinite(per_item)
    if not ok.any():
        raise ValueError("no item has both an LLM and a human label distribution")
    return float(per_item[ok].mean()), int(ok.sum())
