"""Campaigns through the providers' batch APIs end to end, against the local wire servers driven by the
official SDKs: every request rated exactly once, the batch discount, splitting by the limits, partial
results resubmitted, permanent errors failed, crash recovery without double submission, cancel, budget,
pause, and models without a batch API run in realtime beside the batches. SQLite, and PostgreSQL for the
core paths."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlmodel import Session

from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import (
    BatchStatus, ProviderBatch, ProviderBatchRequest, Rating, RatingRequest, RequestStatus, Run,
)
from accord.scheduler import run_control
from accord.scheduler.batch_dispatch import dispatch_plan, run_batches, run_batches_once, uses_batch
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.expand import create_run
from accord.worker.batch.base import BatchLimits
from tests.fakes.anthropic_server import AnthropicFakeServer
from tests.fakes.openai_server import OpenAIFakeServer
from tests.fakes.synthetic_dataset import make_sparse_dataset

PRICE = {"input": 0.15, "output": 0.6, "batch_discount": 0.5}
FAST = {"poll_seconds": 0.0}


@pytest.fixture
def sqlite_db(sqlite_engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    kwargs = make_sparse_dataset(tmp_path, n_items=10, n_annotators=30, seed=11)
    import_dataset(sqlite_engine, ImportSpec(**{**kwargs, "name": "syn"}))
    return sqlite_engine


@pytest.fixture
def db(engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    kwargs = make_sparse_dataset(tmp_path, n_items=10, n_annotators=30, seed=11)
    import_dataset(engine, ImportSpec(**{**kwargs, "name": "syn"}))
    return engine


def openai_campaign(server: OpenAIFakeServer, **over):  # type: ignore[no-untyped-def]
    doc = {"name": "batch", "dataset": "syn", "dimension": "Q_overall", "samples": 2, "dispatch": "batch",
           "decoding": {"temperature": 0.7, "seed": 1}, "cache": False,
           "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                       "batch_api": True, "price": PRICE}],
           "templates": ["likert_unsafe", "binary_unsafe"]}
    doc.update(over)
    return parse_campaign(doc)


def small(server: OpenAIFakeServer, **over):  # type: ignore[no-untyped-def]
    """10 requests: one template, one sample."""
    return openai_campaign(server, samples=1, templates=["likert_unsafe"], **over)


def anthropic_campaign(server: AnthropicFakeServer, **over):  # type: ignore[no-untyped-def]
    doc = {"name": "batch-a", "dataset": "syn", "dimension": "Q_overall", "dispatch": "batch", "cache": False,
           "models": [{"name": "claude", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
                       "base_url": server.base_url, "batch_api": True,
                       "price": {"input": 0.8, "output": 4.0, "batch_discount": 0.5}}],
           "templates": ["likert_unsafe"]}
    doc.update(over)
    return parse_campaign(doc)


def rows(engine, q):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.execute(q).all()


def scalar(engine, q):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.execute(q).scalar_one()


def batches(engine, run_id: int) -> list[ProviderBatch]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.execute(select(ProviderBatch).where(ProviderBatch.run_id == run_id)
                                    .order_by(ProviderBatch.id)).scalars())


def assert_never_in_two_live_batches(engine, run_id: int) -> None:  # type: ignore[no-untyped-def]
    """A request may be in several batches only one after another: every batch but its last one for the
    request ended and was collected with a non-success outcome."""
    mapping = rows(engine, select(ProviderBatchRequest.request_id, ProviderBatchRequest.batch_id,
                                  ProviderBatchRequest.outcome, ProviderBatch.status, ProviderBatch.created_at,
                                  ProviderBatch.collected_at)
                   .join(ProviderBatch, ProviderBatch.id == ProviderBatchRequest.batch_id)
                   .where(ProviderBatch.run_id == run_id).order_by(ProviderBatchRequest.batch_id))
    by_request: dict[int, list] = {}
    for row in mapping:
        by_request.setdefault(row.request_id, []).append(row)
    for request_id, entries in by_request.items():
        for earlier, later in zip(entries, entries[1:]):
            assert earlier.outcome not in (None, "succeeded"), (request_id, entries)
            assert earlier.collected_at is not None and earlier.collected_at <= later.created_at, (request_id, entries)


# -------------------------------------------------------------------------------------------------- OpenAI
def test_openai_batch_run_rates_everything_once_at_the_batch_price(db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_errored_next=2, batch_expired_next=1)
    spec = openai_campaign(openai_fake)
    plan = create_run(db, spec)
    assert uses_batch(db, plan.run_id) and dispatch_plan(db, plan.run_id)[1] == []
    seen: list[int] = []
    progress = run_batches(db, plan.run_id, on_progress=lambda p: seen.append(p.done), **FAST)
    assert (progress.status, progress.done, progress.failed, progress.total) == ("completed", 40, 0, 40)
    assert seen[0] == 0 and seen[-1] == 40 and seen == sorted(seen)
    stats = openai_fake.stats()
    assert stats["batches_created"] == 2 and stats["batch_requests"] == 43      # 3 resubmitted once
    assert stats["requests"] == 2 * 2 and stats["ok"] == 0       # two uploads, two creates; no realtime calls
    made = batches(db, plan.run_id)
    assert [(b.status, b.request_count, b.provider_status) for b in made] == [
        ("collected", 40, "expired"), ("collected", 3, "completed")]
    assert (made[0].succeeded, made[0].errored) == (37, 3) and made[0].external_id.startswith("batch_")
    assert made[0].submitted_at and made[0].ended_at and made[0].collected_at
    outcomes = Counter(r.outcome for r in rows(db, select(ProviderBatchRequest.outcome)))
    assert outcomes == Counter({"succeeded": 40, "errored": 2, "expired": 1})
    assert_never_in_two_live_batches(db, plan.run_id)
    ratings = rows(db, select(Rating.request_id, Rating.provider_batch_id, Rating.cost_usd, Rating.input_tokens,
                              Rating.output_tokens, Rating.parse_status, Rating.label_probs)
                   .where(Rating.run_id == plan.run_id))
    assert len(ratings) == len({r.request_id for r in ratings}) == 40
    assert {r.provider_batch_id for r in ratings} == {made[0].id, made[1].id}
    assert all(r.parse_status == "ok" and r.label_probs for r in ratings)
    for r in ratings:                                                           # half the realtime price
        assert r.cost_usd == pytest.approx((r.input_tokens * 0.15 + r.output_tokens * 0.6) / 1e6 * 0.5)
    assert progress.cost_usd == pytest.approx(sum(r.cost_usd for r in ratings))
    attempts = Counter(r.attempts for r in rows(db, select(RatingRequest.attempts).where(
        RatingRequest.run_id == plan.run_id)))
    assert attempts == Counter({1: 37, 2: 3})


def test_batches_split_by_request_and_byte_limits(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_polls_per_state=0)
    plan = create_run(sqlite_db, openai_campaign(openai_fake))
    progress = run_batches(sqlite_db, plan.run_id, limits={"openai": BatchLimits(max_requests=15, max_bytes=10**8)},
                           **FAST)
    assert progress.done == 40
    assert [b.request_count for b in batches(sqlite_db, plan.run_id)] == [15, 15, 10]
    plan2 = create_run(sqlite_db, small(openai_fake, name="bytes"))
    progress2 = run_batches(sqlite_db, plan2.run_id, limits={"openai": BatchLimits(max_requests=1000, max_bytes=6_000)},
                            **FAST)
    made = batches(sqlite_db, plan2.run_id)
    assert progress2.done == 10 and len(made) >= 3
    assert all(b.bytes <= 6_000 for b in made) and sum(b.request_count for b in made) == 10


def test_failed_validation_and_permanent_errors(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_fail_next=1, batch_errored_next=2, batch_error_status=400)
    plan = create_run(sqlite_db, openai_campaign(openai_fake))
    progress = run_batches(sqlite_db, plan.run_id, **FAST)
    # the first batch failed validation as a whole and went again; in the second, two requests were refused
    assert (progress.status, progress.done, progress.failed) == ("completed", 38, 2)
    made = batches(sqlite_db, plan.run_id)
    assert made[0].provider_status == "failed" and "injected" in made[0].error
    failed = rows(sqlite_db, select(RatingRequest.last_error).where(
        RatingRequest.run_id == plan.run_id, RatingRequest.status == RequestStatus.failed.value))
    assert len(failed) == 2 and all("HTTP 400" in r.last_error for r in failed)


def test_attempts_are_capped(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_polls_per_state=0, batch_expired_next=1000)
    plan = create_run(sqlite_db, small(openai_fake))
    progress = run_batches(sqlite_db, plan.run_id, max_attempts=2, **FAST)
    assert (progress.status, progress.done, progress.failed) == ("completed", 0, 10)
    assert openai_fake.stats()["batches_created"] == 2
    errors = {r.last_error for r in rows(sqlite_db, select(RatingRequest.last_error).where(
        RatingRequest.run_id == plan.run_id))}
    assert len(errors) == 1 and "batch_expired" in next(iter(errors)) and "after 2 batch submissions" in next(iter(errors))


def test_restart_resumes_polling_without_resubmitting(db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_polls_per_state=2)
    plan = create_run(db, small(openai_fake))
    first = run_batches_once(db, plan.run_id)                   # a process submits, then dies
    assert (first.assembled, first.submitted) == (1, 1)
    assert run_control.read_progress(db, plan.run_id).done == 0
    for _ in range(2):                                          # later processes poll it (fresh clients each)
        tick = run_batches_once(db, plan.run_id)
        assert (tick.assembled, tick.submitted, tick.polled) == (0, 0, 1)
    progress = run_batches(db, plan.run_id, **FAST)
    assert (progress.status, progress.done) == ("completed", 10)
    assert openai_fake.stats()["batches_created"] == 1 and openai_fake.stats()["files_uploaded"] == 1


def test_crash_between_create_and_record_adopts_the_provider_batch(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset()
    plan = create_run(sqlite_db, small(openai_fake))
    run_batches_once(sqlite_db, plan.run_id)
    made = batches(sqlite_db, plan.run_id)[0]
    with Session(sqlite_db) as session:                        # as if it died before writing the batch id down
        session.execute(update(ProviderBatch).where(ProviderBatch.id == made.id).values(
            status=BatchStatus.submitting.value, external_id=None, provider_status=None))
        session.commit()
    tick = run_batches_once(sqlite_db, plan.run_id)
    assert tick.submitted == 1 and batches(sqlite_db, plan.run_id)[0].external_id == made.external_id
    progress = run_batches(sqlite_db, plan.run_id, **FAST)
    assert progress.done == 10 and openai_fake.stats()["batches_created"] == 1


def test_a_stray_lease_release_does_not_resubmit_a_live_batch(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_polls_per_state=3)
    plan = create_run(sqlite_db, small(openai_fake))
    run_batches_once(sqlite_db, plan.run_id)
    assert run_control.release_all_queued(sqlite_db, plan.run_id) == 10   # e.g. an embedded restart
    progress = run_batches(sqlite_db, plan.run_id, **FAST)
    assert progress.done == 10 and openai_fake.stats()["batches_created"] == 1
    assert scalar(sqlite_db, select(func.count()).select_from(Rating).where(Rating.run_id == plan.run_id)) == 10


def test_cancel_cancels_the_provider_batch_and_the_requests(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_polls_per_state=3)
    plan = create_run(sqlite_db, small(openai_fake))
    run_batches_once(sqlite_db, plan.run_id)
    run_control.cancel_run(sqlite_db, plan.run_id)
    progress = run_batches(sqlite_db, plan.run_id, **FAST)
    assert (progress.status, progress.done, progress.cancelled) == ("cancelled", 0, 10)
    assert progress.finished_at is not None
    made = batches(sqlite_db, plan.run_id)
    assert len(made) == 1 and made[0].provider_status == "cancelled"
    assert any(e["path"].endswith("/cancel") for e in openai_fake.stats()["request_log"])


def test_budget_limits_what_is_submitted(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    from accord.scheduler.plan import plan_campaign

    openai_fake.reset(batch_polls_per_state=0)
    spec = small(openai_fake)
    per_request = plan_campaign(sqlite_db, spec).cost_usd / 10       # the discounted upper-bound estimate
    budget = 3.5 * per_request
    plan = create_run(sqlite_db, spec, budget_override=budget)
    first = run_batches_once(sqlite_db, plan.run_id)
    assert first.assembled == 1 and batches(sqlite_db, plan.run_id)[0].request_count == 3
    progress = run_batches(sqlite_db, plan.run_id, **FAST)
    assert progress.status == "budget_exhausted"
    assert 3 <= progress.done < 10 and progress.cancelled == 10 - progress.done
    assert progress.cost_usd <= budget


def test_pause_returns_and_resume_continues(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_polls_per_state=2)
    plan = create_run(sqlite_db, small(openai_fake))
    run_batches_once(sqlite_db, plan.run_id)
    run_control.pause_run(sqlite_db, plan.run_id)
    paused = run_batches(sqlite_db, plan.run_id, **FAST)
    assert paused.status == "paused"
    run_control.resume_run(sqlite_db, plan.run_id)
    done = run_batches(sqlite_db, plan.run_id, **FAST)
    assert (done.status, done.done) == ("completed", 10) and openai_fake.stats()["batches_created"] == 1


def test_models_without_a_batch_api_run_in_realtime_beside_the_batches(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    openai_fake.reset(batch_polls_per_state=1)
    models = [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": openai_fake.base_url,
               "batch_api": True, "price": PRICE},
              {"name": "compat", "provider": "openai", "model": "gpt-4o", "base_url": openai_fake.base_url,
               "price": PRICE}]                                  # a compatible server: no batch API by default
    plan = create_run(sqlite_db, openai_campaign(openai_fake, samples=1, models=models))
    batch_ids, realtime_ids = dispatch_plan(sqlite_db, plan.run_id)
    assert len(batch_ids) == 1 and len(realtime_ids) == 1
    progress = run_batches(sqlite_db, plan.run_id, **FAST)
    assert (progress.status, progress.done) == ("completed", 40)
    by_batch = Counter(r.provider_batch_id is None for r in rows(sqlite_db, select(Rating.provider_batch_id).where(
        Rating.run_id == plan.run_id)))
    assert by_batch == Counter({False: 20, True: 20})
    assert openai_fake.stats()["ok"] == 20 and openai_fake.stats()["batch_requests"] == 20


def test_auto_dispatch_follows_the_deadline(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    soon = create_run(sqlite_db, openai_campaign(openai_fake, dispatch="auto", deadline_hours=2))
    later = create_run(sqlite_db, openai_campaign(openai_fake, dispatch="auto", deadline_hours=36))
    none = create_run(sqlite_db, openai_campaign(openai_fake, dispatch="auto"))
    assert not uses_batch(sqlite_db, soon.run_id) and not uses_batch(sqlite_db, none.run_id)
    assert uses_batch(sqlite_db, later.run_id)


# ----------------------------------------------------------------------------------------------- Anthropic
def test_anthropic_batch_run_with_partial_results(db, anthropic_fake: AnthropicFakeServer) -> None:  # type: ignore[no-untyped-def]
    anthropic_fake.reset(batch_errored_next=1, batch_error_status=529, batch_expired_next=2)
    plan = create_run(db, anthropic_campaign(anthropic_fake))
    progress = run_batches(db, plan.run_id, **FAST)
    assert (progress.status, progress.done, progress.failed) == ("completed", 10, 0)
    made = batches(db, plan.run_id)
    assert [(b.request_count, b.succeeded, b.errored, b.expired) for b in made] == [(10, 7, 1, 2), (3, 3, 0, 0)]
    assert all(b.provider_status == "ended" and b.external_id.startswith("msgbatch_") for b in made)
    assert_never_in_two_live_batches(db, plan.run_id)
    ratings = rows(db, select(Rating.label, Rating.parse_status, Rating.cost_usd, Rating.input_tokens,
                              Rating.output_tokens, Rating.model_snapshot).where(Rating.run_id == plan.run_id))
    assert len(ratings) == 10 and all(r.parse_status == "ok" and r.label in "12345" for r in ratings)
    assert {r.model_snapshot for r in ratings} == {"claude-3-5-haiku-20241022"}
    for r in ratings:
        assert r.cost_usd == pytest.approx((r.input_tokens * 0.8 + r.output_tokens * 4.0) / 1e6 * 0.5)


def test_anthropic_crash_recovery_finds_the_batch_by_size_and_time(sqlite_db, anthropic_fake: AnthropicFakeServer) -> None:  # type: ignore[no-untyped-def]
    anthropic_fake.reset()
    plan = create_run(sqlite_db, anthropic_campaign(anthropic_fake))
    run_batches_once(sqlite_db, plan.run_id)
    made = batches(sqlite_db, plan.run_id)[0]
    with Session(sqlite_db) as session:
        session.execute(update(ProviderBatch).where(ProviderBatch.id == made.id).values(
            status=BatchStatus.submitting.value, external_id=None))
        session.commit()
    progress = run_batches(sqlite_db, plan.run_id, **FAST)
    assert progress.done == 10 and anthropic_fake.stats()["batches_created"] == 1
    assert batches(sqlite_db, plan.run_id)[0].external_id == made.external_id


def test_anthropic_auth_failure_fails_the_requests_with_the_message(sqlite_db, anthropic_fake: AnthropicFakeServer) -> None:  # type: ignore[no-untyped-def]
    anthropic_fake.reset(require_api_key="right-key")
    plan = create_run(sqlite_db, anthropic_campaign(anthropic_fake))
    progress = run_batches(sqlite_db, plan.run_id, **FAST)
    assert (progress.status, progress.failed) == ("completed", 10)
    made = batches(sqlite_db, plan.run_id)
    assert [b.status for b in made] == ["abandoned"] and "HTTP 401" in made[0].error
    errors = {r.last_error for r in rows(sqlite_db, select(RatingRequest.last_error).where(
        RatingRequest.run_id == plan.run_id))}
    assert len(errors) == 1 and "authentication_error" in next(iter(errors))


def test_run_batches_matches_the_embedded_call_shape(sqlite_db, openai_fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    from accord.scheduler.batch_dispatch import run_batches_async

    openai_fake.reset(batch_polls_per_state=0)
    plan = create_run(sqlite_db, small(openai_fake))
    progress = asyncio.run(run_batches_async(sqlite_db, plan.run_id, chunk_size=8, concurrency=2, poll_seconds=0))
    assert progress.done == 10
    assert scalar(sqlite_db, select(Run.status).where(Run.id == plan.run_id)) == "completed"


def test_embedded_runner_sends_batch_campaigns_through_the_batch_api(sqlite_db, openai_fake,  # type: ignore[no-untyped-def]
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`accord run` calls run_embedded: a batch campaign must go to the Batch API, not to chat completions."""
    from accord.scheduler.embedded import run_embedded

    monkeypatch.setenv("ACCORD_BATCH_POLL_SECONDS", "0")
    openai_fake.reset()
    plan = create_run(sqlite_db, small(openai_fake))
    progress = run_embedded(sqlite_db, plan.run_id)
    assert (progress.status, progress.done) == ("completed", 10)
    assert len(batches(sqlite_db, plan.run_id)) >= 1
    paths = {entry["path"] for entry in openai_fake.stats()["request_log"]}
    assert "/v1/chat/completions" not in paths and "/v1/batches" in paths
