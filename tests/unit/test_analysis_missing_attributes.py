"""Missing demographics leave an annotator out of that attribute's groups; they never form a group."""

from __future__ import annotations

import numpy as np
import pandas as pd

from accord.analysis.frames import build_groups
from accord.analysis.suite import SuiteOptions, compute_all


def test_missing_values_form_no_group() -> None:
    annotators = pd.DataFrame({"annotator_id": ["a", "b", "c", "d", "e"],
                               "gender": ["Man", None, np.nan, "Woman", ""]})
    groups = build_groups(annotators, ["a", "b", "c", "d", "e"], min_group_size=1)
    (gender,) = groups
    assert gender.group_names == ["gender=Man", "gender=Woman"]
    assert gender.labels.tolist() == [0, -1, -1, 1, -1]      # unknowns belong to no group


def test_suite_has_no_nan_group_and_interval_delta_alpha_is_defined() -> None:
    rng = np.random.default_rng(0)
    items = [f"i{k}" for k in range(30)]
    ann = [f"a{k}" for k in range(12)]
    truth = rng.random(30)
    human = pd.DataFrame([{"item_id": i, "annotator_id": a, "value": float(rng.random() < truth[n])}
                          for n, i in enumerate(items) for a in ann])
    annotators = pd.DataFrame({"annotator_id": ann,
                               "gender": ["Man", "Woman", None] * 4})   # a third with unknown gender
    llm = pd.DataFrame({"item_id": items, "model": "m", "template": "t", "sample_index": 0,
                        "value": (truth > 0.5).astype(float), "weighted_value": truth, "label": None,
                        "parse_status": "ok", "persona_key": "", "template_family": "t", "option_order": ""})
    records = compute_all(human, annotators, llm, pd.DataFrame({"item_id": items}),
                          SuiteOptions(n_resamples=50, n_permutations=50))
    slices = {r.slice for r in records}
    assert not any("nan" in s for s in slices), sorted(s for s in slices if "nan" in s)
    assert {"gender=Man", "gender=Woman"} <= slices
    delta = next(r for r in records if r.name == "krippendorff_delta_alpha_interval")
    assert delta.value is not None and np.isfinite(delta.value)
