"""The dispatcher and reconciliation against the database alone (no broker: chunks are collected instead
of sent), on SQLite and PostgreSQL: fair share and priority across runs that share a model, per-run and
per-group caps, pause and cancel, budget, completion detected exactly once, expired leases released,
stale messages owning nothing."""

from __future__ import annotations

import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import ModelSpec, RatingRequest, Run, utcnow
from accord.scheduler import run_control
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.chunk_leases import release_chunk, take_ownership
from accord.scheduler.dispatcher import Dispatcher
from accord.scheduler.expand import create_run
from accord.scheduler.reconcile import reconcile_once
from sqlalchemy import select, update
from sqlmodel import Session

from tests.fakes.synthetic_dataset import make_sparse_dataset


class Collector:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, str, list[int]]] = []
        self.finished: list[int] = []

    def send(self, queue: str, run_id: int, chunk_id: str, ids: list[int]) -> None:
        self.sent.append((queue, run_id, chunk_id, ids))

    def per_run(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for _, run_id, _, _ in self.sent:
            out[run_id] = out.get(run_id, 0) + 1
        return out


@pytest.fixture
def db(engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    kwargs = make_sparse_dataset(tmp_path, n_items=12, n_annotators=20, seed=2)
    import_dataset(engine, ImportSpec(**{**kwargs, "name": "syn"}))
    return engine


def campaign(name: str, *, samples: int = 4, priority: int = 0, rpm: int | None = None, **over: Any):  # type: ignore[no-untyped-def]
    model = {"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1"}
    if rpm:
        model["rpm"] = rpm
    return parse_campaign({"name": name, "dataset": "syn", "dimension": "Q_overall", "samples": samples,
                           "priority": priority, "decoding": {"seed": zlib.crc32(name.encode()) % 1000, "max_tokens": 8},
                           "models": [model], "templates": ["likert_unsafe"], **over})


def dispatcher(engine, collector: Collector, **kw: Any) -> Dispatcher:  # type: ignore[no-untyped-def]
    opts = {"chunk_size": 4, "lease_seconds": 60, "pickup_seconds": 60, "max_pickup_seconds": 60,
            "max_chunks_per_run": 32, "max_chunks_per_group": 64,
            "min_chunks_per_group": 6}
    opts.update(kw)
    return Dispatcher(engine, send_chunk=collector.send, queue_for=lambda p: f"q.{p}",
                      on_finished=collector.finished.append, **opts)


def finish_sent(engine, collector: Collector) -> None:  # type: ignore[no-untyped-def]
    """Pretend the workers rated every request sent so far."""
    ids = [i for _, _, _, chunk in collector.sent for i in chunk]
    with Session(engine) as s:
        s.execute(update(RatingRequest).where(RatingRequest.id.in_(ids)).values(status="done"))  # type: ignore[union-attr]
        s.commit()


def test_runs_sharing_a_model_get_equal_shares_and_start(db) -> None:  # type: ignore[no-untyped-def]
    a = create_run(db, campaign("a"), mode="distributed")
    b = create_run(db, campaign("b"), mode="distributed")
    c = Collector()
    report = dispatcher(db, c).tick()
    assert sorted(report.started) == [a.run_id, b.run_id]
    assert run_control.get_run(db, a.run_id).status == "running"
    assert c.per_run() == {a.run_id: 3, b.run_id: 3}            # 6 slots (the starting allowance), split evenly
    assert {q for q, _, _, _ in c.sent} == {"q.openai"}
    assert all(len(ids) == 4 for _, _, _, ids in c.sent)
    claimed = [i for _, _, _, ids in c.sent for i in ids]
    assert len(claimed) == len(set(claimed))                      # no request in two chunks


def test_priority_first_and_per_run_cap(db) -> None:  # type: ignore[no-untyped-def]
    low = create_run(db, campaign("low"), mode="distributed")
    high = create_run(db, campaign("high", priority=10), mode="distributed")
    c = Collector()
    dispatcher(db, c, max_chunks_per_run=4).tick()
    assert c.per_run() == {high.run_id: 4, low.run_id: 2}        # high up to its cap, the rest to low


def test_back_pressure_holds_until_chunks_come_back(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("bp", samples=8), mode="distributed")
    c = Collector()
    d = dispatcher(db, c)
    d.tick()
    assert len(c.sent) == 6
    d.tick()
    assert len(c.sent) == 6                                       # nothing came back: nothing more sent
    finish_sent(db, c)
    d.tick()
    assert len(c.sent) > 6                                        # completions free slots again
    assert run_control.get_run(db, run.run_id).status == "running"


def test_rate_limit_caps_the_group(db) -> None:  # type: ignore[no-untyped-def]
    create_run(db, campaign("slow", rpm=60), mode="distributed")   # 1 request/s: 2 chunks cover 6 s
    c = Collector()
    dispatcher(db, c).tick()
    assert len(c.sent) == 2


def test_paused_run_is_not_fed_and_cancel_finalizes_once(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("pc"), mode="distributed")
    c = Collector()
    d = dispatcher(db, c)
    d.tick()
    sent = len(c.sent)
    run_control.pause_run(db, run.run_id)
    finish_sent(db, c)
    d.tick()
    assert len(c.sent) == sent
    run_control.cancel_run(db, run.run_id)
    d.tick()
    d.tick()
    p = run_control.read_progress(db, run.run_id)
    assert p.status == "cancelled" and p.finished_at is not None
    assert c.finished == [run.run_id]                            # post-processing triggered once


def test_completion_is_detected_exactly_once(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("done", samples=1), mode="distributed")   # 12 requests: 3 chunks
    c = Collector()
    d = dispatcher(db, c)
    d.tick()
    assert len(c.sent) == 3
    finish_sent(db, c)
    d2 = dispatcher(db, c)                                        # a second scheduler racing the first
    d.tick()
    d2.tick()
    reconcile_once(db, on_finished=c.finished.append)
    assert run_control.get_run(db, run.run_id).status == "completed"
    assert c.finished == [run.run_id]


def test_budget_spent_stops_feeding(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("budget", budget_usd=0.01), mode="distributed")
    c = Collector()
    d = dispatcher(db, c)
    d.tick()
    sent = len(c.sent)
    finish_sent(db, c)
    with Session(db) as s:
        s.execute(update(Run).where(Run.id == run.run_id).values(cost_usd=0.011))  # type: ignore[arg-type]
        s.commit()
    report = d.tick()
    assert report.budget_exhausted == [run.run_id]
    assert len(c.sent) == sent
    d.tick()
    p = run_control.read_progress(db, run.run_id)
    assert p.status == "budget_exhausted" and p.finished_at is not None
    assert p.cancelled == run.total - sent * 4                   # the unsent requests, cancelled with counts
    assert c.finished == [run.run_id]


def test_expired_lease_is_released_and_the_stale_message_owns_nothing(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("lease", samples=1), mode="distributed")
    c = Collector()
    d = dispatcher(db, c)
    d.tick()
    _, _, old_chunk, old_ids = c.sent[0]
    with Session(db) as s:                                         # the worker died: its lease ran out
        s.execute(update(RatingRequest).where(RatingRequest.chunk_id == old_chunk)
                  .values(leased_until=utcnow() - timedelta(seconds=1)))
        s.commit()
    report = reconcile_once(db, on_finished=c.finished.append)
    assert report.released == len(old_ids)
    # the other chunks complete; the released requests go out again under a new chunk id
    with Session(db) as s:
        others = [i for _, _, ch, ids in c.sent[1:] for i in ids]
        s.execute(update(RatingRequest).where(RatingRequest.id.in_(others)).values(status="done"))  # type: ignore[union-attr]
        s.commit()
    before = len(c.sent)
    d.tick()
    resent = c.sent[before:]
    assert sorted(i for _, _, _, ids in resent for i in ids) == sorted(old_ids)
    assert take_ownership(db, old_chunk, old_ids, 60) == []        # the stale message does nothing
    _, _, new_chunk, new_ids = resent[0]
    assert take_ownership(db, new_chunk, new_ids, 60) == sorted(new_ids)
    assert release_chunk(db, new_chunk) == len(new_ids)            # a paused chunk hands its requests back
    assert run_control.get_run(db, run.run_id).status == "running"


def test_batch_api_models_go_to_the_batch_api_not_to_workers(db) -> None:  # type: ignore[no-untyped-def]
    """A `dispatch: batch` campaign in distributed mode: the dispatcher submits and collects provider
    batches itself and sends workers only the models without a batch API."""
    from tests.fakes.openai_server import OpenAIFakeServer

    with OpenAIFakeServer() as server:
        spec = parse_campaign({
            "name": "batchy", "dataset": "syn", "dimension": "Q_overall", "dispatch": "batch", "cache": False,
            "models": [{"name": "via-batch", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                        "batch_api": True},
                       {"name": "realtime", "provider": "openai", "model": "gpt-4o-mini",
                        "base_url": "http://127.0.0.1:9/v1"}],       # a compatible server: no batch API
            "templates": ["likert_unsafe"]})
        plan = create_run(db, spec, mode="distributed")
        c = Collector()
        d = dispatcher(db, c, batch_poll_seconds=0.0)
        for _ in range(60):
            d.tick()
            finish_sent(db, c)          # the workers' part: the realtime model's chunks
            if run_control.get_run(db, plan.run_id).status == "completed":
                break
        assert run_control.get_run(db, plan.run_id).status == "completed"
        with Session(db) as s:
            realtime_id = s.execute(select(ModelSpec.id).where(ModelSpec.name == "realtime")).scalar_one()
            sent_specs = {s.get(RatingRequest, i).model_spec_id for _, _, _, chunk in c.sent for i in chunk}
        assert sent_specs == {realtime_id}                                  # no batch-model request went to workers
        paths = [e["path"] for e in server.stats()["request_log"]]
        assert "/v1/batches" in paths and "/v1/chat/completions" not in paths
