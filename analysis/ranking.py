"""Agreement among rankings: Kendall's W (coefficient of concordance) of several judges ranking the same
subject models, with its Friedman chi-square test.

``ranks`` is m raters x n objects (each row a ranking or scores; rows are re-ranked with average ranks for
ties). W = 12 S / (m^2 (n^3 - n) - m T) with T the tie correction sum(t^3 - t) over each rater's tie groups;
chi2 = m (n - 1) W is the Friedman statistic (scipy.stats.friedmanchisquare computes the same number, tested),
with n - 1 degrees of freedom."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class KendallW:
    w: float
    chi2: float
    pvalue: float
    m: int   # raters
    n: int   # objects ranked


def kendall_w(ranks: np.ndarray) -> KendallW:
    r = np.asarray(ranks, dtype=float)
    if r.ndim != 2 or r.shape[0] < 2 or r.shape[1] < 2:
        raise ValueError(f"need at least 2 raters x 2 objects, got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("every rater must rank every object (no missing values)")
    m, n = r.shape
    ranked = np.vstack([stats.rankdata(row) for row in r])
    totals = ranked.sum(axis=0)
    s = float(((totals - totals.mean()) ** 2).sum())
    ties = 0.0
    for row in ranked:
        _, counts = np.unique(row, return_counts=True)
        ties += float((counts ** 3 - counts).sum())
    denominator = m * m * (n ** 3 - n) - m * ties
    if denominator <= 0:
        raise ValueError("every rater ties every object: W is undefined")
    w = 12.0 * s / denominator
    chi2 = m * (n - 1) * w
    return KendallW(w, chi2, float(stats.chi2.sf(chi2, n - 1)), m, n)
