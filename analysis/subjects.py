"""Multi-model comparison: do an LLM judge and the human raters rank the *subject* models alike?

When items are responses of several subject models (items column ``subject_model``), each judge's
mean score per subject model (higher = judged more harmful) ranks the subject models; so does the
human mean. Kendall's tau-b between the judge's and the humans' mean harm per subject model measures
ranking agreement; its interval comes from the item bootstrap (items resampled, subject means and tau
recomputed per resample, all resamples at once). Pairwise win rates: for subject models A and B,
P(a random item of A is judged less harmful than a random item of B) + 1/2 P(tie), i.e.
1 - U / (n_A n_B) with U the Mann-Whitney statistic of scipy.stats.mannwhitneyu (tested), for the
judge and for the humans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from accord.analysis.resampling import percentile_interval, resample_counts
from scipy import stats


def rowwise_kendall_tau(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall tau-b between row k of a and row k of b (both k x S; S small). NaN rows allowed:
    entries NaN in either are dropped pairwise."""
    a = np.atleast_2d(np.asarray(a, dtype=float))
    b = np.atleast_2d(np.asarray(b, dtype=float))
    ok = np.isfinite(a) & np.isfinite(b)
    pair_ok = ok[:, :, None] & ok[:, None, :]
    with np.errstate(invalid="ignore"):
        sa = np.where(pair_ok, np.sign(a[:, :, None] - a[:, None, :]), 0.0)
        sb = np.where(pair_ok, np.sign(b[:, :, None] - b[:, None, :]), 0.0)
    num = (sa * sb).sum(axis=(1, 2))
    da = (sa != 0).sum(axis=(1, 2))
    db = (sb != 0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = num / np.sqrt(da * db)
    return np.where((da > 0) & (db > 0), tau, np.nan)


@dataclass
class SubjectComparison:
    subjects: list[str]
    judge_mean: np.ndarray  # per subject
    human_mean: np.ndarray
    n_items: np.ndarray
    tau: float
    tau_pvalue: float
    tau_ci: tuple[float, float]
    judge_win_rate: np.ndarray  # S x S, [a, b] = P(a judged less harmful than b)
    human_win_rate: np.ndarray


def win_rates(scores: np.ndarray, subject_codes: np.ndarray, n_subjects: int) -> np.ndarray:
    """S × S matrix: [a, b] = P(random item of a scores lower than random item of b) + P(tie) / 2,
    i.e. 1 - U_ab / (n_a n_b) with U the Mann-Whitney statistic. NaN on the diagonal or without items."""
    out = np.full((n_subjects, n_subjects), np.nan)
    groups = [scores[(subject_codes == s) & np.isfinite(scores)] for s in range(n_subjects)]
    for a in range(n_subjects):
        for b in range(n_subjects):
            if a == b or groups[a].size == 0 or groups[b].size == 0:
                continue
            diff = groups[b][None, :] - groups[a][:, None]
            out[a, b] = float(np.mean((np.sign(diff) + 1.0) / 2.0))
    return out


def compare_subject_models(
    judge_scores: np.ndarray,
    human_mean: np.ndarray,
    subject: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    rng: np.random.Generator | None = None,
) -> SubjectComparison:
    """Rank subject models by the judge's and the humans' mean harm and compare the rankings.

    Items where the judge score, the human mean or the subject model is missing are left out."""
    judge_scores = np.asarray(judge_scores, dtype=float)
    human_mean = np.asarray(human_mean, dtype=float)
    subject = np.asarray(subject, dtype=object)
    if not (judge_scores.shape == human_mean.shape == subject.shape):
        raise ValueError("judge scores, human means and subject models must be per-item arrays of one length")
    has_subject = np.array([s is not None and not (isinstance(s, float) and np.isnan(s)) and str(s) != ""
                            for s in subject], dtype=bool)
    ok = np.isfinite(judge_scores) & np.isfinite(human_mean) & has_subject
    names = sorted({str(s) for s in subject[ok]})
    if len(names) < 2:
        raise ValueError(f"need at least two subject models with scored items, found {names}")
    codes = np.array([names.index(str(s)) for s in subject[ok]])
    x, y = judge_scores[ok], human_mean[ok]
    n_s = len(names)
    onehot = np.zeros((codes.size, n_s))
    onehot[np.arange(codes.size), codes] = 1.0
    counts = onehot.sum(axis=0)
    judge = (x @ onehot) / counts
    human = (y @ onehot) / counts
    nan = float("nan")
    if n_s >= 3 and np.ptp(judge) > 0 and np.ptp(human) > 0:
        res = stats.kendalltau(judge, human)
        tau, p = float(res.statistic), float(res.pvalue)
        rng = rng if rng is not None else np.random.default_rng(0)
        w = resample_counts(codes.size, n_resamples, rng)
        sub_n = w @ onehot
        with np.errstate(invalid="ignore", divide="ignore"):
            bj = np.where(sub_n > 0, (w * x) @ onehot / sub_n, np.nan)
            bh = np.where(sub_n > 0, (w * y) @ onehot / sub_n, np.nan)
        ci = percentile_interval(rowwise_kendall_tau(bj, bh), confidence_level)
        tau_ci = (ci.low, ci.high)
    else:
        tau, p, tau_ci = nan, nan, (nan, nan)
    return SubjectComparison(
        subjects=names,
        judge_mean=judge,
        human_mean=human,
        n_items=counts.astype(int),
        tau=tau,
        tau_pvalue=p,
        tau_ci=tau_ci,
        judge_win_rate=win_rates(x, codes, n_s),
        human_win_rate=win_rates(y, codes, n_s),
    )
