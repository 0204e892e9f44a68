"""Reference figures on the real DICES-350 ratings (shared dataset)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from accord.analysis.agreement import fleiss_kappa, krippendorff_alpha
from accord.analysis.baseline import annotator_agreement
from accord.analysis.frames import build_human_matrix
from accord.analysis.suite import SuiteOptions, compute_all

DICES = Path("/work/shared/datasets/dices350")
CODES = {"Yes": 1.0, "Unsure": 0.5, "No": 0.0}

pytestmark = pytest.mark.skipif(not (DICES / "ratings.csv").exists(), reason="DICES-350 not available")


@pytest.fixture(scope="module")
def human() -> pd.DataFrame:
    raw = pd.read_csv(DICES / "ratings.csv", dtype={"item_id": str, "rater_id": str})
    return pd.DataFrame({"item_id": raw["item_id"], "annotator_id": raw["rater_id"],
                         "value": raw["Q_overall"].map(CODES).astype(float)})


def test_dices_shape(human):
    hm = build_human_matrix(human)
    assert hm.values.shape == (350, 123)
    assert np.isfinite(hm.values).sum() == 43050


def test_dices_median_annotator_leave_one_out_r_is_0513(human):
    hm = build_human_matrix(human)
    res = annotator_agreement(hm.values, hm.annotator_ids)
    assert round(res.median, 3) == 0.513


def test_dices_krippendorff_nominal_alpha_is_01609(human):
    hm = build_human_matrix(human)
    assert round(krippendorff_alpha(hm.values, "nominal"), 4) == 0.1609


def test_dices_fleiss_kappa_defined_with_123_ratings_per_item(human):
    hm = build_human_matrix(human)
    kappa = fleiss_kappa(hm.values, np.array([0.0, 0.5, 1.0]))
    # Fleiss' kappa and nominal alpha differ only by a small-sample correction here
    assert kappa == pytest.approx(krippendorff_alpha(hm.values, "nominal"), abs=0.005)


def test_dices_suite_with_an_expert_judge(human):
    items = pd.read_csv(DICES / "items.csv", dtype={"item_id": str})[["item_id", "expert_label"]]
    expert = items.set_index("item_id")["expert_label"].str.lower().map({"yes": 1.0, "unsafe": 1.0,
                                                                         "no": 0.0, "safe": 0.0})
    llm = pd.DataFrame({"item_id": items["item_id"], "model": "oracle", "template": "t",
                        "sample_index": 0, "value": items["item_id"].map(expert).to_numpy(),
                        "parse_status": "ok"})
    llm.loc[llm["value"].isna(), "parse_status"] = "unparseable"
    recs = compute_all(human, None, llm, items, SuiteOptions(n_resamples=200, n_permutations=50))
    by = {(r.name, r.slice, r.model): r for r in recs}
    assert round(by[("annotator_loo_r_median", "all", "")].value, 3) == 0.513
    assert round(by[("krippendorff_alpha_nominal", "all", "")].value, 4) == 0.1609
    acc = by[("accuracy_vs_expert", "all", "oracle")]
    assert acc.value == pytest.approx(1.0)
    r = by[("pearson_r_vs_mean", "all", "oracle")]
    assert 0 < r.value < 1 and r.ci_low < r.value < r.ci_high
