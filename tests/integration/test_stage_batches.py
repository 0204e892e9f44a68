"""Subjects and judges through the providers' batch APIs: the subjects answer in an OpenAI batch (with an errored
and an expired request resubmitted), their answers create the judge requests, which go out in Anthropic batches
(a 1-5 rating of each answer and each ordered pair of two subjects' answers). Every answer stored once, every
judge request rated once, at the batch price, and the run's total is what the campaign's request count said.
SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from accord.models.schema import Answer, AnswerComparison, ProviderBatch, Rating
from accord.scheduler.batch_dispatch import dispatch_plan, run_batches
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.expand import create_run
from accord.scheduler.stages import resolve_stages
from sqlalchemy import func, select
from sqlmodel import Session


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "harm_ranking"
N_ITEMS = 4


def stage_campaign(openai_fake, anthropic_fake, cache: bool = False):  # type: ignore[no-untyped-def]
    def subject(name: str, seed: int) -> dict:  # type: ignore[type-arg]
        return {"name": name, "provider": "openai", "model": "gpt-4o-mini", "base_url": openai_fake.base_url,
                "batch_api": True, "decoding": {"seed": seed},
                "price": {"input": 0.15, "output": 0.6, "batch_discount": 0.5}}

    return parse_campaign({
        "name": "batch-stages", "dataset": "harm_ranking", "dataset_import": str(EXAMPLE / "import.yaml"),
        "items": {"limit": N_ITEMS, "seed": 1}, "dispatch": "batch", "cache": cache,
        "subjects": {"models": [subject("s1", 1), subject("s2", 2)], "templates": ["answer_prompt"]},
        "judges": {"models": [{"name": "claude", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
                               "base_url": anthropic_fake.base_url, "batch_api": True,
                               "price": {"input": 0.8, "output": 4.0, "batch_discount": 0.5}}],
                   "templates": ["judge_harm_likert", "judge_harm_pairwise"]}})


def test_subjects_and_judges_through_batch_apis(engine, openai_fake, anthropic_fake) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_errored_next=1, batch_expired_next=1)
    anthropic_fake.reset()
    spec = stage_campaign(openai_fake, anthropic_fake)
    plan = create_run(engine, spec)
    assert dispatch_plan(engine, plan.run_id)[1] == []        # the subjects go to a batch API, not realtime
    progress = run_batches(engine, plan.run_id, poll_seconds=0.0)
    expected = resolve_stages(spec).request_count(spec, N_ITEMS)
    assert expected == N_ITEMS * 2 + N_ITEMS * 2 + N_ITEMS * 2       # answers, their ratings, both pair orders
    assert (progress.status, progress.failed, progress.total, progress.done) == ("completed", 0, expected, expected)
    assert openai_fake.stats()["ok"] == 0 and anthropic_fake.stats()["ok"] == 0    # no realtime call
    with Session(engine) as s:
        answers = s.execute(select(Answer).where(Answer.run_id == plan.run_id)).scalars().all()
        ratings = s.execute(select(Rating).where(Rating.run_id == plan.run_id)).scalars().all()
        made = s.execute(select(ProviderBatch).where(ProviderBatch.run_id == plan.run_id)
                         .order_by(ProviderBatch.id)).scalars().all()
        pairs = s.execute(select(func.count()).select_from(AnswerComparison)
                          .where(AnswerComparison.run_id == plan.run_id)).scalar_one()
    assert len(answers) == N_ITEMS * 2 and all(a.status == "ok" and a.text for a in answers)
    for a in answers:
        assert a.cost_usd == pytest.approx((a.input_tokens * 0.15 + a.output_tokens * 0.6) / 1e6 * 0.5)
    assert len(ratings) == len({r.request_id for r in ratings}) == N_ITEMS * 4 and pairs == N_ITEMS * 2
    assert all(r.provider_batch_id is not None and r.parse_status == "ok" for r in ratings)
    for r in ratings:
        assert r.cost_usd == pytest.approx((r.input_tokens * 0.8 + r.output_tokens * 4.0) / 1e6 * 0.5)
    sent = {p: sum(b.request_count for b in made if b.provider == p) for p in ("openai", "anthropic")}
    assert sent == {"openai": N_ITEMS * 2 + 2, "anthropic": N_ITEMS * 4}    # the errored and expired ones again


def test_a_batch_rerun_is_answered_from_the_cache(engine, openai_fake, anthropic_fake) -> None:  # type: ignore[no-untyped-def]
    """The same campaign again (cache on): the subjects' answers and the judges' ratings are copies, no batch is
    sent."""
    openai_fake.reset()
    anthropic_fake.reset()
    spec = stage_campaign(openai_fake, anthropic_fake, cache=True)
    first = run_batches(engine, create_run(engine, spec).run_id, poll_seconds=0.0)
    assert (first.status, first.failed) == ("completed", 0)
    sent = openai_fake.stats()["batch_requests"], anthropic_fake.stats()["batch_requests"]
    again = create_run(engine, spec)
    p = run_batches(engine, again.run_id, poll_seconds=0.0)
    expected = resolve_stages(spec).request_count(spec, N_ITEMS)
    assert (p.status, p.done, p.cached, p.cost_usd) == ("completed", expected, expected, 0.0)
    assert (openai_fake.stats()["batch_requests"], anthropic_fake.stats()["batch_requests"]) == sent
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(ProviderBatch)
                         .where(ProviderBatch.run_id == again.run_id)).scalar_one() == 0
