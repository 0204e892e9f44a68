"""`--model-rating-col`: an existing judge model's labels in a dataset column are imported as a named rater
and enter the metrics exactly like a model accord ran (template 'imported'); bad labels stop the import with
one line and change nothing. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from accord.models.dataset_import import import_dataset
from accord.models.import_formats import DatasetImportError
from accord.models.import_spec import ImportSpec
from accord.models.schema import Dataset, ImportedRating, Metric
from accord.scheduler import run_service
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from tests.fakes.openai_server import OpenAIFakeServer

N_ITEMS, N_ANNOTATORS = 12, 6


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    srv = OpenAIFakeServer().start()
    yield srv
    srv.stop()


def write_ratings(path: Path, bad_item: int | None = None) -> Path:
    lines = ["item_id,annotator_id,q,text,gpt4_label"]
    for i in range(N_ITEMS):
        judge = "Maybe" if i == bad_item else ("Yes" if i % 3 == 0 else "No")
        for a in range(N_ANNOTATORS):
            label = "Yes" if (i % 3 == 0) != (a == i % N_ANNOTATORS) else "No"
            lines.append(f"i{i},a{a},{label},item number {i},{judge}")
    path.write_text("\n".join(lines) + "\n")
    return path


def spec(path: Path) -> ImportSpec:
    return ImportSpec(name="withjudge", ratings_file=path, item_col="item_id", annotator_col="annotator_id",
                      rating_cols=["q"], text_col="text", label_map="No=0, Yes=1",
                      model_rating_cols={"gpt4": "gpt4_label"})


def test_imported_judge_enters_the_metrics_like_a_run_model(engine, tmp_path: Path, server) -> None:  # type: ignore[no-untyped-def]
    import_dataset(engine, spec(write_ratings(tmp_path / "r.csv")))
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(ImportedRating)).scalar_one() == N_ITEMS
    campaign = parse_campaign({"name": "c", "dataset": "withjudge", "templates": ["binary_unsafe"],
                               "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini",
                                           "base_url": server.base_url}]})
    plan = create_run(engine, campaign)
    run_embedded(engine, plan.run_id, backoff_initial=0.01)
    assert run_service.finish(engine, plan.run_id).error is None
    with Session(engine) as s:
        rows = s.execute(select(Metric.name, Metric.model, Metric.template, Metric.value)
                         .where(Metric.run_id == plan.run_id, Metric.slice == "all")).all()
    imported = {n for n, m, t, _ in rows if (m, t) == ("gpt4", "imported")}
    run_model = {n for n, m, t, _ in rows if (m, t) == ("gpt", "binary_unsafe")}
    assert {"pearson_r_vs_mean", "accuracy_vs_majority"} <= imported
    assert imported == run_model                        # the same metrics as the model accord ran
    accuracy = {m: v for n, m, t, v in rows if n == "accuracy_vs_majority"}
    assert accuracy["gpt4"] == pytest.approx(1.0)       # the imported judge agrees with the majority by design


def test_an_unmapped_model_label_stops_the_import_and_changes_nothing(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatasetImportError, match=r"r\.csv.*gpt4_label.*unmapped label 'Maybe'"):
        import_dataset(engine, spec(write_ratings(tmp_path / "r.csv", bad_item=4)))
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(Dataset)).scalar_one() == 0
