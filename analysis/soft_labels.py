"""Soft labels and multi-class agreement: the measures of the learning-with-disagreement community beside JSD.

- Cross-entropy of the LLM's label distribution against the crowd's soft label (the share of annotators giving
  each value), per item H(p_human, q_llm) = -sum_v p_v log2 q_v, averaged over items. The LLM's probabilities
  are floored at ``CE_FLOOR`` and renormalised, so that a value the LLM never gives costs a large but finite
  penalty (as in sklearn's ``log_loss`` clipping). In bits, lower is better; the crowd's own entropy is the
  floor it cannot go below, and is reported beside it.
- Manhattan distance sum_v |p_v - q_v| per item (0 = identical, 2 = disjoint), averaged over items (the
  soft-label measure of the LeWiDi 2025 shared task).
- Multi-class accuracy of the LLM's modal label against the human majority label on the value domain, and the
  confusion matrix (rows: majority label, columns: LLM label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CE_FLOOR = 1e-6


def _rows(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.shape != q.shape:
        raise ValueError(f"distribution tables differ in shape: {p.shape} vs {q.shape}")
    ok = (p.sum(axis=1) > 0) & (q.sum(axis=1) > 0)
    if not ok.any():
        raise ValueError("no item has both an LLM and a human label distribution")
    return p[ok], q[ok], ok


def cross_entropy(p_human: np.ndarray, q_llm: np.ndarray, floor: float = CE_FLOOR) -> tuple[float, float, int]:
    """Mean cross-entropy (bits) of the LLM's distributions against the human soft labels, the mean entropy of
    the human soft labels (its lower bound), and the number of items."""
    p, q, _ok = _rows(p_human, q_llm)
    q = np.maximum(q, floor)
    q = q / q.sum(axis=1, keepdims=True)
    ce = -(p * np.log2(q)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    return float(ce.mean()), float(h.mean()), int(p.shape[0])


def manhattan(p_human: np.ndarray, q_llm: np.ndarray) -> tuple[float, int]:
    """Mean L1 distance between the LLM's and the humans' label distributions, and the number of items."""
    p, q, _ok = _rows(p_human, q_llm)
    return float(np.abs(p - q).sum(axis=1).mean()), int(p.shape[0])


@dataclass
class MultiClass:
    accuracy: float
    n: int
    confusion: list[list[int]]  # rows: human majority label, columns: LLM label, in domain order
    domain: list[float]


def multiclass_agreement(llm_labels: np.ndarray, majority: np.ndarray, domain: np.ndarray) -> MultiClass:
    """Accuracy and confusion matrix of LLM labels against the majority label (both on ``domain``)."""
    a, b = np.asarray(llm_labels, dtype=float), np.asarray(majority, dtype=float)
    domain = np.asarray(domain, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size == 0:
        raise ValueError("no item has both an LLM label and a human majority label")
    ia, ib = np.searchsorted(domain, a), np.searchsorted(domain, b)
    if (ia >= domain.size).any() or (ib >= domain.size).any() or not (
            np.array_equal(domain[ia], a) and np.array_equal(domain[ib], b)):
        raise ValueError(f"labels outside the value domain {domain.tolist()}")
    table = np.zeros((domain.size, domain.size), dtype=int)
    np.add.at(table, (ib, ia), 1)
    return MultiClass(float(np.mean(a == b)), int(a.size), table.tolist(), domain.tolist())
