"""Leases of the distributed mode with a driven clock (SQLite and PostgreSQL; no broker, no worker): a chunk is claimed
with a lease of only the pickup window; a worker taking it extends the lease, its heartbeat renews it; a
chunk never taken (its message lost with the broker) comes back after the pickup window, a dead worker's
after one lease; the dispatcher sends the released requests again under new chunk ids, and the stale
messages own nothing."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import RatingRequest
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.chunk_leases import ChunkClaimer, release_expired
from accord.scheduler.dispatcher import Dispatcher
from accord.scheduler.expand import create_run
from accord.worker.leases import LeaseKeeper, release_chunk, renew_leases, take_ownership
from sqlalchemy import select
from sqlmodel import Session

from tests.fakes.synthetic_dataset import make_sparse_dataset

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
PICKUP = 10
LEASE = 15


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def db(engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    """SQLite, and PostgreSQL when it runs (``engine`` marks that variant ``postgres``)."""
    kwargs = make_sparse_dataset(tmp_path, n_items=12, n_annotators=20, seed=2)
    import_dataset(engine, ImportSpec(**{**kwargs, "name": "syn"}))
    return engine


def campaign(name: str, samples: int = 2):  # type: ignore[no-untyped-def]
    return parse_campaign({"name": name, "dataset": "syn", "dimension": "Q_overall", "samples": samples,
                           "decoding": {"seed": zlib.crc32(name.encode()) % 1000, "max_tokens": 8},
                           "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini",
                                       "base_url": "http://127.0.0.1:9/v1"}],
                           "templates": ["likert_unsafe"]})


def spec_of(engine, run_id: int) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return int(s.execute(select(RatingRequest.model_spec_id).where(RatingRequest.run_id == run_id).limit(1)).scalar_one())


def statuses(engine, ids: list[int]) -> dict[int, tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        rows = s.execute(select(RatingRequest.id, RatingRequest.status, RatingRequest.chunk_id)
                         .where(RatingRequest.id.in_(ids))).all()  # type: ignore[union-attr]
    return {int(i): (st, ch) for i, st, ch in rows}


def claim(engine, run_id: int, now: datetime, limit: int = 4) -> tuple[str, list[int]]:  # type: ignore[no-untyped-def]
    return ChunkClaimer(engine).claim(run_id, spec_of(engine, run_id), limit, PICKUP, now=now)


def test_a_chunk_never_picked_up_is_released_after_the_pickup_window(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("lost"), mode="distributed")
    chunk, ids = claim(db, run.run_id, at(0))
    assert len(ids) == 4
    assert release_expired(db, at(PICKUP - 0.5)) == 0                 # still inside the window
    assert release_expired(db, at(PICKUP + 0.5)) == 4                 # the message must be lost: back to pending
    assert set(statuses(db, ids).values()) == {("pending", None)}
    assert take_ownership(db, chunk, ids, LEASE, now=at(PICKUP + 1)) == []   # the late message owns nothing


def test_a_taken_chunk_holds_its_lease_and_the_heartbeat_extends_it(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("taken"), mode="distributed")
    chunk, ids = claim(db, run.run_id, at(0))
    assert take_ownership(db, chunk, ids, LEASE, now=at(6)) == ids    # picked up within the window
    assert release_expired(db, at(PICKUP + 1)) == 0                   # past the window, inside the lease
    for beat in (11, 16, 21):                                          # the heartbeat, every third of the lease
        assert renew_leases(db, [chunk], LEASE, now=at(beat)) == 4
        assert release_expired(db, at(beat + LEASE - 0.5)) == 0
    # the worker dies after its last beat: one lease later its requests come back
    assert release_expired(db, at(21 + LEASE + 0.5)) == 4
    assert renew_leases(db, [chunk], LEASE, now=at(40)) == 0          # a late beat renews nothing


def test_a_finished_chunk_hands_back_only_what_it_did_not_do(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("partial"), mode="distributed")
    chunk, ids = claim(db, run.run_id, at(0))
    take_ownership(db, chunk, ids, LEASE, now=at(1))
    with Session(db) as s:
        for req in s.execute(select(RatingRequest).where(RatingRequest.id.in_(ids[:3]))).scalars():  # type: ignore[union-attr]
            req.status = "done"
        s.commit()
    assert release_chunk(db, chunk) == 1
    assert release_expired(db, at(100)) == 0                          # nothing left queued
    assert statuses(db, ids)[ids[3]] == ("pending", None)


def test_embedded_runs_leases_are_not_released(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("embedded"), mode="embedded")
    _, ids = claim(db, run.run_id, at(0))
    assert release_expired(db, at(3600)) == 0                        # the embedded process owns its chunks
    assert {st for st, _ in statuses(db, ids).values()} == {"queued"}


def test_lease_keeper_renews_exactly_the_chunks_held() -> None:
    calls: list[tuple[list[str], float]] = []

    def renew(_engine: Any, chunks: Any, lease: float) -> int:
        calls.append((sorted(chunks), lease))
        return len(calls)

    keeper = LeaseKeeper(engine=None, lease_seconds=15, renew=renew)  # type: ignore[arg-type]
    assert keeper.every == 5.0
    assert keeper.beat_once() == 0 and calls == []                   # nothing held: no statement
    keeper._held.update(["a", "b"])                                  # hold() without starting the thread
    keeper._held.update(["a"])                                       # the same chunk twice (redelivered)
    keeper.beat_once()
    keeper.drop("a")
    keeper.beat_once()
    keeper.drop("a")
    keeper.drop("b")
    keeper.beat_once()
    assert calls == [(["a", "b"], 15.0), (["a", "b"], 15.0)]


def test_lease_keeper_survives_a_failing_renewal() -> None:
    def renew(_engine: Any, _chunks: Any, _lease: float) -> int:
        raise ConnectionError("database away")

    keeper = LeaseKeeper(engine=None, lease_seconds=15, renew=renew)  # type: ignore[arg-type]
    keeper._held.update(["a"])
    assert keeper.beat_once() == 0


class Collector:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str, list[int]]] = []

    def send(self, _queue: str, run_id: int, chunk_id: str, ids: list[int]) -> None:
        self.sent.append((run_id, chunk_id, ids))


def test_dispatcher_sends_chunks_lost_with_the_broker_again_after_the_pickup_window(db) -> None:  # type: ignore[no-untyped-def]
    create_run(db, campaign("flush", samples=4), mode="distributed")                # 48 requests
    c = Collector()
    d = Dispatcher(db, chunk_size=4, lease_seconds=LEASE, pickup_seconds=PICKUP, max_pickup_seconds=PICKUP, min_chunks_per_group=4,
                   send_chunk=c.send, queue_for=lambda p: f"q.{p}", on_finished=lambda _r: None,
                   clock=lambda: pytest.fail("the test drives the clock"))  # type: ignore[arg-type,return-value]
    d.tick(now=at(0))
    first = list(c.sent)
    assert len(first) == 4
    _, taken_chunk, taken_ids = first[0]
    assert take_ownership(db, taken_chunk, taken_ids, LEASE, now=at(2)) == taken_ids   # one reached a worker
    # the broker is flushed: the other three messages are gone. Inside the window nothing moves ...
    report = d.tick(now=at(PICKUP - 1))
    assert (report.released, len(c.sent)) == (0, 4)
    # ... after it, their requests are released and sent again, under new chunk ids
    report = d.tick(now=at(PICKUP + 1))
    assert report.released == 12
    assert len(c.sent) == 7                                           # the three slots are fed again at once
    lost_ids = sorted(i for _, _, ids in first[1:] for i in ids)
    assert {st for st, _ in statuses(db, lost_ids).values()} <= {"pending", "queued"}
    for _, old_chunk, old_ids in first[1:]:                           # a late copy of a lost message: nothing
        assert take_ownership(db, old_chunk, old_ids, LEASE, now=at(PICKUP + 2)) == []
    # the workers now do what they get: the lost requests go out again, each in exactly one new chunk
    done: set[int] = set()
    t = PICKUP + 2.0
    while len(c.sent) < 100:
        fresh = [(ch, ids) for _, ch, ids in c.sent[len(first):] if not set(ids) <= done]
        if not fresh and not d.tick(now=at(t)).sent:
            break
        for ch, ids in fresh:
            assert take_ownership(db, ch, ids, LEASE, now=at(t)) == ids
            with Session(db) as s:
                for req in s.execute(select(RatingRequest).where(RatingRequest.id.in_(ids))).scalars():  # type: ignore[union-attr]
                    req.status = "done"
                s.commit()
            done |= set(ids)
        t += 0.1
    again = [i for _, _, ids in c.sent[len(first):] for i in ids]
    assert sorted(again) == sorted(set(again))                        # no request in two live chunks
    assert set(lost_ids) <= set(again)                                # every lost request went out again
    assert not set(taken_ids) & set(again)                            # the taken chunk kept its requests
    # the taken chunk is released only if its worker stops renewing, one lease after the last beat
    renew_leases(db, [taken_chunk], LEASE, now=at(PICKUP + 2))
    d.tick(now=at(PICKUP + 2 + LEASE - 1))
    assert set(statuses(db, taken_ids).values()) == {("queued", taken_chunk)}
    d.tick(now=at(PICKUP + 2 + LEASE + 1))
    assert {st for st, _ in statuses(db, taken_ids).values()} <= {"pending", "queued"}
    assert taken_chunk not in {ch for _, ch in statuses(db, taken_ids).values()}


def test_dispatcher_releases_at_most_once_per_release_interval(db) -> None:  # type: ignore[no-untyped-def]
    run = create_run(db, campaign("interval"), mode="distributed")
    c = Collector()
    d = Dispatcher(db, chunk_size=4, lease_seconds=LEASE, pickup_seconds=PICKUP, max_pickup_seconds=PICKUP, min_chunks_per_group=1,
                   max_chunks_per_run=1, send_chunk=c.send, queue_for=lambda p: f"q.{p}",
                   on_finished=lambda _r: None, release_every=1.0)
    d.tick(now=at(0))
    assert len(c.sent) == 1
    assert d.tick(now=at(PICKUP - 0.1)).released == 0                 # released nothing, at PICKUP - 0.1
    assert d.tick(now=at(PICKUP + 0.5)).released == 0                 # expired, but within 1 s of the last pass
    assert len(c.sent) == 1
    assert d.tick(now=at(PICKUP + 1.0)).released == 4                 # the next pass
    assert len(c.sent) == 2 and c.sent[1][1] != c.sent[0][1]          # the slot is fed again, a new chunk
    assert run.total == 24


def test_lease_keeper_thread_keeps_a_held_chunk_leased(db) -> None:  # type: ignore[no-untyped-def]
    """The real heartbeat thread against the database: a held chunk's lease moves forward; a dropped
    one's does not. (Polls with a generous deadline: nothing here depends on the machine's speed.)"""
    import time

    from accord.models.schema import utcnow

    run = create_run(db, campaign("beat"), mode="distributed")
    claimed_at = utcnow() - timedelta(seconds=100)                    # both chunks' windows long over
    chunk, ids = claim(db, run.run_id, claimed_at)
    _, other_ids = claim(db, run.run_id, claimed_at)
    initial = claimed_at + timedelta(seconds=PICKUP)

    def lease_of(request_id: int) -> datetime:
        with Session(db) as s:
            value = s.get(RatingRequest, request_id).leased_until  # type: ignore[union-attr]
        assert value is not None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    keeper = LeaseKeeper(db, lease_seconds=1.5)                       # a beat every 0.5 s
    keeper.hold(chunk)
    try:
        deadline = time.monotonic() + 30
        while lease_of(ids[0]) <= initial:
            assert time.monotonic() < deadline, "the heartbeat never renewed the held chunk"
            time.sleep(0.1)
        assert lease_of(ids[-1]) > utcnow() - timedelta(seconds=5)    # every request of the chunk, from now
        assert lease_of(other_ids[0]) == initial                      # a chunk not held is left alone
        keeper.drop(chunk)
        assert keeper.held() == []
    finally:
        keeper.stop()
