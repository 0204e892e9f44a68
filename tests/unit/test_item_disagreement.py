"""Per-item disagreement between LLMs and people, group gaps (numeric attributes binned as `accord describe`
bins them) and the people's rating histograms, on small hand-made frames."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from accord.analysis.item_disagreement import item_disagreements, item_histograms, value_counts

HUMAN = pd.DataFrame({
    "item_id": ["a", "a", "a", "a", "b", "b", "c"],
    "annotator_id": ["w1", "w2", "m1", "m2", "w1", "m1", "w1"],
    "value": [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, float("nan")],
})
ANNOTATORS = pd.DataFrame({"annotator_id": ["w1", "w2", "m1", "m2"], "gender": ["W", "W", "M", "M"],
                           "age": [19, 23, 40, 70]})


def llm(rows: list[tuple[str, str, str, float | None]]) -> pd.DataFrame:
    return pd.DataFrame([{"item_id": i, "model": m, "template": t, "value": v} for i, m, t, v in rows])


def test_disagreement_is_llm_mean_minus_people_mean_per_item() -> None:
    frame = llm([("a", "m1", "t1", 1.0), ("a", "m1", "t2", 0.0), ("b", "m1", "t1", 1.0), ("b", "m2", "t1", None),
                 ("c", "m1", "t1", None)])
    table = item_disagreements(HUMAN, frame, ANNOTATORS).set_index("item_id")
    assert table.loc["a", "human_mean"] == 0.5 and table.loc["a", "llm_mean"] == 0.5
    assert table.loc["a", "disagreement"] == 0.0
    assert table.loc["b", "disagreement"] == 1.0 and table.loc["b", "n_llm"] == 1     # the unparsed one left out
    assert table.loc["c", "n_human"] == 0 and table.loc["c", "n_llm"] == 0
    assert math.isnan(table.loc["c", "disagreement"])                 # rated by neither: listed, no number
    only_t2 = item_disagreements(HUMAN, frame, ANNOTATORS, template="t2").set_index("item_id")
    assert only_t2.loc["a", "llm_mean"] == 0.0 and only_t2.loc["b", "n_llm"] == 0


def test_group_gap_is_the_largest_over_attributes_with_numeric_ones_binned() -> None:
    table = item_disagreements(HUMAN, llm([]), ANNOTATORS).set_index("item_id")
    assert table.loc["a", "group_gap"] == 1.0
    assert table.loc["a", "gap_attribute"] in ("gender", "age")
    by_gender = item_disagreements(HUMAN, llm([]), ANNOTATORS, attribute="gender").set_index("item_id")
    assert (by_gender.loc["a", "gap_high"], by_gender.loc["a", "gap_low"]) == ("W", "M")
    assert by_gender.loc["b", "group_gap"] == 0.0 and by_gender.loc["b", "gap_high"] != by_gender.loc["b", "gap_low"]
    # an age attribute with many values is binned into age bands, as `accord describe` bins it
    many = pd.DataFrame({"annotator_id": [f"x{i}" for i in range(12)] + ["w1", "w2", "m1", "m2"],
                         "age": list(range(20, 80, 5)) + [19, 23, 40, 70]})
    by_age = item_disagreements(HUMAN, llm([]), many, attribute="age").set_index("item_id")
    assert by_age.loc["a", "group_gap"] == 1.0
    assert not str(by_age.loc["a", "gap_high"]).isdigit() and not str(by_age.loc["a", "gap_low"]).isdigit()
    assert math.isnan(item_disagreements(HUMAN, llm([]), None).set_index("item_id").loc["a", "group_gap"])


def test_histograms_count_every_value_of_the_domain_overall_and_per_group() -> None:
    h = item_histograms(HUMAN, ANNOTATORS, "a", [0.0, 0.5, 1.0])
    assert h["overall"] == {"0": 2, "0.5": 0, "1": 2} and h["n"] == 4 and h["mean"] == pytest.approx(0.5)
    gender = {g["group"]: g for g in h["groups"]["gender"]}   # type: ignore[index]
    assert gender["W"]["counts"] == {"0": 0, "0.5": 0, "1": 2} and gender["M"]["mean"] == 0.0
    empty = item_histograms(HUMAN, ANNOTATORS, "c")
    assert empty["n"] == 0 and empty["mean"] is None and empty["groups"] == {}
    assert value_counts(pd.Series([1, 2, 2, None])) == {"1": 1, "2": 2}
