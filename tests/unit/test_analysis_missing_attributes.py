"""Missing demographics leave an annotator out of that attribute's groups; they never form a group."""

from __future__ import annotations

import numpy as np
import pytest
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


def test_jsd_uses_label_probabilities_where_present() -> None:
    """A model whose samples all say 1 but whose label probabilities say 50/50 matches a 50/50 crowd."""
    from accord.analysis.distribution import mixed_distribution

    domain = np.array([0.0, 1.0])
    table, n = mixed_distribution(np.array([0, 0, 1]), np.array([1.0, 1.0, 0.0]),
                                  [{0.0: 0.5, 1.0: 0.5}, {0.0: 0.3, 1.0: 0.7}, None], 2, domain)
    assert n == 2
    assert table.tolist() == [[0.4, 0.6], [1.0, 0.0]]       # item 0: mean of two distributions; item 1: one-hot

    items = [f"i{k}" for k in range(20)]
    human = pd.DataFrame([{"item_id": i, "annotator_id": f"a{j}", "value": float(j % 2)}
                          for i in items for j in range(6)])                          # every item split 50/50
    base = {"item_id": items, "model": "m", "template": "t", "sample_index": 0, "value": 1.0,
            "weighted_value": 0.5, "label": None, "parse_status": "ok", "persona_key": "",
            "template_family": "t", "option_order": ""}

    def jsd(llm: pd.DataFrame):  # type: ignore[no-untyped-def]
        records = compute_all(human, None, llm, pd.DataFrame({"item_id": items}),
                              SuiteOptions(n_resamples=20, n_permutations=20))
        return next(r for r in records if r.name == "jsd_mean" and r.slice == "all")

    sampled = jsd(pd.DataFrame(base))
    with_probs = jsd(pd.DataFrame({**base, "value_probs": [{0.0: 0.5, 1.0: 0.5}] * 20}))
    assert sampled.value == pytest.approx(0.311, abs=1e-3)       # certain "1" vs a 50/50 crowd
    assert with_probs.value == pytest.approx(0.0, abs=1e-12)
    assert with_probs.details["llm_distribution"] == "label probabilities"
