"""Distribution alignment: does the LLM reproduce the *spread* of human opinion on an item?

Per item, the Jensen–Shannon divergence (base 2, so in [0, 1]) between the LLM's label distribution
(its label probabilities where the provider exposed them, else the share of its parsed samples giving each
value; averaged over samples) and the human label distribution (the share of
annotators giving each value), on the shared value domain (the distinct human rating values; LLM
values are snapped to the nearest domain value). The per-item divergences are averaged over the items
where both distributions exist; for a group G the human distribution uses G's annotators only.
This is the distributional-alignment view of e.g. Santurkar et al. 2023 ("Whose opinions do language
models reflect?") and Meister et al. 2024 ("Benchmarking distributional alignment of LLMs").
"""

from __future__ import annotations

import numpy as np
from accord.analysis.agreement import snap_to_domain, value_count_table
from scipy.spatial import distance


def label_distribution(
    item_index: np.ndarray, values: np.ndarray, n_items: int, domain: np.ndarray
) -> np.ndarray:
    """n_items × len(domain) probability table from long (item row, value) pairs; all-zero rows
    (no values) stay zero."""
    values = snap_to_domain(values, domain)
    ok = np.isfinite(values)
    codes = np.searchsorted(domain, values[ok])
    counts = np.zeros((n_items, domain.size))
    np.add.at(counts, (np.asarray(item_index)[ok], codes), 1.0)
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
    snapped = snap_to_domain(np.asarray(values, dtype=float), domain)
    table = np.zeros((n_items, domain.size))
    weights = np.zeros(n_items)
    with_probs = 0
    for row, (item, value, probs) in enumerate(zip(item_index, snapped, value_probs)):
        if item < 0:
            continue
        if probs:
            keys = snap_to_domain(np.fromiter(probs.keys(), dtype=float), domain)
            mass = np.fromiter(probs.values(), dtype=float)
            total = mass.sum()
            if total > 0 and np.isfinite(total):
                np.add.at(table[item], np.searchsorted(domain, keys), mass / total)
                weights[item] += 1.0
                with_probs += 1
                continue
        if np.isfinite(value):
            table[item, np.searchsorted(domain, value)] += 1.0
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
