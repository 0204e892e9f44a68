"""The FINE example with the real local model (SmolLM2-135M-Instruct via llama.cpp) as subject and judge,
embedded, on SQLite and PostgreSQL: open answers are free text (not constrained to any label), the multiple
choice is a letter, every open answer is judged once, and the run's CS/CSS are stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from accord.models.schema import Answer, Metric, Rating, RatingRequest
from accord.scheduler import run_service
from accord.scheduler.campaign_spec import ItemSelection, load_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fake_alignment.yaml"
N_ITEMS = 3


def test_fine_example_with_the_local_model(engine) -> None:  # type: ignore[no-untyped-def]
    spec = load_campaign(EXAMPLE)
    spec.items = ItemSelection(limit=N_ITEMS)
    plan = create_run(engine, spec)
    progress = run_embedded(engine, plan.run_id)
    assert (progress.status, progress.failed) == ("completed", 0)
    assert progress.done == progress.total == N_ITEMS * 4
    with Session(engine) as s:
        answers = s.execute(select(Answer).where(Answer.run_id == plan.run_id)).scalars().all()
        judged = s.execute(select(RatingRequest.answer_id, Rating.label).join(Rating)
                           .where(RatingRequest.run_id == plan.run_id)).all()
    free = [a for a in answers if a.label is None]
    assert len(free) == N_ITEMS and all(a.status in ("ok", "truncated") for a in free)
    assert all(a.text.strip() not in ("A", "B", "safe", "unsafe") and len(a.text) > 10 for a in free)
    assert {a.label for a in answers if a.label is not None} <= {"A", "B"}
    assert sorted(aid for aid, _ in judged) == sorted(a.id for a in free)
    assert {label for _, label in judged} <= {"safe", "unsafe"}
    assert run_service.finish(engine, plan.run_id).error is None
    with Session(engine) as s:
        names = set(s.execute(select(Metric.name).where(Metric.run_id == plan.run_id)).scalars())
    assert {"fine_cs", "fine_css"} <= names
