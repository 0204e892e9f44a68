"""Failure and refusal bias."""

import numpy as np
import pandas as pd
import pytest
from accord.analysis.failures import breakdown, categorical_columns, outcome_flags
from scipy import stats


def test_outcome_flags():
    status = pd.Series(["ok", "refused", "unparseable", "truncated", "empty", "ok"])
    np.testing.assert_array_equal(outcome_flags(status, "failure"), [0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(outcome_flags(status, "refusal"), [0, 1, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        outcome_flags(status, "crash")


def test_breakdown_flags_clustered_failures():
    levels = pd.Series(["violence"] * 50 + ["other"] * 50)
    flags = np.array([True] * 20 + [False] * 30 + [True] * 2 + [False] * 48)
    res = breakdown(flags, levels, "category")
    ref = stats.chi2_contingency(np.array([[2, 48], [20, 30]]))
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.pvalue == pytest.approx(ref.pvalue)
    assert res.flag
    rates = {lv.level: lv.rate for lv in res.levels}
    assert rates == {"other": 0.04, "violence": 0.4}


def test_breakdown_without_variation_has_reason():
    res = breakdown(np.zeros(4, dtype=bool), pd.Series(["a", "b", "a", None]), "c")
    assert np.isnan(res.pvalue) and not res.flag and "no variation" in res.reason


def test_categorical_columns():
    meta = pd.DataFrame({"category": ["a", "b", "a"], "text": ["x", "y", "z"], "const": ["k"] * 3})
    assert categorical_columns(meta, max_levels=2) == ["category"]
