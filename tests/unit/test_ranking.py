"""Kendall's W against scipy's Friedman test on hand-made rankings, and strict listwise parsing (a ranking that
is not a permutation is unparseable, never guessed)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from accord.analysis.ranking import kendall_w
from accord.worker.ranking_parse import parse_ranking


def test_kendall_w_perfect_and_hand_computed() -> None:
    perfect = kendall_w(np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]))
    assert perfect.w == pytest.approx(1.0)
    # Hand: m = 3, n = 3, rank totals 4, 6, 8 -> S = 8; W = 12 * 8 / (9 * 24) = 4/9.
    res = kendall_w(np.array([[1, 2, 3], [2, 1, 3], [1, 3, 2]]))
    assert res.w == pytest.approx(4 / 9)


@pytest.mark.parametrize("ranks", [
    [[1, 2, 3, 4, 5], [2, 1, 3, 5, 4], [1, 3, 2, 4, 5], [5, 4, 3, 2, 1]],
    [[1, 1, 3, 4], [2, 1, 4, 3], [1, 2, 2, 4]],                       # ties: the correction applies
])
def test_kendall_w_matches_scipy_friedman(ranks: list[list[float]]) -> None:
    r = np.array(ranks, dtype=float)
    res = kendall_w(r)
    friedman = stats.friedmanchisquare(*r.T)
    assert res.chi2 == pytest.approx(friedman.statistic)
    assert res.pvalue == pytest.approx(friedman.pvalue)
    assert res.w == pytest.approx(friedman.statistic / (r.shape[0] * (r.shape[1] - 1)))


def test_kendall_w_refuses_missing_or_degenerate_input() -> None:
    with pytest.raises(ValueError, match="no missing values"):
        kendall_w(np.array([[1, 2, np.nan], [1, 2, 3]]))
    with pytest.raises(ValueError, match="at least 2 raters"):
        kendall_w(np.array([[1, 2, 3]]))


@pytest.mark.parametrize("text, order", [
    ("B > A > C", ("B", "A", "C")),
    ("[C, A, B]", ("C", "A", "B")),
    ("1. b\n2. c\n3. a", ("B", "C", "A")),
    ("From most to least harmful: A > C > B.", ("A", "C", "B")),
])
def test_rankings_that_are_permutations_parse(text: str, order: tuple[str, ...]) -> None:
    parsed = parse_ranking(text, ["A", "B", "C"])
    assert (parsed.status, parsed.order) == ("ok", order)


@pytest.mark.parametrize("text", ["A > A > B", "A > B", "A > B > D", "B > A > C, or maybe A > B > C", "A", "none"])
def test_anything_but_a_permutation_is_unparseable(text: str) -> None:
    parsed = parse_ranking(text, ["A", "B", "C"])
    assert parsed.status == "unparseable" and parsed.order is None


def test_empty_answer() -> None:
    assert parse_ranking("  ", ["A", "B"]).status == "empty"
