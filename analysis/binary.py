"""Binary views: the LLM's verdict against a binary reference label.

One tie rule everywhere (binary view, format consistency, position bias): a rating is positive when it
is >= the threshold (0.5 on a 0..1 scale, e.g. "unsafe"), and an item's verdict from several ratings
(an LLM's samples, the annotators) is positive when the share of positive ratings is >= 1/2, so an
exact 50/50 tie counts as positive (`TIE_RULE`). Both sides of a comparison are built alike
(`BASES`): "vote" (default) compares the LLM's majority verdict over its samples with the annotators'
majority verdict; "mean" compares the LLM's mean score with the annotators' mean rating, each against
the threshold. The expert label maps Yes/unsafe/1 -> 1, No/safe/0 -> 0
(`accord.analysis.frames.binary_expert_labels`). Accuracy, precision, recall and F1 of the positive
class, as in sklearn.metrics (a metric whose denominator is zero is NaN), and Cohen's kappa.

A threshold outside the rating scale would make every item one class (a 0.5 threshold on a 1-5
scale marks everything positive); `check_threshold` refuses it.
"""

from __future__ import annotations

import numpy as np
from accord.analysis.frames import modal_values
from accord.analysis.results import BinaryScores
from accord.analysis.vectors import paired_floats

TIE_RULE = ("positive when the rating is >= the threshold; an item's verdict from several ratings is positive "
            "when at least half of them are positive (an exact 50/50 tie counts as positive)")
BASES = ("vote", "mean")


def check_threshold(threshold: float, scale_values: np.ndarray) -> tuple[float, float]:
    """Refuse a binary threshold that does not split the rating scale: it must lie in (min, max] of
    the observed ratings (else every item falls in one class). Returns the scale (min, max)."""
    vals = np.asarray(scale_values, dtype=float)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        raise ValueError("no ratings to place the binary threshold on")
    lo, hi = float(vals.min()), float(vals.max())
    if not (lo < threshold <= hi):
        side = "positive" if threshold <= lo else "negative"
        raise ValueError(f"binary threshold {threshold:g} is outside the rating scale [{lo:g}, {hi:g}]: every "
                         f"item would be {side}; set binary_threshold to a value in ({lo:g}, {hi:g}]")
    return lo, hi


def vote_verdicts(ratings: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of an items x raters (or items x samples) matrix: the share of ratings >= threshold and
    the verdict (share >= 1/2; NaN where the row has no rating)."""
    ratings = np.asarray(ratings, dtype=float)
    ok = np.isfinite(ratings)
    n = ok.sum(axis=1)
    pos = (ok & (ratings >= threshold)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n > 0, pos / np.maximum(n, 1), np.nan)
    return share, np.where(n > 0, (share >= 0.5).astype(float), np.nan)


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
    p, r, ok = paired_floats(predicted, reference, "predicted and reference")
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
