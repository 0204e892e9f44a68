"""The human baseline: how well does one annotator agree with the others?

For annotator j, r_j = Pearson(y_j, m_-j) over the items j rated, where m_-j,i is the mean rating of
item i by the *other* annotators (leave-one-out; items nobody else rated are dropped). With
``leave_one_out=False`` the full item mean (including j) is used instead, which inflates r_j.

The LLM is then placed in this distribution: its correlation with the full human mean is compared
with the annotators' leave-one-out correlations (the LLM is never part of the mean it is compared
with, so the leave-one-out r is the like-for-like human number). This follows the annotator-vs-rest
comparison of "Annotation alignment: Comparing LLM and human annotations of conversational safety"
(Movva, Koh & Pierson 2024), which reports a median annotator r of 0.51 on DICES-350.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from accord.analysis.correlation import paired_column_pearson
from accord.analysis.results import AnnotatorBaseline

HISTOGRAM_EDGES = np.round(np.linspace(-1.0, 1.0, 21), 10)


def annotator_agreement(
    ratings: np.ndarray,
    annotator_ids: list[str] | None = None,
    *,
    leave_one_out: bool = True,
    min_items: int = 3,
) -> AnnotatorBaseline:
    """Each annotator's Pearson r with the (leave-one-out) mean of the others.

    ``ratings``: items × annotators, NaN = not rated. r_j is NaN when the annotator rated fewer than
    ``min_items`` items that someone else also rated, or gave (or faced) constant ratings there.
    Summary statistics (median, IQR) are over the defined r_j."""
    ratings = np.asarray(ratings, dtype=float)
    if ratings.ndim != 2:
        raise ValueError(f"ratings must be a 2-d items × annotators array, got shape {ratings.shape}")
    n_ann = ratings.shape[1]
    if annotator_ids is None:
        annotator_ids = [str(j) for j in range(n_ann)]
    if len(annotator_ids) != n_ann:
        raise ValueError(f"{len(annotator_ids)} annotator ids for {n_ann} rating columns")
    mask = np.isfinite(ratings)
    zeros = np.where(mask, ratings, 0.0)
    total = zeros.sum(axis=1, keepdims=True)
    count = mask.sum(axis=1, keepdims=True).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if leave_one_out:
            others = np.where(mask & (count > 1), (total - zeros) / (count - 1.0), np.nan)
        else:
            others = np.where(mask, total / count, np.nan)
    r, n = paired_column_pearson(np.where(mask, ratings, np.nan), others, min_n=min_items)
    defined = r[np.isfinite(r)]
    if defined.size:
        q25, median, q75 = (float(v) for v in np.quantile(defined, [0.25, 0.5, 0.75]))
    else:
        q25 = median = q75 = float("nan")
    return AnnotatorBaseline(
        annotator_ids=list(annotator_ids),
        r=r,
        n_items=n,
        median=median,
        q25=q25,
        q75=q75,
        n_defined=int(defined.size),
        leave_one_out=leave_one_out,
    )


def baseline_details(baseline: AnnotatorBaseline) -> dict[str, Any]:
    """Distribution summary for `MetricRecord.details`: quantiles, histogram, counts."""
    defined = baseline.r[np.isfinite(baseline.r)]
    details: dict[str, Any] = {
        "leave_one_out": baseline.leave_one_out,
        "n_annotators": len(baseline.annotator_ids),
        "n_defined": baseline.n_defined,
        "q25": baseline.q25,
        "q75": baseline.q75,
        "iqr": baseline.q75 - baseline.q25,
    }
    if defined.size:
        qs = [0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0]
        details["quantiles"] = {f"{q:g}": float(v) for q, v in zip(qs, np.quantile(defined, qs))}
        counts, _ = np.histogram(defined, bins=HISTOGRAM_EDGES)
        details["histogram"] = {"edges": HISTOGRAM_EDGES.tolist(), "counts": counts.tolist()}
        details["mean"] = float(defined.mean())
    return details
