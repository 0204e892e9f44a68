"""Failure bias: do parse failures or refusals cluster on some kinds of items?

An LLM that refuses, or answers unparseably, mostly on (say) violent items silently drops exactly
those items from every alignment metric. Per model x template we report the failure rate
(parse_status unparseable/truncated/empty) and the refusal rate (parse_status refused) over all
samples, broken down by each categorical item metadata column, with a chi-square test of
independence (scipy.stats.chi2_contingency) of outcome x level; ``flag`` is set when p < 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from accord.analysis.frames import FAILURE_STATUSES
from scipy import stats

MAX_LEVELS = 50
KINDS = ("failure", "refusal")


def outcome_flags(parse_status: pd.Series, kind: str) -> np.ndarray:
    """Boolean per row: the row is a failure (kind='failure') or a refusal (kind='refusal')."""
    if kind == "failure":
        return parse_status.isin(FAILURE_STATUSES).to_numpy()
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
