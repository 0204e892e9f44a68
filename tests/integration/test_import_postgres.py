"""import_dataset on PostgreSQL (a throwaway database per test, see ``pg_engine`` in tests/conftest.py):
real DICES data, sparse synthetic data, bad input leaving the database unchanged, replace."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from accord.models.dataset_import import DatasetImportError, ImportSpec, import_dataset, summarize_dataset
from accord.models.schema import Campaign, Run
from tests.fakes.synthetic_dataset import load_truth, make_sparse_dataset
from tests.unit.test_import import (
    BAD_INPUTS,
    assert_bad_import_changes_nothing,
    attributes_of,
    counts,
    dices_spec,
    items_of,
    needs_dices,
    ratings_of,
    write,
)

pytestmark = pytest.mark.postgres


@needs_dices
def test_dices350_import_on_postgres(pg_engine: Engine) -> None:
    started = time.perf_counter()
    report = import_dataset(pg_engine, dices_spec())
    elapsed = time.perf_counter() - started
    assert (report.n_items, report.n_annotators, report.n_ratings) == (350, 123, 43_050)
    assert elapsed < 15, f"DICES-350 import took {elapsed:.1f}s on PostgreSQL"
    assert counts(pg_engine) == {"dataset": 1, "item": 350, "annotator": 123, "human_rating": 43_050}
    ratings = ratings_of(pg_engine, report.dataset_id)
    assert ratings[("173", "r002", "Q_overall")] == (1.0, "Yes")
    assert items_of(pg_engine, report.dataset_id)["173"][1] == {"expert_label": "No"}
    summary = summarize_dataset(pg_engine, report.dataset_id)
    assert summary["ratings_per_item"] == {"min": 123, "median": 123.0, "max": 123}

    replaced = import_dataset(pg_engine, dices_spec(replace=True))
    assert replaced.replaced and replaced.dataset_id == report.dataset_id
    assert counts(pg_engine) == {"dataset": 1, "item": 350, "annotator": 123, "human_rating": 43_050}


@pytest.mark.parametrize(("fmt", "layout"), [("parquet", "long"), ("csv", "wide"), ("jsonl", "long")])
def test_sparse_dataset_on_postgres(pg_engine: Engine, tmp_path: Path, fmt: str, layout: str) -> None:
    kwargs = make_sparse_dataset(tmp_path, fmt=fmt, layout=layout, seed=11)  # type: ignore[arg-type]
    truth = load_truth(tmp_path)
    report = import_dataset(pg_engine, ImportSpec(**kwargs))
    assert (report.n_items, report.n_annotators, report.n_ratings) == (60, 200, truth["n_ratings"])
    stored = ratings_of(pg_engine, report.dataset_id)
    assert {(i, a): v for (i, a, _d), (v, _raw) in stored.items()} == {
        (i, a): v for i, a, v in truth["ratings"]
    }
    assert attributes_of(pg_engine, report.dataset_id) == truth["attributes"]
    summary = summarize_dataset(pg_engine, report.dataset_id)
    missing = summary["annotators_missing_attribute"]["race"]
    assert missing == sum(1 for attrs in truth["attributes"].values() if "race" not in attrs)


BAD_ON_PG = [
    b for b in BAD_INPUTS if b[0] in {"unmapped.csv", "duplicate.csv", "latin1.csv", "bad_number.csv"}
]


@pytest.mark.parametrize(
    ("name", "content", "overrides", "fragments"), BAD_ON_PG, ids=[b[0] for b in BAD_ON_PG]
)
def test_bad_last_row_changes_nothing_on_postgres(
    pg_engine: Engine,
    tmp_path: Path,
    name: str,
    content: bytes,
    overrides: dict[str, Any],
    fragments: list[str],
) -> None:
    assert_bad_import_changes_nothing(pg_engine, tmp_path, name, content, overrides, fragments)


def test_replace_refused_with_runs_on_postgres(pg_engine: Engine, tmp_path: Path) -> None:
    ratings = write(tmp_path, "r.csv", "item_id,annotator_id,s,t\n1,a,1,x\n2,a,0,y\n")
    spec = ImportSpec(name="d", ratings_file=ratings, rating_cols="s", text_col="t")
    dataset_id = import_dataset(pg_engine, spec).dataset_id
    with Session(pg_engine) as session:
        campaign = Campaign(name="c", spec={}, spec_hash="h", dataset_id=dataset_id)
        session.add(campaign)
        session.flush()
        session.add(Run(campaign_id=campaign.id))
        session.commit()
    before = counts(pg_engine)
    with pytest.raises(DatasetImportError, match="cannot be replaced"):
        import_dataset(pg_engine, spec.model_copy(update={"replace": True}))
    assert counts(pg_engine) == before
