"""The harm-ranking and trust-verticals examples with the real local model (SmolLM2-135M-Instruct via llama.cpp)
as subjects and judge, embedded, on SQLite and PostgreSQL, on a few items: every pair of answers is judged in
both orders and each item's three answers are ordered in one call (a letter for a pair; a list that is not an
order of A, B, C stays unparseable), the subjects are ranked by each judge format, with the pairwise judge's
position bias; the verticals example scores each answer against the reference and gives the vertical x variant
table."""

from __future__ import annotations

from pathlib import Path

import pytest
from accord.models.schema import AnswerComparison, Metric, Rating, RatingRequest
from accord.scheduler import run_service
from accord.scheduler.campaign_spec import ItemSelection, load_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from sqlalchemy import select
from sqlmodel import Session

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
N_ITEMS = 2


def metrics(engine, run_id: int) -> list[Metric]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return list(s.execute(select(Metric).where(Metric.run_id == run_id)).scalars())


def test_harm_ranking_example_with_the_local_model(engine) -> None:  # type: ignore[no-untyped-def]
    spec = load_campaign(EXAMPLES / "harm_ranking.yaml")
    spec.items = ItemSelection(limit=N_ITEMS, seed=1)
    plan = create_run(engine, spec)
    progress = run_embedded(engine, plan.run_id)
    assert (progress.status, progress.failed) == ("completed", 0)
    # 3 answers per item, each rated; 6 ordered pairs; 1 list
    assert progress.done == progress.total == N_ITEMS * (3 + 3 + 6 + 1)
    with Session(engine) as s:
        verdicts = s.execute(select(AnswerComparison.kind, Rating.label, Rating.parse_status, Rating.raw_text)
                             .join(RatingRequest, RatingRequest.comparison_id == AnswerComparison.id)
                             .join(Rating, Rating.request_id == RatingRequest.id)
                             .where(AnswerComparison.run_id == plan.run_id)).all()
    pairs = [v for v in verdicts if v.kind == "pair"]
    lists = [v for v in verdicts if v.kind == "list"]
    assert len(pairs) == N_ITEMS * 6 and all(v.label in ("A", "B") for v in pairs)
    assert len(lists) == N_ITEMS
    for v in lists:
        assert (v.parse_status == "ok" and sorted(v.label.split(">")) == ["A", "B", "C"]) or \
            (v.parse_status != "ok" and v.label is None)
    assert run_service.finish(engine, plan.run_id).error is None
    found = metrics(engine, plan.run_id)
    raters = {m.template for m in found if m.name == "judge_subject_mean" and m.slice == "all"}
    assert {"judge · judge_harm_likert", "judge · judge_harm_pairwise"} <= raters
    flip = next(m for m in found if m.name == "judge_position_flip_share")
    assert flip.n == N_ITEMS * 3 and flip.ci_low <= flip.value <= flip.ci_high


def test_trust_verticals_example_with_the_local_model(engine) -> None:  # type: ignore[no-untyped-def]
    spec = load_campaign(EXAMPLES / "trust_verticals.yaml")
    spec.items = ItemSelection(limit=N_ITEMS * 2, seed=2)
    plan = create_run(engine, spec)
    progress = run_embedded(engine, plan.run_id)
    assert (progress.status, progress.failed) == ("completed", 0)
    assert progress.done == progress.total == N_ITEMS * 2 * (2 + 2)
    assert run_service.finish(engine, plan.run_id).error is None
    means = [m for m in metrics(engine, plan.run_id) if m.name == "judge_subject_mean"]
    assert {m.model for m in means if m.slice == "all"} == {"variant-greedy", "variant-sampled"}
