"""Consistency of an LLM rater with itself.

- Format consistency, after "Fake Alignment" (Wang et al. 2023): the same question asked in two
  formats of one template family (e.g. open question vs multiple choice). CS = share of items on
  which both formats give the same binary verdict; CSS = share on which they agree *and* the verdict
  is the correct one (the reference label: expert label if known, else the human majority).
- Self-consistency across samples: test-retest correlation (mean Pearson r over pairs of sample
  indices, items as observations) and the label flip rate (share of items whose parsed samples do
  not all give the same label).
- Position bias for multiple choice: two templates of one family that differ only in option order
  should give the same (semantic) answer; the flip rate is the share of items whose verdict changes
  when the order changes (cf. Zheng et al. 2023, Pezeshkpour & Hruschka 2023), with its direction:
  how many items move to the positive and to the negative verdict, and McNemar's exact test of
  whether the two directions are equally likely (statsmodels), so a planted shift toward "unsafe" in
  one option order shows as such rather than as an undirected flip rate.

Verdicts come from `accord.analysis.binary` with its one tie rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from accord.analysis.correlation import masked_pearson_columns
from accord.analysis.vectors import paired_floats
from statsmodels.stats.contingency_tables import mcnemar


@dataclass
class FormatConsistency:
    cs: float
    css: float | None  # None without a reference label
    n: int
    n_with_reference: int


def _paired(verdict_a: np.ndarray, verdict_b: np.ndarray, where: str,
            what: str = "verdict vectors") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two per-item verdict vectors as floats and the mask of items answered in both (``where`` names the
    pairing in the error when there is none)."""
    a, b, both = paired_floats(verdict_a, verdict_b, what)
    if not both.any():
        raise ValueError(f"no item is answered {where}")
    return a, b, both


def format_consistency(
    verdict_a: np.ndarray, verdict_b: np.ndarray, reference: np.ndarray | None = None
) -> FormatConsistency:
    """CS and CSS of two binary verdict vectors (per item; NaN = no answer)."""
    a, b, both = _paired(verdict_a, verdict_b, "in both formats")
    cs = float(np.mean(a[both] == b[both]))
    css: float | None = None
    n_ref = 0
    if reference is not None:
        ref = np.asarray(reference, dtype=float)
        ok = both & np.isfinite(ref)
        n_ref = int(ok.sum())
        if n_ref:
            css = float(np.mean((a[ok] == b[ok]) & (a[ok] == ref[ok])))
    return FormatConsistency(cs, css, int(both.sum()), n_ref)


@dataclass
class SelfConsistency:
    test_retest_r: float  # mean over sample-index pairs of Pearson r across items
    n_pairs: int  # sample-index pairs with a defined r
    n_items_r: int  # items with at least two parsed samples (the observations behind test_retest_r)
    flip_rate: float  # share of items (>= 2 parsed samples) whose samples disagree
    n_items: int  # items with >= 2 parsed samples
    mean_pairwise_disagreement: float  # share of disagreeing sample pairs, averaged over items


def self_consistency(samples: np.ndarray) -> SelfConsistency:
    """Consistency of repeated samples: ``samples`` is items x sample-index (parsed values, NaN =
    missing)."""
    samples = np.asarray(samples, dtype=float)
    if samples.ndim != 2:
        raise ValueError(f"samples must be items x samples, got shape {samples.shape}")
    nan = float("nan")
    r_pairs: list[float] = []
    if samples.shape[1] >= 2:
        r, _ = masked_pearson_columns(samples, samples)
        for i, j in combinations(range(samples.shape[1]), 2):
            if np.isfinite(r[i, j]):
                r_pairs.append(float(r[i, j]))
    ok = np.isfinite(samples)
    n_parsed = ok.sum(axis=1)
    multi = n_parsed >= 2
    if multi.any():
        sub = samples[multi]
        sub_ok = ok[multi]
        lo = np.where(sub_ok, sub, np.inf).min(axis=1)
        hi = np.where(sub_ok, sub, -np.inf).max(axis=1)
        flip_rate = float(np.mean(hi > lo))
        m = sub_ok.sum(axis=1).astype(float)
        pair_ok = sub_ok[:, :, None] & sub_ok[:, None, :]
        same = (sub[:, :, None] == sub[:, None, :]) & pair_ok
        off_diagonal = ~np.eye(sub.shape[1], dtype=bool)
        same_pairs = (same & off_diagonal).sum(axis=(1, 2)).astype(float)
        disagreement = float(np.mean(1.0 - same_pairs / (m * (m - 1.0))))
    else:
        flip_rate = disagreement = nan
    return SelfConsistency(
        test_retest_r=float(np.mean(r_pairs)) if r_pairs else nan,
        n_pairs=len(r_pairs),
        n_items_r=int(multi.sum()),
        flip_rate=flip_rate,
        n_items=int(multi.sum()),
        mean_pairwise_disagreement=disagreement,
    )


@dataclass
class PositionBias:
    flip_rate: float
    n: int
    n_flipped: int
    n_to_positive: int = 0  # negative under order a, positive under order b
    n_to_negative: int = 0  # positive under order a, negative under order b
    mcnemar_pvalue: float = float("nan")  # exact McNemar test of n_to_positive = n_to_negative
    positive_rate_a: float = float("nan")
    positive_rate_b: float = float("nan")


def position_bias(verdict_a: np.ndarray, verdict_b: np.ndarray) -> PositionBias:
    """Flip rate of two binary verdict vectors (order a, order b; NaN = no answer) with its direction
    and McNemar's exact test (statsmodels.stats.contingency_tables.mcnemar)."""
    a, b, both = _paired(verdict_a, verdict_b, "under both option orders")
    a, b = a[both], b[both]
    to_pos = int(np.sum((a == 0) & (b == 1)))
    to_neg = int(np.sum((a == 1) & (b == 0)))
    table = np.array([[np.sum((a == 0) & (b == 0)), to_pos], [to_neg, np.sum((a == 1) & (b == 1))]])
    p = float(mcnemar(table, exact=True).pvalue) if to_pos + to_neg > 0 else 1.0
    n = int(a.size)
    return PositionBias((to_pos + to_neg) / n, n, to_pos + to_neg, to_pos, to_neg, p,
                        float(a.mean()), float(b.mean()))


def position_flip_rate(labels_a: np.ndarray, labels_b: np.ndarray) -> PositionBias:
    """Share of items whose (semantic) answer differs between two option orders."""
    a, b, both = _paired(labels_a, labels_b, "under both option orders", "label vectors")
    flipped = int(np.sum(a[both] != b[both]))
    return PositionBias(flipped / int(both.sum()), int(both.sum()), flipped)
