"""Binary views: the LLM's thresholded score against a binary reference label.

Predicted positive = LLM score >= threshold (0.5 on a 0..1 scale, e.g. "unsafe"). References: the
human majority label thresholded the same way, or the expert label (Yes/unsafe/1 -> 1, No/safe/0 -> 0,
see `accord.analysis.frames.binary_expert_labels`). Accuracy, precision, recall and F1 of the
positive class, as in sklearn.metrics; a metric whose denominator is zero is NaN.
"""

from __future__ import annotations

import numpy as np
from accord.analysis.frames import modal_values
from accord.analysis.results import BinaryScores


def binarise(values: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """1.0 where value >= threshold, 0.0 below, NaN stays NaN."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isnan(values), np.nan, (values >= threshold).astype(float))


def majority_labels(ratings: np.ndarray) -> np.ndarray:
    """Most frequent rating per item of an items × annotators matrix (ties: nearest the item mean,
    then the smaller value); NaN for items nobody rated."""
    ratings = np.asarray(ratings, dtype=float)
    rows = np.repeat(np.arange(ratings.shape[0]), ratings.shape[1])
    return modal_values(rows, ratings.ravel(), ratings.shape[0])


def binary_scores(predicted: np.ndarray, reference: np.ndarray) -> BinaryScores:
    """Accuracy, precision, recall and F1 of 0/1 predictions (pairs with a NaN are dropped)."""
    p = np.asarray(predicted, dtype=float)
    r = np.asarray(reference, dtype=float)
    if p.shape != r.shape:
        raise ValueError(f"predicted and reference differ in shape: {p.shape} vs {r.shape}")
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    for name, arr in (("predicted", p), ("reference", r)):
        if not np.isin(arr, (0.0, 1.0)).all():
            raise ValueError(f"{name} labels must be 0/1, got {np.unique(arr).tolist()}")
    n = int(p.size)
    if n == 0:
        raise ValueError("no item has both a prediction and a reference label")
    tp = float(np.sum((p == 1) & (r == 1)))
    fp = float(np.sum((p == 1) & (r == 0)))
    fn = float(np.sum((p == 0) & (r == 1)))
    nan = float("nan")
    precision = tp / (tp + fp) if tp + fp > 0 else nan
    recall = tp / (tp + fn) if tp + fn > 0 else nan
    if np.isfinite(precision) and np.isfinite(recall) and precision + recall > 0:
        f1 = 2 * precision * recall / (precision + recall)
    elif tp + fp + fn > 0:
        f1 = 0.0 if tp == 0 else nan
    else:
        f1 = nan
    return BinaryScores(
        accuracy=float(np.mean(p == r)),
        precision=precision,
        recall=recall,
        f1=f1,
        n=n,
        n_positive_reference=int(r.sum()),
        n_positive_predicted=int(p.sum()),
    )
