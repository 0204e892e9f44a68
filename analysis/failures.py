"""Failure bias: do parse failures or refusals cluster on some kinds of items?

An LLM that refuses, or answers unparseably, mostly on (say) violent items silently drops exactly
those items from every alignment metric. Per model x template we report the failure rate
(parse_status unparseable/truncated/empty, or status ok with no numeric value) and the refusal rate
(parse_status refused) over all samples, broken down by each categorical item metadata column.

The test is at the item level. The samples of one item are not independent (whether a model refuses
is largely a property of the item), so a chi-square test that counts samples as observations finds
"bias" wherever some items fail on every sample (issue 15: 71.5% false positives at alpha = 0.05 with
350 items x 5 samples). The chi-square statistic of outcome x level is kept, but its p-value comes
from permuting the level labels over *items* (each item keeps all its samples: item as the cluster),
which holds its size whatever the dependence within an item. ``flag`` is set when p < 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from accord.analysis.frames import FAILURE_STATUSES
from scipy import stats

MAX_LEVELS = 50
KINDS = ("failure", "refusal")


def outcome_flags(parse_status: pd.Series, kind: str, values: np.ndarray | None = None) -> np.ndarray:
    """Boolean per row: the row is a failure (kind='failure') or a refusal (kind='refusal').

    With ``values``, a row with status ok but a NaN value is a failure too (it carries no rating)."""
    if kind == "failure":
        flags = parse_status.isin(FAILURE_STATUSES).to_numpy()
        if values is not None:
            flags = flags | ((parse_status == "ok").to_numpy() & ~np.isfinite(np.asarray(values, dtype=float)))
        return flags
    if kind == "refusal":
        return (parse_status == "refused").to_numpy()
    raise ValueError(f"unknown outcome kind {kind!r}; use one of {KINDS}")


@dataclass
class LevelRates:
    level: str
    rate: float
    n: int
    count: int


@dataclass
class ChiSquareBreakdown:
    column: str
    statistic: float
    pvalue: float
    dof: int
    min_expected: float
    levels: list[LevelRates] = field(default_factory=list)
    reason: str | None = None  # why the test is undefined (then statistic/pvalue are NaN)
    pvalue_kind: str = "chi-square test of samples (scipy.stats.chi2_contingency)"
    sample_level_pvalue: float = float("nan")  # the naive chi-square p (samples as independent)
    n_items: int = 0
    n_permutations: int = 0

    @property
    def flag(self) -> bool:
        return bool(np.isfinite(self.pvalue) and self.pvalue < 0.05)


def categorical_columns(meta: pd.DataFrame, max_levels: int = MAX_LEVELS) -> list[str]:
    """Metadata columns usable as a breakdown: 2..max_levels distinct non-missing values."""
    out = []
    for column in meta.columns:
        n_levels = meta[column].dropna().astype(str).nunique()
        if 2 <= n_levels <= max_levels:
            out.append(column)
    return out


def breakdown(flags: np.ndarray, levels: pd.Series, column: str) -> ChiSquareBreakdown:
    """Rates of ``flags`` per level and the chi-square test of independence (rows with a missing
    level are left out)."""
    levels = levels.astype(object).where(levels.notna(), None)
    ok = levels.notna().to_numpy()
    frame = pd.DataFrame({"level": levels[ok].astype(str).to_numpy(), "flag": flags[ok]})
    per = frame.groupby("level", sort=True)["flag"].agg(["sum", "count"])
    rates = [LevelRates(str(lvl), float(row["sum"] / row["count"]), int(row["count"]), int(row["sum"]))
             for lvl, row in per.iterrows()]
    nan = float("nan")
    table = np.column_stack([per["sum"].to_numpy(float), (per["count"] - per["sum"]).to_numpy(float)])
    if table.shape[0] < 2:
        return ChiSquareBreakdown(column, nan, nan, 0, nan, rates, "fewer than two levels with samples")
    if (table.sum(axis=0) == 0).any():
        return ChiSquareBreakdown(column, nan, nan, 0, nan, rates,
                                  "no variation in the outcome (all or none of the samples)")
    res = stats.chi2_contingency(table, correction=table.shape[0] == 2)
    return ChiSquareBreakdown(
        column, float(res.statistic), float(res.pvalue), int(res.dof),
        float(np.min(res.expected_freq)), rates,
    )


def _chi2_statistic(fails: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Pearson chi-square of the levels x (fail, ok) table for each row of ``fails``/``totals`` (k x L)."""
    n = totals.sum(axis=-1, keepdims=True)
    f = fails.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        e_fail = totals * f / n
        e_ok = totals * (n - f) / n
        cells = np.where(e_fail > 0, (fails - e_fail) ** 2 / e_fail, 0.0) + np.where(
            e_ok > 0, ((totals - fails) - e_ok) ** 2 / e_ok, 0.0)
    return np.asarray(cells.sum(axis=-1), dtype=float)


def item_level_breakdown(flags: np.ndarray, item_index: np.ndarray, levels: pd.Series, column: str,
                         n_permutations: int = 999, rng: np.random.Generator | None = None) -> ChiSquareBreakdown:
    """Rates of ``flags`` per level and a test of outcome x level with the item as the unit.

    ``flags``: per sample (row); ``item_index``: the item of each row (negative = unknown item, left
    out); ``levels``: per row, the item's level of ``column`` (constant within an item; missing = left
    out). The statistic is the Pearson chi-square of the samples' level x outcome table; its p-value is
    (1 + #{chi2_perm >= chi2}) / (1 + K) over K permutations of the level labels among the items, each
    item keeping all its samples. ``sample_level_pvalue`` keeps the naive chi-square p for reference."""
    flags = np.asarray(flags, dtype=bool)
    item_index = np.asarray(item_index)
    res = breakdown(flags, levels, column)
    if res.reason is not None:
        return res
    lv = levels.astype(object).where(levels.notna(), None).to_numpy()
    ok = np.array([v is not None for v in lv]) & (item_index >= 0)
    names = sorted({str(v) for v in lv[ok]})
    items, inverse = np.unique(item_index[ok], return_inverse=True)
    fails = np.bincount(inverse, weights=flags[ok].astype(float), minlength=items.size)
    totals = np.bincount(inverse, minlength=items.size).astype(float)
    item_level = np.empty(items.size, dtype=int)
    item_level[inverse] = np.array([names.index(str(v)) for v in lv[ok]])
    n_levels = len(names)

    def level_sums(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = labels.shape[0]
        flat = (labels + (np.arange(k) * n_levels)[:, None]).ravel()
        f = np.bincount(flat, weights=np.tile(fails, k), minlength=k * n_levels).reshape(k, n_levels)
        t = np.bincount(flat, weights=np.tile(totals, k), minlength=k * n_levels).reshape(k, n_levels)
        return f, t

    f_obs, t_obs = level_sums(item_level[None, :])
    observed = _chi2_statistic(f_obs, t_obs)[0]
    rng = rng if rng is not None else np.random.default_rng(0)
    perms = rng.permuted(np.tile(item_level, (n_permutations, 1)), axis=1)
    null = _chi2_statistic(*level_sums(perms))
    pvalue = float((1.0 + np.sum(null >= observed - 1e-12 * max(1.0, observed))) / (1.0 + n_permutations))
    res.sample_level_pvalue = res.pvalue
    res.statistic = float(observed)
    res.pvalue = pvalue
    res.pvalue_kind = ("permutation of the level labels over items (item as the cluster), Pearson chi-square "
                       "of samples as the statistic")
    res.n_items = int(items.size)
    res.n_permutations = int(n_permutations)
    return res
