"""The embedded execution path end to end, against a local server speaking the OpenAI wire protocol,
driven through the official SDK: every request rated exactly once, retries, permanent failures recorded on
the request, budget cap, cancellation, and a re-run answered entirely from the cache. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import Rating, RatingRequest, Run
from accord.scheduler import run_control
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded, run_embedded_async
from accord.scheduler.expand import create_run
from accord.models.run_frames import load_llm_frame
from tests.fakes.openai_server import OpenAIFakeServer
from tests.fakes.synthetic_dataset import make_sparse_dataset


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    srv = OpenAIFakeServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def db(engine, tmp_path: Path, server):  # type: ignore[no-untyped-def]
    server.reset()
    kwargs = make_sparse_dataset(tmp_path, n_items=10, n_annotators=30, seed=11)
    import_dataset(engine, ImportSpec(**{**kwargs, "name": "syn"}))
    return engine


def campaign(server, **over):  # type: ignore[no-untyped-def]
    doc = {"name": "e2e", "dataset": "syn", "dimension": "Q_overall", "samples": 2,
           "decoding": {"temperature": 0.7, "seed": 1},
           "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                       "max_concurrency": 4, "price": {"input": 0.15, "output": 0.6}}],
           "templates": ["likert_unsafe", "binary_unsafe"]}
    doc.update(over)
    return parse_campaign(doc)


def scalar(engine, q):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return s.execute(q).scalar_one()


def test_run_rates_every_request_once_then_rerun_is_all_cache(db, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = create_run(db, campaign(server))
    assert plan.total == 10 * 2 * 2
    progress = run_embedded(db, plan.run_id, backoff_initial=0.01)
    assert (progress.status, progress.done, progress.failed, progress.cached) == ("completed", 40, 0, 0)
    assert server.stats()["ok"] == 40
    n_ratings = scalar(db, select(func.count()).select_from(Rating).where(Rating.run_id == plan.run_id))
    n_distinct = scalar(db, select(func.count(func.distinct(Rating.request_id))).where(Rating.run_id == plan.run_id))
    assert n_ratings == n_distinct == 40
    df = load_llm_frame(db, plan.run_id)
    assert (df["parse_status"] == "ok").all()
    assert df["model_snapshot"].str.startswith("gpt-4o-mini-").all()
    assert df["weighted_value"].between(0, 1).all()          # logprobs turned into an expected score
    probs = [json.loads(p) for p in df["label_probs"]]       # exported as JSON text keyed by label
    assert all(abs(sum(p.values()) - 1) < 1e-9 and set(p) <= {"1", "2", "3", "4", "5", "safe", "unsafe"} for p in probs)
    df.to_parquet(tmp_path / "export.parquet")               # every column exports
    assert progress.cost_usd == pytest.approx(
        (df["input_tokens"].sum() * 0.15 + df["output_tokens"].sum() * 0.6) / 1e6)

    server.reset_stats()
    again = create_run(db, campaign(server))
    assert again.cached == 40
    p2 = run_embedded(db, again.run_id)
    assert (p2.status, p2.done, p2.cached, p2.cost_usd) == ("completed", 40, 40, 0.0)
    assert server.stats()["requests"] == 0                  # zero provider calls
    df2 = load_llm_frame(db, again.run_id)
    assert df2["value"].tolist() == df["value"].tolist()
    assert df2["weighted_value"].tolist() == df["weighted_value"].tolist()


def test_transient_errors_are_retried_and_permanent_ones_recorded(db, server) -> None:  # type: ignore[no-untyped-def]
    server.configure(fail_next=6, fail_status=500)
    plan = create_run(db, campaign(server, samples=1))
    p = run_embedded(db, plan.run_id, backoff_initial=0.01)
    assert (p.status, p.done, p.failed) == ("completed", 20, 0)
    assert server.stats()["errors_injected"] == 6
    with Session(db) as s:    # each 500 cost its request one attempt, and the stored counts differ per request
        done = s.execute(select(RatingRequest).where(RatingRequest.run_id == plan.run_id)).scalars().all()
    assert all(r.status == "done" for r in done) and sum(r.attempts for r in done) == 20 + 6
    assert len({r.attempts for r in done}) >= 2

    server.reset(fail_next=1000, fail_status=400, fail_message="Invalid 'messages': too long")
    plan = create_run(db, campaign(server, samples=1, cache=False))
    p = run_embedded(db, plan.run_id, backoff_initial=0.01)
    assert (p.status, p.done, p.failed) == ("completed", 0, 20)
    with Session(db) as s:
        reqs = s.execute(select(RatingRequest).where(RatingRequest.run_id == plan.run_id)).scalars().all()
    assert all(r.status == "failed" and r.attempts == 1 for r in reqs)       # a 400 is not retried
    assert all("HTTP 400" in r.last_error and "too long" in r.last_error for r in reqs)


def test_exhausted_retries_mark_failed_without_aborting(db, server) -> None:  # type: ignore[no-untyped-def]
    server.configure(fail_next=8, fail_status=503)
    plan = create_run(db, campaign(server, samples=1, items={"limit": 2}))
    p = run_embedded(db, plan.run_id, backoff_initial=0.001, max_attempts=2, concurrency=1, chunk_size=1)
    # 4 requests, 2 attempts each, 8 injected failures: every request fails after exactly 2 attempts.
    assert (p.status, p.done, p.failed) == ("completed", 0, 4)
    with Session(db) as s:
        attempts = s.execute(select(RatingRequest.attempts).where(RatingRequest.run_id == plan.run_id)).scalars().all()
    assert attempts == [2, 2, 2, 2]


def test_budget_cap_stops_new_calls(db, server) -> None:  # type: ignore[no-untyped-def]
    spec = campaign(server, samples=1, budget_usd=0.0005,
                    models=[{"name": "gpt", "provider": "openai", "model": "gpt-4o", "base_url": server.base_url,
                             "max_concurrency": 1, "price": {"input": 2.5, "output": 10.0}}])
    plan = create_run(db, spec)
    p = run_embedded(db, plan.run_id, concurrency=1, chunk_size=1)
    assert p.status == "budget_exhausted"
    assert p.done + p.cancelled == p.total and p.done < p.total and p.failed == 0
    assert p.cost_usd <= 0.0005
    assert server.stats()["ok"] == p.done


def test_cancel_mid_run(db, server) -> None:  # type: ignore[no-untyped-def]
    server.configure(latency_ms=50)
    plan = create_run(db, campaign(server, samples=2))

    async def go() -> run_control.Progress:
        task = asyncio.create_task(run_embedded_async(db, plan.run_id, concurrency=1, chunk_size=2))
        while run_control.read_progress(db, plan.run_id).done < 4:
            await asyncio.sleep(0.02)
        run_control.cancel_run(db, plan.run_id)
        return await task

    p = asyncio.run(go())
    assert p.status == "cancelled"
    assert 4 <= p.done < 40 and p.done + p.cancelled == 40
    assert scalar(db, select(func.count()).select_from(Rating).where(Rating.run_id == plan.run_id)) == p.done
    with pytest.raises(run_control.RunStateError, match="can no longer be cancelled"):
        run_control.cancel_run(db, plan.run_id)


def test_pause_and_resume(db, server) -> None:  # type: ignore[no-untyped-def]
    plan = create_run(db, campaign(server, samples=1))
    run_control.pause_run(db, plan.run_id)
    p = run_embedded(db, plan.run_id) if False else run_control.read_progress(db, plan.run_id)
    assert p.status == "paused"
    with pytest.raises(run_control.RunStateError):
        run_control.pause_run(db, plan.run_id)
    run_control.resume_run(db, plan.run_id)
    p = run_embedded(db, plan.run_id)
    assert (p.status, p.done) == ("completed", 20)
    with Session(db) as s:
        assert s.get(Run, plan.run_id).finished_at is not None


def limited_campaign(server, rpm, **over):  # type: ignore[no-untyped-def]
    model = {"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
             "max_concurrency": 16, "price": {"input": 0.15, "output": 0.6}}
    if rpm is not None:
        model["rpm"] = rpm
    return campaign(server, models=[model], cache=False, **over)


def test_embedded_mode_holds_the_provider_limit(db, server) -> None:  # type: ignore[no-untyped-def]
    # A server that enforces 1,200/min as a token bucket of one second's capacity (20 requests), the way
    # providers enforce short windows; the campaign declares the same limit.
    server.reset(rpm=1200, window_s=1.0, limit_mode="bucket", latency_ms=20, jitter_ms=10)
    plan = create_run(db, limited_campaign(server, 1200, samples=6))
    assert plan.total == 120
    p = run_embedded(db, plan.run_id)
    stats = server.stats()
    assert (p.status, p.done, p.failed) == ("completed", 120, 0)
    assert stats["rate_limited"] < 0.005 * stats["requests"]         # < 0.5% 429s


def test_rate_limited_requests_wait_and_never_fail(db, server) -> None:  # type: ignore[no-untyped-def]
    # The campaign does not know the limit: the server's 429s + retry-after slow the run down, and no request
    # spends its (two) failure attempts on them.
    server.reset(rpm=600, window_s=1.0, limit_mode="bucket")
    plan = create_run(db, limited_campaign(server, None, samples=2))
    p = run_embedded(db, plan.run_id, max_attempts=2)
    assert (p.status, p.done, p.failed) == ("completed", 40, 0)
    assert server.stats()["rate_limited"] > 0                        # the limit was met, and waited out


def test_budget_holds_with_many_calls_in_flight(db, server) -> None:  # type: ignore[no-untyped-def]
    # Reservations before sending: however many calls are in flight, the spend never passes the budget.
    server.configure(latency_ms=30)
    spec = campaign(server, samples=4, budget_usd=0.01, cache=False,
                    models=[{"name": "gpt", "provider": "openai", "model": "gpt-4o", "base_url": server.base_url,
                             "max_concurrency": 16, "price": {"input": 2.5, "output": 10.0}}])
    plan = create_run(db, spec)
    p = run_embedded(db, plan.run_id, concurrency=8, chunk_size=8)
    assert p.status == "budget_exhausted"
    assert 0 < p.done < p.total and p.failed == 0 and p.done + p.cancelled == p.total
    assert p.cost_usd <= 0.01
    assert server.stats()["ok"] == p.done


def test_a_run_with_too_many_failures_says_so_and_exits_non_zero(db, server) -> None:  # type: ignore[no-untyped-def]
    import typer

    from accord.cli.launch import check_failed_share
    from accord.report.build import build_report_data
    from accord.scheduler import run_service

    server.configure(fail_next=3, fail_status=400)          # 3 of 20 requests fail for good: 15%
    plan = create_run(db, campaign(server, samples=1, cache=False))
    p = run_embedded(db, plan.run_id, concurrency=1, chunk_size=1)
    assert (p.done, p.failed) == (17, 3)
    assert run_service.finish(db, plan.run_id).ran
    with pytest.raises(typer.Exit) as exit_info:
        check_failed_share(db, plan.run_id, 0.02)
    assert exit_info.value.exit_code == 1
    check_failed_share(db, plan.run_id, 0.2)                 # within a looser threshold: no exit
    readings = [r for s in build_report_data(db, plan.run_id).sections for r in s.readings]
    assert any(r.startswith("FLAG: 3 of 20 requests failed (15.0%)") for r in readings)
    assert not run_service.finish(db, plan.run_id).ran        # analysed once: a second finish does nothing


def test_store_ratings_stores_each_request_once(db, server) -> None:  # type: ignore[no-untyped-def]
    # A chunk delivered twice (or a flush racing another worker) stores only what is not there yet.
    from accord.worker.execute import load_jobs, store_ratings

    plan = create_run(db, campaign(server, samples=1, cache=False))
    with Session(db, expire_on_commit=False) as s:
        ids = list(s.execute(select(RatingRequest.id).where(RatingRequest.run_id == plan.run_id)).scalars())
        jobs, _ = load_jobs(s, ids)
    answer = {"raw_text": "safe", "label": "safe", "value": 0.0, "parse_status": "ok", "decoding": {}, "cost_usd": 0.001}
    first = store_ratings(db, [(job, answer, False, 1) for job in jobs[:5]])
    second = store_ratings(db, [(job, answer, False, 2) for job in jobs])
    assert set(first) == set(ids[:5]) and set(second) == set(ids[5:])
    assert scalar(db, select(func.count()).select_from(Rating).where(Rating.run_id == plan.run_id)) == len(ids)
    p = run_control.read_progress(db, plan.run_id)
    assert p.done == len(ids) and p.cost_usd == pytest.approx(0.001 * len(ids))
    with Session(db) as s:
        attempts = dict(s.execute(select(RatingRequest.id, RatingRequest.attempts)
                                  .where(RatingRequest.run_id == plan.run_id)).all())
    assert [attempts[i] for i in ids[:5]] == [1] * 5 and [attempts[i] for i in ids[5:]] == [2] * (len(ids) - 5)
