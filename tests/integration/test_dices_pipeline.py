"""DICES-350 through the product path: import into the database, a run over all 350 items, the run's frames,
post-processing. The human baseline must reproduce the published figures (median leave-one-out annotator
r = 0.513; Krippendorff's nominal alpha = 0.1609)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import Session

from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import Metric
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.expand import create_run
from accord.scheduler.postprocess import postprocess_run
from tests.conftest import DICES

pytestmark = pytest.mark.skipif(not DICES.exists(), reason="shared/datasets/dices350 is not beside the repository")


def test_dices350_reference_figures_from_the_database(engine) -> None:  # type: ignore[no-untyped-def]
    report = import_dataset(engine, ImportSpec(
        name="dices350", ratings_file=DICES / "ratings.csv", items_file=DICES / "items.csv", annotator_col="rater_id",
        rating_cols=["Q_overall"], conversation_col="context", response_col="response",
        item_meta_cols=["expert_label"], label_map="No=0, Unsure=0.5, Yes=1"))
    assert (report.n_items, report.n_annotators, report.n_ratings) == (350, 123, 43050)
    # A run over every item; nothing is executed, so the metrics are the human-only ones.
    plan = create_run(engine, parse_campaign({
        "name": "dices-baseline", "dataset": "dices350",
        "models": [{"name": "m", "provider": "openai", "model": "gpt-4o", "base_url": "http://127.0.0.1:9/v1"}],
        "templates": ["binary_unsafe"]}))
    assert plan.total == 350
    postprocess_run(engine, plan.run_id)
    with Session(engine) as s:
        metrics = {m.name: m for m in s.execute(select(Metric).where(Metric.run_id == plan.run_id,
                                                                     Metric.slice == "all", Metric.model == "")).scalars()}
    assert round(metrics["annotator_loo_r_median"].value, 3) == 0.513
    assert metrics["annotator_loo_r_median"].n == 122        # r061 rates every item the same: r undefined
    assert round(metrics["krippendorff_alpha_nominal"].value, 4) == 0.1609
