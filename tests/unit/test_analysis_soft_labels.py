"""Soft-label cross-entropy and Manhattan distance beside JSD, multi-class accuracy and the confusion matrix
(finding 4), checked against scipy on a small hate-speech-like set with soft labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from accord.analysis.soft_labels import CE_FLOOR, cross_entropy, manhattan, multiclass_agreement
from accord.analysis.suite import SuiteOptions, compute_all
from scipy.spatial.distance import cityblock
from scipy.stats import entropy

P_HUMAN = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.6], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
Q_LLM = np.array([[1.0, 0.0, 0.0], [0.1, 0.3, 0.6], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


def test_cross_entropy_is_entropy_plus_kl_with_the_floor() -> None:
    ce, h, n = cross_entropy(P_HUMAN, Q_LLM)
    expected = []
    for p, q in zip(P_HUMAN[:3], Q_LLM[:3]):
        q = np.maximum(q, CE_FLOOR)
        q = q / q.sum()
        expected.append(entropy(p, base=2) + entropy(p, q, base=2))
    assert n == 3  # the item without human ratings is left out
    assert ce == pytest.approx(np.mean(expected), rel=1e-12)
    assert h == pytest.approx(np.mean([entropy(p, base=2) for p in P_HUMAN[:3]]), rel=1e-12)
    assert ce > h


def test_manhattan_distance() -> None:
    value, n = manhattan(P_HUMAN, Q_LLM)
    assert n == 3
    assert value == pytest.approx(np.mean([cityblock(p, q) for p, q in zip(P_HUMAN[:3], Q_LLM[:3])]))
    assert manhattan(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))[0] == 2.0


def test_multiclass_accuracy_and_confusion() -> None:
    domain = np.array([1.0, 2.0, 3.0])
    res = multiclass_agreement(np.array([1, 2, 3, 3, np.nan]), np.array([1, 3, 3, 2, 1.0]), domain)
    assert (res.accuracy, res.n) == (0.5, 4)
    assert res.confusion == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match="outside the value domain"):
        multiclass_agreement(np.array([0.5]), np.array([1.0]), domain)


def test_suite_reports_soft_label_measures_per_group() -> None:
    rng = np.random.default_rng(8)
    items = [f"t{i}" for i in range(30)]
    rows = [(it, f"a{j}", float(rng.integers(0, 3))) for it in items for j in range(6)]
    human = pd.DataFrame(rows, columns=["item_id", "annotator_id", "value"])
    annotators = pd.DataFrame({"annotator_id": [f"a{j}" for j in range(6)], "group": ["target"] * 3 + ["control"] * 3})
    llm = pd.DataFrame({"item_id": items * 2, "model": "m", "template": "t", "sample_index": [0] * 30 + [1] * 30,
                        "value": rng.integers(0, 3, size=60).astype(float), "parse_status": "ok"})
    recs = compute_all(human, annotators, llm, None, SuiteOptions(n_resamples=0, n_permutations=5))
    by = {(r.name, r.slice): r for r in recs if r.model == "m"}
    for name in ("jsd_mean", "soft_label_cross_entropy", "soft_label_manhattan"):
        for slice_ in ("all", "group=target", "group=control"):
            assert by[(name, slice_)].value is not None and by[(name, slice_)].n == 30
    # recompute the cross-entropy of the whole crowd independently
    matrix = human.pivot(index="item_id", columns="annotator_id", values="value").loc[items]
    p = np.stack([(matrix.to_numpy() == v).mean(axis=1) for v in (0.0, 1.0, 2.0)], axis=1)
    q = np.stack([(llm.pivot(index="item_id", columns="sample_index", values="value").loc[items].to_numpy() == v)
                  .mean(axis=1) for v in (0.0, 1.0, 2.0)], axis=1)
    qf = np.maximum(q, CE_FLOOR)
    qf /= qf.sum(axis=1, keepdims=True)
    expected = np.mean([entropy(a, base=2) + entropy(a, b, base=2) for a, b in zip(p, qf)])
    assert by[("soft_label_cross_entropy", "all")].value == pytest.approx(expected, rel=1e-9)
    acc = by[("multiclass_accuracy_vs_majority", "all")]
    assert np.array(acc.details["confusion"]).sum() == acc.n
