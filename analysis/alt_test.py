"""The Alternative Annotator Test: can this LLM stand in for an annotator, and for whom?

Calderon, Reichart & Dror, "The Alternative Annotator Test for LLM-as-a-Judge: How to Statistically Justify
Replacing Human Annotators with LLMs" (ACL 2025); reference implementation: github.com/nitaytech/AltTest
(``alt_test`` in ``alt_test_example.ipynb``), whose procedure this module follows step by step:

1. Keep the items rated by at least ``min_humans_per_item`` (2) annotators and answered by the LLM.
2. Leave out one annotator j at a time (annotators with fewer than ``min_items`` kept items are skipped).
   On each of j's items, score j's rating and the LLM's against the *remaining* annotators' ratings with the
   alignment measure: accuracy (share of the remaining ratings equal to the prediction) for labels, or
   neg_rmse (minus the root mean squared difference) for scores.
3. W_i^f = 1 if the LLM scores at least as well as j, W_i^h = 1 if j scores at least as well as the LLM.
   The advantage probability of j is rho_j = mean(W^f). A one-sided one-sample t-test of d_i = W_i^h - W_i^f
   against the margin epsilon (H0: mean d >= epsilon, H1: mean d < epsilon; scipy's ``ttest_1samp`` with
   ``alternative='less'``) gives p_j; epsilon is the cost-benefit allowance the LLM gets (0.2 for expert
   annotators, 0.15 skilled, 0.1 crowd workers, as the authors suggest).
4. Benjamini-Yekutieli at level q across the tested annotators: the LLM "wins" against the annotators whose
   null is rejected. Winning rate omega = wins / tested annotators (the LLM passes at omega >= 0.5); average
   advantage probability rho = mean of rho_j.

Beyond the reference: the winning rate and rho per annotator group (among each group's tested annotators,
with the Benjamini-Yekutieli decisions of the whole test), which says for whom the LLM can stand in.
The t-test is scipy's: t = (mean(d) - epsilon) / (sd(d) / sqrt(n)), p = the t distribution's cdf at t with
n - 1 degrees of freedom (constant differences give t = -inf or +inf, p = 0 or 1; NaN only when they equal
epsilon, and such an annotator counts as not beaten, as in the reference). Scores within 1e-12 of each other
count as ties (the reference compares floats exactly; the two agree on every exact tie).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

MEASURES = ("accuracy", "neg_rmse")
TIE_TOLERANCE = 1e-12


@dataclass
class AnnotatorOutcome:
    annotator: str
    n_items: int
    advantage_probability: float  # rho_j: share of items where the LLM does at least as well
    pvalue: float
    llm_wins: bool  # rejected by Benjamini-Yekutieli


@dataclass
class GroupOutcome:
    group: str
    n_annotators: int  # tested annotators of the group
    winning_rate: float
    advantage_probability: float


@dataclass
class AltTestResult:
    winning_rate: float  # omega
    advantage_probability: float  # rho
    passed: bool  # omega >= 0.5
    epsilon: float
    measure: str
    q: float
    n_items: int  # items kept (>= min_humans_per_item annotators and an LLM answer)
    annotators: list[AnnotatorOutcome]
    skipped: dict[str, int] = field(default_factory=dict)  # annotator -> kept items, below min_items
    groups: list[GroupOutcome] = field(default_factory=list)


def benjamini_yekutieli_rejections(pvalues: np.ndarray, q: float) -> np.ndarray:
    """Which hypotheses the Benjamini-Yekutieli step-up procedure rejects at FDR level q (NaN: never)."""
    p = np.where(np.isfinite(pvalues), pvalues, 1.0)
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    harmonic = np.sum(1.0 / np.arange(1, m + 1))
    thresholds = np.arange(1, m + 1) / m * (q / harmonic)
    below = np.flatnonzero(p[order] <= thresholds)
    rejected = np.zeros(m, dtype=bool)
    if below.size:
        rejected[order[: below[-1] + 1]] = True
    return np.asarray(rejected & np.isfinite(pvalues), dtype=bool)


def one_sided_t_pvalues(differences: list[np.ndarray], epsilon: float) -> np.ndarray:
    """p-values of scipy's ``ttest_1samp(d, epsilon, alternative='less')`` for each array d, in one call of the
    t distribution (the per-annotator calls of scipy dominated the suite's time)."""
    n = np.array([d.size for d in differences], dtype=float)
    mean = np.array([d.mean() for d in differences])
    sd = np.array([d.std(ddof=1) if d.size > 1 else np.nan for d in differences])
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (mean - epsilon) / (sd / np.sqrt(n))
    return np.asarray(stats.t.cdf(t, n - 1), dtype=float)


def _scores(measure: str, pred: np.ndarray, sums: np.ndarray, squares: np.ndarray, n: np.ndarray,
            equal: np.ndarray) -> np.ndarray:
    """Alignment of one prediction per item with the remaining ratings (given by their sum, sum of squares,
    count, and how many equal the prediction)."""
    if measure == "accuracy":
        return np.asarray(equal / n, dtype=float)
    mse = (squares - 2.0 * pred * sums + n * pred * pred) / n
    return np.asarray(-np.sqrt(np.maximum(mse, 0.0)), dtype=float)


def alt_test(ratings: np.ndarray, llm: np.ndarray, annotator_ids: list[str] | None = None, *,
             measure: str = "accuracy", epsilon: float = 0.1, q: float = 0.05, min_items: int = 30,
             min_humans_per_item: int = 2, group_labels: np.ndarray | None = None,
             group_names: list[str] | None = None) -> AltTestResult:
    """The alt-test of an LLM (one answer per item, NaN = none) against an items x annotators matrix (NaN =
    not rated). ``group_labels[j]`` (>= 0) puts annotator j in group ``group_names[g]`` for per-group rates."""
    if measure not in MEASURES:
        raise ValueError(f"unknown alignment measure {measure!r}; use one of {', '.join(MEASURES)}")
    values = np.asarray(ratings, dtype=float)
    llm = np.asarray(llm, dtype=float)
    if values.ndim != 2 or llm.shape != (values.shape[0],):
        raise ValueError(f"ratings must be items x annotators and llm one value per item; got {values.shape} "
                         f"and {llm.shape}")
    ids = annotator_ids or [str(j) for j in range(values.shape[1])]
    mask = np.isfinite(values)
    keep = (mask.sum(axis=1) >= min_humans_per_item) & np.isfinite(llm)
    values, mask, llm = values[keep], mask[keep], llm[keep]
    filled = np.where(mask, values, 0.0)
    sums, squares, n_all = filled.sum(axis=1), (filled * filled).sum(axis=1), mask.sum(axis=1).astype(float)
    llm_equal_all = (mask & (values == llm[:, None])).sum(axis=1).astype(float)
    # how many of an item's ratings equal each distinct value (for accuracy), looked up by value code
    domain, codes = np.unique(np.where(mask, values, np.inf), return_inverse=True)
    codes = codes.reshape(values.shape)
    per_value = np.zeros((values.shape[0], domain.size))
    np.add.at(per_value, (np.nonzero(mask)[0], codes[mask]), 1.0)

    outcomes: list[AnnotatorOutcome] = []
    differences: list[np.ndarray] = []
    skipped: dict[str, int] = {}
    columns: list[int] = []
    for j, annotator in enumerate(ids):
        rows = np.flatnonzero(mask[:, j])
        if rows.size < min_items:
            skipped[annotator] = int(rows.size)
            continue
        h = values[rows, j]
        rest_sums, rest_squares = sums[rows] - h, squares[rows] - h * h
        rest_n = n_all[rows] - 1.0
        same_as_h = per_value[rows, codes[rows, j]] - 1.0
        same_as_llm = llm_equal_all[rows] - (h == llm[rows])
        human_score = _scores(measure, h, rest_sums, rest_squares, rest_n, same_as_h)
        llm_score = _scores(measure, llm[rows], rest_sums, rest_squares, rest_n, same_as_llm)
        tie = np.abs(llm_score - human_score) <= TIE_TOLERANCE * (1.0 + np.abs(human_score))
        llm_ind = ((llm_score > human_score) | tie).astype(float)
        human_ind = ((human_score > llm_score) | tie).astype(float)
        differences.append(human_ind - llm_ind)
        outcomes.append(AnnotatorOutcome(annotator, int(rows.size), float(llm_ind.mean()), float("nan"), False))
        columns.append(j)
    if not outcomes:
        raise ValueError(f"no annotator has {min_items} or more items shared with another annotator and the LLM "
                         f"(the alt-test needs min_items={min_items}; the authors advise 50-100 items)")
    pvalues = one_sided_t_pvalues(differences, epsilon)
    rejected = benjamini_yekutieli_rejections(pvalues, q)
    for o, p, won in zip(outcomes, pvalues, rejected):
        o.pvalue, o.llm_wins = float(p), bool(won)
    omega = float(rejected.mean())
    rho = float(np.mean([o.advantage_probability for o in outcomes]))
    result = AltTestResult(omega, rho, omega >= 0.5, epsilon, measure, q, int(keep.sum()), outcomes, skipped)
    if group_labels is not None and group_names is not None:
        result.groups = group_winning_rates(result, ids, group_labels, group_names)
    return result


def group_winning_rates(result: AltTestResult, annotator_ids: list[str], group_labels: np.ndarray,
                        group_names: list[str]) -> list[GroupOutcome]:
    """The winning rate and rho among each group's tested annotators (the decisions of the whole test)."""
    label_of = dict(zip(annotator_ids, np.asarray(group_labels).tolist()))
    groups: list[GroupOutcome] = []
    for g, name in enumerate(group_names):
        members = [o for o in result.annotators if label_of.get(o.annotator) == g]
        if members:
            groups.append(GroupOutcome(name, len(members), float(np.mean([o.llm_wins for o in members])),
                                       float(np.mean([o.advantage_probability for o in members]))))
    return groups
