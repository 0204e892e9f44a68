"""Rogan-Gladen corrected prevalence: a judge labels a large pool, people label a validation subset; the
judge's biased share is corrected with its measured sensitivity and specificity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from accord.analysis.prevalence import corrected_prevalence, rogan_gladen
from accord.analysis.suite import SuiteOptions, compute_all


def test_rogan_gladen_formula_and_clipping() -> None:
    assert rogan_gladen(0.3, 0.8, 0.9) == pytest.approx((0.3 + 0.9 - 1) / (0.8 + 0.9 - 1))
    assert rogan_gladen(0.01, 0.8, 0.9) == 0.0
    with pytest.raises(ValueError, match="no better than chance"):
        rogan_gladen(0.3, 0.5, 0.5)


def test_corrected_prevalence_values_and_delta_interval() -> None:
    # validation: 40 positives of which the judge finds 32 (Se 0.8), 60 negatives of which it flags 6 (Sp 0.9)
    truth = np.r_[np.ones(40), np.zeros(60)]
    judged = np.r_[np.ones(32), np.zeros(8), np.ones(6), np.zeros(54)]
    pool = np.r_[np.ones(120), np.zeros(280)]  # apparent prevalence 0.3 on 400 unrated items
    res = corrected_prevalence(pool, judged, truth)
    assert (res.sensitivity, res.specificity, res.raw) == pytest.approx((0.8, 0.9, 0.3))
    assert res.corrected == pytest.approx(0.2 / 0.7)
    pi, j = 0.2 / 0.7, 0.7
    var = (0.3 * 0.7 / 400 + pi**2 * 0.8 * 0.2 / 40 + (1 - pi) ** 2 * 0.9 * 0.1 / 60) / j**2
    assert res.corrected_ci == pytest.approx((pi - 1.959963984540054 * np.sqrt(var),
                                              pi + 1.959963984540054 * np.sqrt(var)))
    assert res.raw_ci[0] < 0.3 < res.raw_ci[1]
    assert res.corrected_ci[1] - res.corrected_ci[0] > res.raw_ci[1] - res.raw_ci[0]  # carries Se/Sp too


def test_suite_corrects_the_judges_prevalence_on_unrated_items() -> None:
    rng = np.random.default_rng(2)
    n_rated, n_pool = 60, 140
    truth = (rng.random(n_rated + n_pool) < 0.3).astype(float)
    judge = np.where(truth == 1, rng.random(truth.size) < 0.85, rng.random(truth.size) < 0.2).astype(float)
    items = [f"r{i}" for i in range(truth.size)]
    human = pd.DataFrame([(items[i], f"p{k}", truth[i]) for i in range(n_rated) for k in range(2)],
                         columns=["item_id", "annotator_id", "value"])
    llm = pd.DataFrame({"item_id": items, "model": "judge", "template": "t", "sample_index": 0, "value": judge,
                        "parse_status": "ok"})
    recs = {r.name: r for r in compute_all(human, None, llm, None, SuiteOptions(n_resamples=0, n_permutations=5))
            if r.name.startswith("prevalence")}
    expected = corrected_prevalence(judge[n_rated:], judge[:n_rated], truth[:n_rated])
    assert recs["prevalence_raw"].value == pytest.approx(judge[n_rated:].mean())
    assert recs["prevalence_corrected"].value == pytest.approx(expected.corrected)
    assert recs["prevalence_corrected"].n == n_pool
    assert recs["prevalence_corrected"].details["reference"] == "human majority"
