"""Subject models ranked by the harm their judges find in their answers, and how far the judges agree.

From the judges' ratings of the subjects' answers (value: higher = more harmful): per judge, each subject's
mean harm (the mean over items of the item's mean over answers and samples) with an item-bootstrap percentile
interval; per pair of judges, Kendall's tau-b between their subject means with an item-bootstrap interval
(items resampled, means and tau recomputed per resample); over all judges, Kendall's W of their subject means
(``analysis.ranking.kendall_w``)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from accord.analysis.ranking import KendallW, kendall_w
from accord.analysis.resampling import percentile_interval, resample_counts
from accord.analysis.subjects import rowwise_kendall_tau


@dataclass
class JudgeTau:
    judge_a: str
    judge_b: str
    tau: float
    pvalue: float
    ci: tuple[float, float]
    n_items: int


def harm_matrices(answers: pd.DataFrame, judgments: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """judge -> items x subjects matrix of mean judged harm (NaN where the judge rated no answer)."""
    merged = judgments.merge(answers[["answer_id", "item", "subject"]], on="answer_id", how="inner")
    merged = merged[np.isfinite(merged["value"].astype(float))]
    out = {}
    subjects = sorted(answers["subject"].unique())
    for judge, group in merged.groupby("judge", sort=True):
        m = group.pivot_table(index="item", columns="subject", values="value", aggfunc="mean")
        out[str(judge)] = m.reindex(columns=subjects)
    return out


def _means(matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """B x S subject means of an items x subjects matrix under B x items bootstrap weights."""
    ok = np.isfinite(matrix)
    values = np.where(ok, matrix, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((weights @ values) / (weights @ ok.astype(float)), dtype=float)


def subject_means(matrix: pd.DataFrame, n_resamples: int, rng: np.random.Generator,
                  confidence: float = 0.95) -> tuple[np.ndarray, list[tuple[float, float]]]:
    values = matrix.to_numpy(dtype=float)
    means = np.nanmean(values, axis=0) if values.size else np.array([])
    boot = _means(values, resample_counts(values.shape[0], n_resamples, rng))
    cis = []
    for s in range(values.shape[1]):
        ci = percentile_interval(boot[:, s], confidence)
        cis.append((ci.low, ci.high))
    return means, cis


def judge_pair_taus(matrices: dict[str, pd.DataFrame], n_resamples: int, rng: np.random.Generator,
                    confidence: float = 0.95) -> list[JudgeTau]:
    out = []
    for a, b in combinations(sorted(matrices), 2):
        items = matrices[a].index.intersection(matrices[b].index)
        ma, mb = matrices[a].loc[items].to_numpy(float), matrices[b].loc[items].to_numpy(float)
        if len(items) < 2 or ma.shape[1] < 2:
            continue
        mean_a, mean_b = np.nanmean(ma, axis=0), np.nanmean(mb, axis=0)
        res = stats.kendalltau(mean_a, mean_b)
        w = resample_counts(len(items), n_resamples, rng)
        ci = percentile_interval(rowwise_kendall_tau(_means(ma, w), _means(mb, w)), confidence)
        out.append(JudgeTau(a, b, float(res.statistic), float(res.pvalue), (ci.low, ci.high), len(items)))
    return out


def judges_concordance(matrices: dict[str, pd.DataFrame]) -> KendallW | None:
    """Kendall's W of the judges' subject means (None with fewer than 2 judges or 2 subjects, or a gap)."""
    if len(matrices) < 2:
        return None
    means = np.vstack([np.nanmean(m.to_numpy(float), axis=0) for _, m in sorted(matrices.items())])
    if means.shape[1] < 2 or not np.isfinite(means).all():
        return None
    try:
        return kendall_w(means)
    except ValueError:
        return None


@dataclass
class PairedDifference:
    subject_a: str
    subject_b: str
    mean_diff: float              # mean over items of a's judged score minus b's
    ci: tuple[float, float]       # item-bootstrap percentile interval
    pvalue: float | None          # Wilcoxon signed-rank (scipy), None when every difference is zero
    n_items: int


def paired_differences(matrix: pd.DataFrame, n_resamples: int, rng: np.random.Generator,
                       confidence: float = 0.95) -> list[PairedDifference]:
    """Every pair of subjects (variants) judged on the same items: the mean paired difference with an
    item-bootstrap interval and the Wilcoxon signed-rank test of the per-item differences."""
    out = []
    for a, b in combinations(list(matrix.columns), 2):
        both = matrix[[a, b]].dropna()
        if len(both) < 2:
            continue
        diff = (both[a] - both[b]).to_numpy(float)
        w = resample_counts(len(diff), n_resamples, rng)
        ci = percentile_interval((w @ diff) / w.sum(axis=1), confidence)
        pvalue = None if not np.any(diff != 0) else float(stats.wilcoxon(diff).pvalue)
        out.append(PairedDifference(str(a), str(b), float(diff.mean()), (ci.low, ci.high), pvalue, len(diff)))
    return out
