"""Personalisation within bounds: persona drift from the model's consensus, share inside the human range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from accord.analysis.persona import persona_drift
from accord.analysis.suite import SuiteOptions, compute_all


def test_hand_computed_drift_and_bounds() -> None:
    scores = np.array([[0.2, 0.8, np.nan],
                       [0.4, 0.4, 0.5]])
    groups = np.array([[0.1, 0.5, np.nan],
                       [0.3, 0.6, np.nan]])
    a, b = persona_drift(scores, groups)
    # consensus per item: 0.3, 0.6, 0.5 (item 3 has no human bounds -> left out)
    assert (a.n, b.n) == (2, 2)
    assert a.mean_abs_drift == pytest.approx((0.1 + 0.2) / 2)
    assert b.mean_abs_drift == pytest.approx((0.1 + 0.2) / 2)
    assert a.within_bounds_share == pytest.approx(0.5)      # 0.2 in [0.1, 0.3]; 0.8 above [0.5, 0.6]
    assert b.within_bounds_share == pytest.approx(0.0)      # 0.4 above 0.3; 0.4 below 0.5
    assert persona_drift(scores, groups, tolerance=0.25)[0].within_bounds_share == 1.0


def test_suite_reports_drift_per_persona() -> None:
    rng = np.random.default_rng(1)
    items = [f"i{k}" for k in range(25)]
    ann = [f"a{k}" for k in range(10)]
    human = pd.DataFrame([{"item_id": i, "annotator_id": a, "value": float(rng.random() < 0.5)}
                          for i in items for a in ann])
    annotators = pd.DataFrame({"annotator_id": ann, "gender": ["Man", "Woman"] * 5})
    rows = []
    for persona, shift in (("gender=Man", 0.0), ("gender=Woman", 0.2)):
        for n, i in enumerate(items):
            rows.append({"item_id": i, "model": "m", "template": "p", "sample_index": 0, "value": 0.3 + shift,
                         "weighted_value": np.nan, "label": None, "parse_status": "ok", "persona_key": persona,
                         "template_family": "p", "option_order": ""})
    records = compute_all(human, annotators, pd.DataFrame(rows), pd.DataFrame({"item_id": items}),
                          SuiteOptions(n_resamples=20, n_permutations=20))
    drift = {r.slice: r for r in records if r.name == "persona_drift_mean_abs"}
    assert set(drift) == {"gender=Man", "gender=Woman"}
    assert drift["gender=Man"].value == pytest.approx(0.1) and drift["gender=Man"].n == 25
    bounds = {r.slice: r.value for r in records if r.name == "persona_within_human_bounds"}
    assert set(bounds) == {"gender=Man", "gender=Woman"} and all(0 <= v <= 1 for v in bounds.values())
