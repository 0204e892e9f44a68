"""The alt-test against a port of the authors' reference implementation.

Reference: ``alt_test`` (with ``by_procedure``, ``accuracy``, ``neg_rmse``, ``ttest``) in
``alt_test_example.ipynb`` of github.com/nitaytech/AltTest (Calderon, Reichart & Dror, ACL 2025). The port
below re-states that procedure in the reference's own terms (dictionaries of annotations, per-item Python
loops, scipy's one-sample t-test, the Benjamini-Yekutieli step-up loop) so that the expected omega and rho
are computed independently of accord's vectorised implementation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from accord.analysis.alt_test import alt_test, benjamini_yekutieli_rejections
from accord.analysis.suite import SuiteOptions, compute_all
from scipy.stats import ttest_1samp


# --- port of the reference implementation ----------------------------------------------------------------

def _ref_by(pvalues: list[float], q: float) -> list[int]:
    p = np.array(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p)
    harmonic = np.sum(1.0 / np.arange(1, m + 1))
    thresholds = (np.arange(1, m + 1) / m) * (q / harmonic)
    last = -1
    for rank in range(m):
        if p[order][rank] <= thresholds[rank]:
            last = rank
    return [] if last == -1 else list(order[: last + 1])


def _ref_accuracy(pred, annotations) -> float:  # type: ignore[no-untyped-def]
    return float(np.mean([pred == a for a in annotations]))


def _ref_neg_rmse(pred, annotations) -> float:  # type: ignore[no-untyped-def]
    return -1 * float(np.sqrt(np.mean([(pred - a) ** 2 for a in annotations])))


def reference_alt_test(llm_annotations: dict, humans_annotations: dict, scoring: str, epsilon: float,
                       q_fdr: float = 0.05, min_humans_per_instance: int = 2,
                       min_instances_per_human: int = 30) -> tuple[float, float, list[float]]:
    score = _ref_accuracy if scoring == "accuracy" else _ref_neg_rmse
    items_of, humans_of = {}, {}
    for h, anns in humans_annotations.items():
        items_of[h] = list(anns)
        for i in anns:
            humans_of.setdefault(i, []).append(h)
    keep = {i for i in humans_of if len(humans_of[i]) >= min_humans_per_instance and i in llm_annotations}
    items_of = {h: [i for i in items_of[h] if i in keep] for h in items_of}
    humans_of = {i: humans_of[i] for i in humans_of if i in keep}
    pvalues, rhos = [], []
    for excluded in humans_annotations:
        instances = [i for i in items_of[excluded] if i in llm_annotations]
        if len(instances) < min_instances_per_human:
            continue
        llm_ind, human_ind = [], []
        for i in instances:
            rest = [humans_annotations[h][i] for h in humans_of[i] if h != excluded]
            s_h = score(humans_annotations[excluded][i], rest)
            s_f = score(llm_annotations[i], rest)
            llm_ind.append(1 if s_f >= s_h else 0)
            human_ind.append(1 if s_h >= s_f else 0)
        diff = [a - b for a, b in zip(human_ind, llm_ind)]
        pvalues.append(ttest_1samp(diff, epsilon, alternative="less").pvalue)
        rhos.append(float(np.mean(llm_ind)))
    rejected = _ref_by(pvalues, q_fdr)
    return len(rejected) / len(rhos), float(np.mean(rhos)), pvalues


# --- fixed data sets --------------------------------------------------------------------------------------

def labelled_set(seed: int, llm_noise: float, n_items: int = 60, n_annotators: int = 6, n_labels: int = 3,
                 annotator_noise: float = 0.35, sparse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, size=n_items)

    def noisy(noise: float, size: tuple[int, ...]) -> np.ndarray:
        flip = rng.random(size) < noise
        return np.where(flip, rng.integers(0, n_labels, size=size), np.broadcast_to(
            truth.reshape((-1,) + (1,) * (len(size) - 1)), size)).astype(float)

    ratings = noisy(annotator_noise, (n_items, n_annotators))
    if sparse:
        ratings[rng.random(ratings.shape) < 0.2] = np.nan
    return ratings, noisy(llm_noise, (n_items,))


def as_dicts(ratings: np.ndarray, llm: np.ndarray) -> tuple[dict, dict]:
    humans = {f"h{j}": {f"i{i}": float(ratings[i, j]) for i in range(ratings.shape[0]) if np.isfinite(ratings[i, j])}
              for j in range(ratings.shape[1])}
    return {f"i{i}": float(v) for i, v in enumerate(llm) if np.isfinite(v)}, humans


@pytest.mark.parametrize("case, seed, llm_noise, sparse, measure, epsilon", [
    ("llm wins", 11, 0.05, False, "accuracy", 0.1),
    ("llm loses", 12, 0.9, False, "accuracy", 0.1),
    ("sparse, some annotators beaten", 15, 0.35, True, "accuracy", 0.2),
    ("scores, neg_rmse", 14, 0.1, True, "neg_rmse", 0.15),
])
def test_omega_and_rho_equal_the_reference(case: str, seed: int, llm_noise: float, sparse: bool, measure: str,
                                           epsilon: float) -> None:
    ratings, llm = labelled_set(seed, llm_noise, sparse=sparse)
    if measure == "neg_rmse":
        llm = llm + np.random.default_rng(seed).normal(0, 0.2, size=llm.shape)  # continuous judge scores
    llm_dict, humans = as_dicts(ratings, llm)
    omega, rho, pvalues = reference_alt_test(llm_dict, humans, measure, epsilon)
    res = alt_test(ratings, llm, [f"h{j}" for j in range(ratings.shape[1])], measure=measure, epsilon=epsilon)
    assert res.winning_rate == pytest.approx(omega, abs=1e-12)
    assert res.advantage_probability == pytest.approx(rho, abs=1e-12)
    assert [o.pvalue for o in res.annotators] == pytest.approx(pvalues, abs=1e-12, nan_ok=True)
    if case == "llm wins":
        assert res.passed and omega >= 0.5
    if case == "llm loses":
        assert not res.passed and omega < 0.5
    if case == "sparse, some annotators beaten":
        assert omega == pytest.approx(1 / 3) and sum(o.llm_wins for o in res.annotators) == 2


def test_per_group_winning_rates_and_skipped_annotators() -> None:
    ratings, llm = labelled_set(21, 0.05, n_annotators=8)
    # annotators 0-3 are noisy (the LLM beats them), 4-7 copy the truth more closely
    rng = np.random.default_rng(5)
    ratings[:, :4] = np.where(rng.random((60, 4)) < 0.6, rng.integers(0, 3, size=(60, 4)), ratings[:, :4])
    ratings[40:, 7] = np.nan  # annotator 7 has 40 items: kept; with min_items=45 skipped
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    res = alt_test(ratings, llm, [f"h{j}" for j in range(8)], group_labels=labels, group_names=["g=noisy", "g=good"],
                   min_items=45)
    assert res.skipped == {"h7": 40}
    by_group = {g.group: g for g in res.groups}
    assert by_group["g=noisy"].n_annotators == 4 and by_group["g=good"].n_annotators == 3
    wins = {o.annotator: o.llm_wins for o in res.annotators}
    assert by_group["g=noisy"].winning_rate == np.mean([wins[f"h{j}"] for j in range(4)])
    assert by_group["g=noisy"].winning_rate >= by_group["g=good"].winning_rate


def test_by_rejections_match_the_reference_loop() -> None:
    p = np.array([0.001, 0.02, 0.3, 0.0001, np.nan, 0.04])
    ref = _ref_by(np.where(np.isnan(p), 1.0, p).tolist(), 0.05)
    assert sorted(np.flatnonzero(benjamini_yekutieli_rejections(p, 0.05)).tolist()) == sorted(int(k) for k in ref)


def test_too_few_items_is_a_clear_error() -> None:
    ratings, llm = labelled_set(3, 0.1, n_items=10)
    with pytest.raises(ValueError, match="no annotator has 30 or more items"):
        alt_test(ratings, llm)


def test_suite_records_alt_test_per_rater_and_group() -> None:
    ratings, llm = labelled_set(11, 0.05, n_annotators=6)
    items = [f"i{i}" for i in range(ratings.shape[0])]
    human = pd.DataFrame([(items[i], f"h{j}", ratings[i, j]) for i in range(60) for j in range(6)],
                         columns=["item_id", "annotator_id", "value"])
    annotators = pd.DataFrame({"annotator_id": [f"h{j}" for j in range(6)], "group": list("aaabbb")})
    frame = pd.DataFrame({"item_id": items, "model": "m", "template": "t", "sample_index": 0, "value": llm,
                          "parse_status": "ok"})
    records = compute_all(human, annotators, frame, None, SuiteOptions(n_resamples=0, n_permutations=10,
                                                                        alt_epsilon=0.1))
    by = {(r.name, r.slice): r for r in records if r.name.startswith("alt_test")}
    llm_dict, humans = as_dicts(ratings, llm)
    omega, rho, _ = reference_alt_test(llm_dict, humans, "accuracy", 0.1)
    assert by[("alt_test_winning_rate", "all")].value == pytest.approx(omega)
    assert by[("alt_test_advantage_probability", "all")].value == pytest.approx(rho)
    assert by[("alt_test_winning_rate", "all")].details["measure"] == "accuracy"
    assert {("alt_test_winning_rate", "group=a"), ("alt_test_winning_rate", "group=b")} <= set(by)
