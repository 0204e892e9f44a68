"""Prevalence with a judge's error corrected (Rogan & Gladen 1978).

A judge (LLM rater) labels items that people did not rate; the share it calls positive ("unsafe") is biased by
its errors. On the items people did rate, its sensitivity Se and specificity Sp against the people's label are
measured, and the corrected prevalence is

    pi = (p_apparent + Sp - 1) / (Se + Sp - 1),   clipped to [0, 1].

The interval carries the uncertainty of all three estimates (delta method; Greenland 1996, Reiczigel, Foldi &
Ozsvari 2010): Var(pi) = [Var(p) + pi^2 Var(Se) + (1 - pi)^2 Var(Sp)] / (Se + Sp - 1)^2 with binomial
variances p(1-p)/n of each, and a normal interval clipped to [0, 1]. The raw share comes with its Wilson
interval. With Se + Sp <= 1 the judge carries no information and the correction is undefined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint


@dataclass
class Prevalence:
    raw: float
    raw_ci: tuple[float, float]
    corrected: float
    corrected_ci: tuple[float, float]
    sensitivity: float
    specificity: float
    n_unrated: int  # items the prevalence is estimated on (judge only)
    n_positive: int  # validation items the people labelled positive
    n_negative: int


def rogan_gladen(apparent: float, sensitivity: float, specificity: float) -> float:
    """The corrected prevalence, clipped to [0, 1]."""
    youden = sensitivity + specificity - 1.0
    if youden <= 0:
        raise ValueError("the judge is no better than chance on the rated items (sensitivity + specificity <= 1), "
                         "so its error cannot be corrected")
    return float(np.clip((apparent + specificity - 1.0) / youden, 0.0, 1.0))


def corrected_prevalence(judge_unrated: np.ndarray, judge_rated: np.ndarray, truth_rated: np.ndarray,
                         confidence_level: float = 0.95) -> Prevalence:
    """``judge_unrated``: the judge's 0/1 labels on items without a human label (NaN = no answer);
    ``judge_rated``/``truth_rated``: its labels and the people's on the validation items."""
    u = np.asarray(judge_unrated, dtype=float)
    u = u[np.isfinite(u)]
    j, t = np.asarray(judge_rated, dtype=float), np.asarray(truth_rated, dtype=float)
    ok = np.isfinite(j) & np.isfinite(t)
    j, t = j[ok], t[ok]
    if u.size == 0:
        raise ValueError("every item the judge answered was also rated by people; nothing to extrapolate to")
    pos, neg = t == 1, t == 0
    if not pos.any() or not neg.any():
        raise ValueError(f"the validation items need both labels to measure sensitivity and specificity "
                         f"({int(pos.sum())} positive, {int(neg.sum())} negative)")
    n_u, n_pos, n_neg = u.size, int(pos.sum()), int(neg.sum())
    apparent = float(u.mean())
    se = float(j[pos].mean())
    sp = float(1.0 - j[neg].mean())
    pi = rogan_gladen(apparent, se, sp)
    raw_low, raw_high = proportion_confint(int(u.sum()), n_u, alpha=1 - confidence_level, method="wilson")
    youden = se + sp - 1.0
    var = (apparent * (1 - apparent) / n_u + pi**2 * se * (1 - se) / n_pos
           + (1 - pi) ** 2 * sp * (1 - sp) / n_neg) / youden**2
    z = float(stats.norm.ppf(0.5 + confidence_level / 2))
    half = z * float(np.sqrt(var))
    return Prevalence(apparent, (float(raw_low), float(raw_high)), pi,
                      (float(max(0.0, pi - half)), float(min(1.0, pi + half))), se, sp, n_u, n_pos, n_neg)
