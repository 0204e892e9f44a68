"""Expansion of a campaign into rating requests, personas, and the set-based cache fill (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import (
    RATING_CACHED_FIELDS,
    Campaign,
    ModelSpec,
    PromptTemplate,
    Rating,
    RatingRequest,
    Run,
)
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.expand import CampaignError, create_run
from tests.fakes.synthetic_dataset import make_sparse_dataset


@pytest.fixture
def dataset(engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    kwargs = make_sparse_dataset(tmp_path, n_items=12, n_annotators=40, seed=3)
    import_dataset(engine, ImportSpec(**{**kwargs, "name": "syn"}))
    return engine


def campaign(**over):  # type: ignore[no-untyped-def]
    doc = {"name": "c", "dataset": "syn", "dimension": "Q_overall",
           "models": [{"name": "a", "provider": "openai", "model": "gpt-x", "base_url": "http://127.0.0.1:9/v1"},
                      {"name": "b", "provider": "local"}],
           "templates": ["likert_unsafe", "binary_unsafe"], "samples": 3, "decoding": {"seed": 5}}
    doc.update(over)
    return parse_campaign(doc)


def count(engine, model, *where) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def test_expansion_counts_and_uniqueness(dataset) -> None:  # type: ignore[no-untyped-def]
    plan = create_run(dataset, campaign())
    assert plan.total == 12 * 2 * 2 * 3 == count(dataset, RatingRequest, RatingRequest.run_id == plan.run_id)
    with Session(dataset) as s:
        keys = s.execute(select(RatingRequest.cache_key).where(RatingRequest.run_id == plan.run_id)).scalars().all()
        run = s.get(Run, plan.run_id)
    assert len(set(keys)) == len(keys)          # samples are distinct calls
    assert run.total == plan.total and run.status == "pending"
    # A second run of the same campaign reuses the model and template rows (identical specs share a row).
    create_run(dataset, campaign())
    assert count(dataset, ModelSpec) == 2 and count(dataset, PromptTemplate) == 2 and count(dataset, Campaign) == 2


def test_item_limit_ids_and_errors(dataset) -> None:  # type: ignore[no-untyped-def]
    assert create_run(dataset, campaign(items={"limit": 5, "seed": 1}, samples=1)).total == 5 * 4
    with Session(dataset) as s:
        from accord.models.schema import Item
        ext = s.execute(select(Item.external_id).limit(2)).scalars().all()
    assert create_run(dataset, campaign(items={"ids": ext}, samples=1)).total == 2 * 4
    with pytest.raises(CampaignError, match="items.ids: not in dataset 'syn': nope"):
        create_run(dataset, campaign(items={"ids": ["nope"]}))
    with pytest.raises(CampaignError, match="dataset: no dataset named 'other'"):
        create_run(dataset, campaign(dataset="other"))
    with pytest.raises(CampaignError, match="dimension: 'Q_x' is not in dataset 'syn'"):
        create_run(dataset, campaign(dimension="Q_x"))
    before = count(dataset, RatingRequest)
    with pytest.raises(CampaignError, match="persona-conditioned; add 'personas'"):
        create_run(dataset, campaign(templates=["persona_likert_unsafe"]))
    assert count(dataset, RatingRequest) == before     # nothing half-written
    assert count(dataset, Run) == 2


def test_personas_from_attributes(dataset) -> None:  # type: ignore[no-untyped-def]
    plan = create_run(dataset, campaign(templates=["persona_likert_unsafe", "likert_unsafe"], samples=1,
                                        personas={"from_attributes": ["gender"]}, models=[{"name": "b", "provider": "local"}]))
    with Session(dataset) as s:
        keys = set(s.execute(select(RatingRequest.persona_key).where(RatingRequest.run_id == plan.run_id)).scalars())
    assert keys == {"", "gender=Man", "gender=Woman", "gender=Nonbinary"}
    assert plan.total == 12 * (3 + 1)
    with pytest.raises(CampaignError, match="no annotator in 'syn' has attribute\\(s\\) shoe_size"):
        create_run(dataset, campaign(templates=["persona_likert_unsafe"], personas={"from_attributes": ["shoe_size"]}))
    with pytest.raises(CampaignError, match="personas: the persona .* is longer than 500 characters"):
        create_run(dataset, campaign(templates=["persona_likert_unsafe"], personas={"list": [{"gender": "W" * 500}]}))


def test_cache_fill_copies_original_ratings_into_new_runs(dataset) -> None:  # type: ignore[no-untyped-def]
    first = create_run(dataset, campaign(samples=1))
    with Session(dataset, expire_on_commit=False) as s:
        reqs = s.execute(select(RatingRequest).where(RatingRequest.run_id == first.run_id).order_by(RatingRequest.id)).scalars().all()
        originals = []
        for r in reqs[:10]:   # pretend 10 were answered by a provider
            rating = Rating(request_id=r.id, run_id=r.run_id, cache_key=r.cache_key, raw_text="I think four", label="4",
                            value=0.75, parse_status="ok", input_tokens=100, output_tokens=1, cost_usd=0.01,
                            cached_input_tokens=64, repair_text="4", repaired=True)
            originals.append(rating)
            s.add(rating)
            r.status = "done"
            s.add(r)
        s.commit()
    second = create_run(dataset, campaign(samples=1))
    assert second.cached == 10
    with Session(dataset) as s:
        copies = s.execute(select(Rating).where(Rating.run_id == second.run_id)).scalars().all()
        run = s.get(Run, second.run_id)
    assert len(copies) == 10 and all(c.cache_hit and c.cost_usd == 0 and c.value == 0.75 for c in copies)
    # The same answer fields as the per-request cache path copies.
    assert all(getattr(c, f) == getattr(originals[0], f) for c in copies for f in RATING_CACHED_FIELDS
               if f not in ("decoding", "template_hash")), "a cached copy differs from its original"
    assert {c.source_rating_id for c in copies} == {o.id for o in originals}
    assert run.done == 10 and run.cached == 10
    # Opting out of the cache: nothing is copied.
    assert create_run(dataset, campaign(samples=1, cache=False)).cached == 0
