"""Chunks of the distributed mode and their leases, in the database (the system of record).

A chunk is a set of rating requests of one run and one model spec, moved from ``pending`` to ``queued``
under a fresh ``chunk_id`` with ``leased_until``. The worker that runs the chunk renews the lease while it
works and hands back what it did not finish; a chunk whose lease runs out (worker killed, message lost
with the broker) is released by ``run_control.release_expired_leases`` and claimed again under a new id.
A stale message for an old chunk id owns nothing any more, so it does nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from accord.models.schema import RatingRequest, RequestStatus, utcnow

log = logging.getLogger("accord.scheduler.chunk_leases")
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session


def claim_chunk(engine: Engine, run_id: int, model_spec_id: int, limit: int, lease_seconds: int,
                after_id: int | None = None) -> tuple[str, list[int]]:
    """Move up to ``limit`` pending requests of (run, model spec) to queued under a new chunk id.

    With ``after_id``: the first pending requests with a larger id, in id order (a primary-key range scan:
    cheap however much of the run is done, see ``ChunkClaimer``). Without: any pending requests (the
    status index; finds requests released back to pending behind the cursor)."""
    chunk_id = uuid.uuid4().hex
    now = utcnow()
    with Session(engine) as session:
        pick = (select(RatingRequest.id)
                .where(RatingRequest.run_id == run_id, RatingRequest.status == RequestStatus.pending.value,
                       RatingRequest.model_spec_id == model_spec_id).limit(limit))
        if after_id is not None:
            pick = pick.where(RatingRequest.id > after_id).order_by(RatingRequest.id)
        if engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        ids = list(session.execute(pick).scalars())
        if ids:
            result = session.execute(
                update(RatingRequest)
                .where(RatingRequest.id.in_(ids), RatingRequest.status == RequestStatus.pending.value)  # type: ignore[union-attr]
                .values(status=RequestStatus.queued.value, chunk_id=chunk_id,
                        leased_until=now + timedelta(seconds=lease_seconds), updated_at=now))
            if (result.rowcount or 0) != len(ids):
                ids = list(session.execute(select(RatingRequest.id).where(
                    RatingRequest.chunk_id == chunk_id, RatingRequest.status == RequestStatus.queued.value)).scalars())
        session.commit()
    return chunk_id, sorted(ids)


class ChunkClaimer:
    """Claims chunks in id order with a cursor per (run, model spec), so a claim costs the same at the start
    and at the end of a million-request run (an ``ORDER BY id`` from the first id would step over every
    finished request). When the cursor finds nothing, one claim without it picks up requests released
    behind it (expired leases, a paused chunk handing its requests back)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cursors: dict[tuple[int, int], int] = {}

    def claim(self, run_id: int, model_spec_id: int, limit: int, lease_seconds: int) -> tuple[str, list[int]]:
        key = (run_id, model_spec_id)
        chunk_id, ids = claim_chunk(self.engine, run_id, model_spec_id, limit, lease_seconds,
                                    after_id=self.cursors.get(key, 0))
        if ids:
            self.cursors[key] = ids[-1]
            return chunk_id, ids
        return claim_chunk(self.engine, run_id, model_spec_id, limit, lease_seconds)

    def forget(self, run_id: int) -> None:
        for key in [k for k in self.cursors if k[0] == run_id]:
            del self.cursors[key]


def analyze_requests(engine: Engine) -> None:
    """Refresh PostgreSQL's statistics of rating_request (a new run just added its rows): without them the
    planner guesses "one pending row" and sorts a whole run to claim a chunk. Best effort."""
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE rating_request"))
            conn.commit()
    except Exception:  # e.g. not the table's owner: claims are slower, still correct
        log.warning("could not ANALYZE rating_request", exc_info=True)


def take_ownership(engine: Engine, chunk_id: str, request_ids: list[int], lease_seconds: int) -> list[int]:
    """A worker starting the chunk: the requests of ``request_ids`` still queued under ``chunk_id``, with
    their lease renewed from now in the same statement (so reconciliation cannot release them between the
    check and the renewal). A stale message (its requests re-claimed by another chunk) gets []."""
    if not request_ids:
        return []
    with Session(engine) as session:
        ids = session.execute(update(RatingRequest).where(
            RatingRequest.id.in_(request_ids), RatingRequest.chunk_id == chunk_id,  # type: ignore[union-attr]
            RatingRequest.status == RequestStatus.queued.value)
            .values(leased_until=utcnow() + timedelta(seconds=lease_seconds))
            .returning(RatingRequest.id)).scalars().all()
        session.commit()
    return sorted(int(i) for i in ids)


def renew_lease(engine: Engine, chunk_id: str, lease_seconds: int) -> int:
    """Extend the lease of the chunk's still-queued requests; returns how many."""
    now = utcnow()
    with Session(engine) as session:
        n = session.execute(update(RatingRequest).where(
            RatingRequest.chunk_id == chunk_id, RatingRequest.status == RequestStatus.queued.value)
            .values(leased_until=now + timedelta(seconds=lease_seconds))).rowcount or 0
        session.commit()
    return n


def release_chunk(engine: Engine, chunk_id: str) -> int:
    """Hand the chunk's unfinished requests back (to pending): e.g. those skipped while the run was paused."""
    with Session(engine) as session:
        n = session.execute(update(RatingRequest).where(
            RatingRequest.chunk_id == chunk_id, RatingRequest.status == RequestStatus.queued.value)
            .values(status=RequestStatus.pending.value, chunk_id=None, leased_until=None, updated_at=utcnow())
        ).rowcount or 0
        session.commit()
    return n


def chunks_in_flight(engine: Engine, run_ids: list[int]) -> dict[tuple[int, int], int]:
    """(run id, model spec id) -> number of distinct chunks holding queued requests."""
    if not run_ids:
        return {}
    with Session(engine) as session:
        rows = session.execute(
            select(RatingRequest.run_id, RatingRequest.model_spec_id, func.count(func.distinct(RatingRequest.chunk_id)))
            .where(RatingRequest.run_id.in_(run_ids), RatingRequest.status == RequestStatus.queued.value)  # type: ignore[attr-defined]
            .group_by(RatingRequest.run_id, RatingRequest.model_spec_id)).all()
    return {(int(r), int(m)): int(n) for r, m, n in rows}


def has_pending(engine: Engine, run_id: int) -> bool:
    with Session(engine) as session:
        return session.execute(select(RatingRequest.id).where(
            RatingRequest.run_id == run_id, RatingRequest.status == RequestStatus.pending.value).limit(1)).first() is not None
