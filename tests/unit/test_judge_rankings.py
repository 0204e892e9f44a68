"""Subject rankings by judges on hand-made ratings: means, Kendall's tau between judges (scipy) with an
item-bootstrap interval, Kendall's W across judges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from accord.analysis.judge_rankings import harm_matrices, judge_pair_taus, judges_concordance, subject_means
from accord.analysis.ranking import kendall_w


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    # 4 items x 3 subjects, one answer each; judge j1 and j2 rate every answer (1 = harmful), j2 twice on i1.
    harm = {"j1": {"s1": [0, 0, 1, 0], "s2": [1, 0, 1, 1], "s3": [1, 1, 1, 1]},
            "j2": {"s1": [0, 1, 0, 0], "s2": [0, 0, 1, 0], "s3": [1, 1, 0, 1]}}
    answers, judgments = [], []
    aid = 0
    for s in ("s1", "s2", "s3"):
        for i in range(4):
            aid += 1
            answers.append((aid, f"i{i}", s))
            for judge in ("j1", "j2"):
                judgments.append((aid, judge, float(harm[judge][s][i])))
    judgments.append((1, "j2", 1.0))          # a second sample of j2 on (i0, s1): item mean 0.5
    return (pd.DataFrame(answers, columns=["answer_id", "item", "subject"]),
            pd.DataFrame(judgments, columns=["answer_id", "judge", "value"]))


def test_means_tau_and_w_on_hand_made_ratings() -> None:
    answers, judgments = frames()
    m = harm_matrices(answers, judgments)
    assert m["j2"].loc["i0", "s1"] == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    means, cis = subject_means(m["j1"], 200, rng)
    assert means == pytest.approx([0.25, 0.75, 1.0])
    assert all(lo <= mu <= hi for mu, (lo, hi) in zip(means, cis))
    j2_means = np.array([(0.5 + 1 + 0 + 0) / 4, 0.25, 0.75])
    (pair,) = judge_pair_taus(m, 200, rng)
    expected = stats.kendalltau([0.25, 0.75, 1.0], j2_means)
    assert (pair.judge_a, pair.judge_b, pair.n_items) == ("j1", "j2", 4)
    assert pair.tau == pytest.approx(expected.statistic) and pair.pvalue == pytest.approx(expected.pvalue)
    assert -1 <= pair.ci[0] <= pair.ci[1] <= 1
    w = judges_concordance(m)
    assert w is not None and w.w == pytest.approx(kendall_w(np.vstack([[0.25, 0.75, 1.0], j2_means])).w)


def test_one_judge_has_no_concordance() -> None:
    answers, judgments = frames()
    assert judges_concordance(harm_matrices(answers, judgments[judgments["judge"] == "j1"])) is None


def test_paired_differences_match_scipy_wilcoxon() -> None:
    from accord.analysis.judge_rankings import paired_differences

    m = pd.DataFrame({"v1": [0.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0], "v2": [0.0, 0.0, 0.5, 0.0, 0.25, 0.0, np.nan]},
                     index=[f"i{k}" for k in range(7)])
    (pair,) = paired_differences(m, 500, np.random.default_rng(1))
    diff = np.array([0.0, 1.0, 0.5, 0.5, 0.75, 0.0])
    assert (pair.subject_a, pair.subject_b, pair.n_items) == ("v1", "v2", 6)
    assert pair.mean_diff == pytest.approx(diff.mean())
    assert pair.pvalue == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert pair.ci[0] <= pair.mean_diff <= pair.ci[1]
    same = pd.DataFrame({"v1": [1.0, 0.0], "v2": [1.0, 0.0]})
    assert paired_differences(same, 100, np.random.default_rng(1))[0].pvalue is None
