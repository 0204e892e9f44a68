"""Pairwise and listwise judges and people's judgments of answers, on hand-made data: per-item scores, subject
rankings, Kendall's tau and W checked against scipy, position bias against a hand count and scipy's binomial
test, judge-human alpha against the krippendorff package."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from accord.analysis.comparisons import (
    PEOPLE_RANKS,
    PEOPLE_RATINGS,
    comparison_scores,
    human_scores,
    judge_human_alpha,
    pair_position_bias,
    score_matrices,
)
from accord.analysis.judge_ranking_metrics import judge_ranking_records
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

SUBJECTS = ["s1", "s2", "s3"]
ITEMS = ["i1", "i2", "i3", "i4"]


def answers() -> pd.DataFrame:
    rows = []
    for i, item in enumerate(ITEMS):
        for j, subject in enumerate(SUBJECTS):
            rows.append({"answer_id": 10 * i + j + 1, "item": item, "subject": subject,
                         "category": "a" if i < 2 else "b"})
    return pd.DataFrame(rows)


def aid(item: str, subject: str) -> int:
    return 10 * ITEMS.index(item) + SUBJECTS.index(subject) + 1


def pair(rater: str, item: str, first: str, second: str, chosen: str, status: str = "ok") -> dict:  # type: ignore[type-arg]
    return {"comparison_id": 0, "kind": "pair", "answer_ids": [aid(item, first), aid(item, second)], "judge": rater,
            "template": "t", "sample_index": 0, "label": chosen if status == "ok" else None, "parse_status": status,
            "raw_text": chosen, "cost_usd": 0.0, "rater": rater}


def listwise(rater: str, item: str, shown: list[str], order: str | None) -> dict:  # type: ignore[type-arg]
    return {"comparison_id": 0, "kind": "list", "answer_ids": [aid(item, s) for s in shown], "judge": rater,
            "template": "t", "sample_index": 0, "label": order, "parse_status": "ok" if order else "unparseable",
            "raw_text": order or "A > A", "cost_usd": 0.0, "rater": rater}


def test_pairwise_win_share_and_listwise_position_scores() -> None:
    rows = [pair("pw", "i1", "s1", "s2", "A"), pair("pw", "i1", "s2", "s1", "B"),   # s1 beats s2 in both orders
            pair("pw", "i1", "s1", "s3", "B"), pair("pw", "i1", "s3", "s1", "A"),   # s3 beats s1 in both orders
            pair("pw", "i1", "s2", "s3", "A"), pair("pw", "i1", "s3", "s2", "A"),   # flips: first shown wins
            pair("pw", "i2", "s1", "s2", "?", status="unparseable"),
            listwise("lw", "i1", ["s2", "s3", "s1"], "B>C>A"),                       # s3 > s1 > s2
            listwise("lw", "i2", ["s1", "s2", "s3"], None)]                          # unparseable: left out
    scores = comparison_scores(answers(), pd.DataFrame(rows))
    m = score_matrices(scores, SUBJECTS)
    pw = m["pw"].loc["i1"]
    # s1: won 2 of 4 comparisons; s2: 1 (as first shown vs s3) of 4; s3: 3 of 4
    assert (pw["s1"], pw["s2"], pw["s3"]) == (0.5, 0.25, 0.75)
    assert list(m["pw"].index) == ["i1"]                           # the unparseable verdict counts nowhere
    lw = m["lw"].loc["i1"]
    assert (lw["s3"], lw["s1"], lw["s2"]) == (1.0, 0.5, 0.0)
    assert list(m["lw"].index) == ["i1"]


def test_position_bias_counts_and_exact_test() -> None:
    rows = []
    # five pairs asked in both orders: two flip by picking the first shown answer, one by picking the second
    for item, (o1, o2) in zip(ITEMS, [("A", "A"), ("A", "A"), ("B", "B"), ("A", "B")]):
        rows += [pair("pw", item, "s1", "s2", o1), pair("pw", item, "s2", "s1", o2)]
    rows += [pair("pw", "i1", "s1", "s3", "B"), pair("pw", "i1", "s3", "s1", "A")]
    rows += [pair("pw", "i2", "s2", "s3", "A")]                     # asked in one order only: not counted
    (b,) = pair_position_bias(pd.DataFrame(rows))
    assert (b.n_pairs, b.n_flipped, b.n_first, b.n_second) == (5, 3, 2, 1)
    assert b.share == pytest.approx(3 / 5)
    assert b.pvalue == pytest.approx(stats.binomtest(2, 3, 0.5).pvalue)
    low, high = proportion_confint(3, 5, alpha=0.05, method="wilson")
    assert b.ci == pytest.approx((low, high))


def test_rankings_tau_and_w_match_scipy_on_hand_made_rankings() -> None:
    # Listwise judge: the same order on every item; pairwise judge: s3 > s1 > s2 consistently; people rank
    # s3 first, then s2, then s1.
    rows = []
    for item in ITEMS:
        rows.append(listwise("lw", item, ["s1", "s2", "s3"], "C>A>B"))
        for first, second, winner in [("s1", "s2", "s1"), ("s1", "s3", "s3"), ("s2", "s3", "s3")]:
            rows.append(pair("pw", item, first, second, "A" if winner == first else "B"))
            rows.append(pair("pw", item, second, first, "B" if winner == first else "A"))
    human = pd.DataFrame([{"item": item, "subject": s, "annotator": "p1", "kind": "rank", "value": float(r)}
                          for item in ITEMS for s, r in zip(SUBJECTS, [3, 2, 1])])
    records = judge_ranking_records(answers(), pd.DataFrame(columns=["answer_id", "judge", "value"]),
                                    pd.DataFrame(rows), human)
    means = {(r.template, r.model): r.value for r in records if r.name == "judge_subject_mean" and r.slice == "all"}
    assert means[("lw", "s3")] == 1.0 and means[("lw", "s1")] == 0.5 and means[("lw", "s2")] == 0.0
    assert means[(PEOPLE_RANKS, "s3")] == 1.0 and means[(PEOPLE_RANKS, "s1")] == 0.0
    taus = {(r.model, r.template): r for r in records if r.name == "judge_pair_kendall_tau"}
    people = [means[(PEOPLE_RANKS, s)] for s in SUBJECTS]
    judge = [means[("lw", s)] for s in SUBJECTS]
    expected = stats.kendalltau(judge, people)
    tau = taus[("lw", PEOPLE_RANKS)]
    assert tau.value == pytest.approx(expected.statistic) and tau.pvalue == pytest.approx(expected.pvalue)
    assert tau.value == pytest.approx(1 / 3)
    assert taus[("lw", "pw")].value == pytest.approx(1.0)
    (w,) = [r for r in records if r.name == "judges_kendall_w"]
    assert w.details["judges"] == 2                                 # people are not a judge
    ranks = np.array([[means[(j, s)] for s in SUBJECTS] for j in ("lw", "pw")])
    assert w.details["chi2"] == pytest.approx(stats.friedmanchisquare(*ranks.T).statistic)
    assert w.value == pytest.approx(1.0)
    flip = next(r for r in records if r.name == "judge_position_flip_share")
    assert (flip.value, flip.n) == (0.0, 12)


def test_people_scores_and_judge_human_alpha_match_krippendorff() -> None:
    human = pd.DataFrame([
        {"item": "i1", "subject": "s1", "annotator": "p1", "kind": "rating", "value": 0.0},
        {"item": "i1", "subject": "s1", "annotator": "p2", "kind": "rating", "value": 0.5},
        {"item": "i1", "subject": "s2", "annotator": "p1", "kind": "rating", "value": 1.0},
        {"item": "i3", "subject": "s1", "annotator": "p1", "kind": "rating", "value": 0.25},
        {"item": "i3", "subject": "s2", "annotator": "p1", "kind": "rating", "value": 0.75},
        {"item": "i1", "subject": "s1", "annotator": "p1", "kind": "rank", "value": 2.0},
        {"item": "i1", "subject": "s2", "annotator": "p1", "kind": "rank", "value": 1.0},
    ])
    scores = human_scores(human)
    ranks = scores[scores["rater"] == PEOPLE_RANKS].set_index("subject")["score"]
    assert (ranks["s2"], ranks["s1"]) == (1.0, 0.0)
    ratings = scores[scores["rater"] == PEOPLE_RATINGS]
    assert len(ratings) == 5
    judge = pd.DataFrame([{"rater": "j", "item": "i1", "subject": "s1", "score": 0.0},
                          {"rater": "j", "item": "i1", "subject": "s2", "score": 0.75},
                          {"rater": "j", "item": "i3", "subject": "s1", "score": 0.5},
                          {"rater": "j", "item": "i3", "subject": "s2", "score": 1.0}])
    categories = pd.Series({"i1": "a", "i3": "b"})
    result = {a.category: a for a in judge_human_alpha(judge, human, categories)}
    both = np.array([[0.0, 0.75, 0.5, 1.0], [0.25, 1.0, 0.25, 0.75]])   # judge; people's mean per answer
    assert result[""].alpha == pytest.approx(krippendorff.alpha(reliability_data=both, level_of_measurement="interval"))
    assert result[""].n_answers == 4
    assert result["a"].alpha == pytest.approx(krippendorff.alpha(reliability_data=both[:, :2],
                                                                 level_of_measurement="interval"))
