"""Chunks of the distributed mode and their leases, in the database (the system of record): the
scheduler's side. The worker's side (taking ownership, the heartbeat, handing back) is
``accord.worker.leases``.

A chunk is a set of rating requests of one run and one model spec, moved from ``pending`` to ``queued``
under a fresh ``chunk_id`` with ``leased_until`` = now + the *pickup window* (``pickup_seconds``, a few
seconds more than a chunk waits in the broker). A worker taking the chunk extends the lease to
``lease_seconds`` and renews it by heartbeat while it works, then hands back what it did not finish. A chunk
whose lease runs out (its message lost with the broker and never picked up, or its worker killed) is
released by ``release_expired`` within seconds and claimed again under a new id. A stale message for an
old chunk id owns nothing any more, so it does nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from accord.models.schema import RatingRequest, RequestStatus, Run, utcnow
from accord.worker.leases import release_chunk, renew_lease, renew_leases, take_ownership
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

log = logging.getLogger("accord.scheduler.chunk_leases")

DISTRIBUTED = "distributed"


def claim_chunk(engine: Engine, run_id: int, model_spec_id: int, limit: int, lease_seconds: float,
                after_id: int | None = None, now: datetime | None = None) -> tuple[str, list[int]]:
    """Move up to ``limit`` pending requests of (run, model spec) to queued under a new chunk id, leased
    until ``now + lease_seconds`` (the dispatcher passes its pickup window).

    With ``after_id``: the first pending requests with a larger id, in id order (a primary-key range scan:
    cheap however much of the run is done, see ``ChunkClaimer``). Without: any pending requests (the
    status index; finds requests released back to pending behind the cursor)."""
    chunk_id = uuid.uuid4().hex
    now = now or utcnow()
    with engine.begin() as conn:   # a connection: Core statements, no ORM session to synchronize
        pick = (select(col(RatingRequest.id))
                .where(col(RatingRequest.run_id) == run_id, col(RatingRequest.status) == RequestStatus.pending.value,
                       col(RatingRequest.model_spec_id) == model_spec_id).limit(limit))
        if after_id is not None:
            pick = pick.where(col(RatingRequest.id) > after_id).order_by(col(RatingRequest.id))
        if engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        ids = [i for i in conn.execute(pick).scalars() if i is not None]
        if ids:
            result = conn.execute(
                update(RatingRequest)
                .where(col(RatingRequest.id).in_(ids), col(RatingRequest.status) == RequestStatus.pending.value)
                .values(status=RequestStatus.queued.value, chunk_id=chunk_id,
                        leased_until=now + timedelta(seconds=lease_seconds), updated_at=now))
            if (result.rowcount or 0) != len(ids):
                ids = [i for i in conn.execute(select(col(RatingRequest.id)).where(
                    col(RatingRequest.chunk_id) == chunk_id, col(RatingRequest.status) == RequestStatus.queued.value)).scalars() if i is not None]
    return chunk_id, sorted(ids)


class ChunkClaimer:
    """Claims chunks in id order with a cursor per (run, model spec), so a claim costs the same at the start
    and at the end of a million-request run (an ``ORDER BY id`` from the first id would step over every
    finished request). When the cursor finds nothing, one claim without it picks up requests released
    behind it (expired leases, a paused chunk handing its requests back)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cursors: dict[tuple[int, int], int] = {}

    def claim(self, run_id: int, model_spec_id: int, limit: int, lease_seconds: float,
              now: datetime | None = None) -> tuple[str, list[int]]:
        key = (run_id, model_spec_id)
        chunk_id, ids = claim_chunk(self.engine, run_id, model_spec_id, limit, lease_seconds,
                                    after_id=self.cursors.get(key, 0), now=now)
        if ids:
            self.cursors[key] = ids[-1]
            return chunk_id, ids
        return claim_chunk(self.engine, run_id, model_spec_id, limit, lease_seconds, now=now)

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


def release_expired(engine: Engine, now: datetime | None = None) -> int:
    """Queued requests of distributed runs whose lease ran out go back to pending, where the dispatcher
    claims them again: chunks never picked up within their pickup window (the message was lost with the
    broker, or waited far longer than the dispatcher plans for) and chunks whose worker stopped renewing
    (killed). Embedded runs' leases are their own process's business (it releases them on restart).
    Returns how many requests."""
    now = now or utcnow()
    distributed = select(col(Run.id)).where(col(Run.mode) == DISTRIBUTED, col(Run.finished_at).is_(None))
    with Session(engine) as session:
        n = session.execute(
            update(RatingRequest)
            .where(col(RatingRequest.status) == RequestStatus.queued.value, col(RatingRequest.leased_until) < now,
                   col(RatingRequest.run_id).in_(distributed))  # type: ignore[attr-defined]  # DML: a CursorResult (rowcount)
            .values(status=RequestStatus.pending.value, chunk_id=None, leased_until=None, updated_at=now)
            .execution_options(synchronize_session=False)).rowcount or 0
        session.commit()
    return n


def chunks_in_flight(engine: Engine, run_ids: list[int]) -> dict[tuple[int, int], int]:
    """(run id, model spec id) -> number of distinct chunks holding queued requests."""
    if not run_ids:
        return {}
    with Session(engine) as session:
        rows = session.execute(
            select(col(RatingRequest.run_id), col(RatingRequest.model_spec_id), func.count(func.distinct(col(RatingRequest.chunk_id))))
            .where(col(RatingRequest.run_id).in_(run_ids), col(RatingRequest.status) == RequestStatus.queued.value)
            .group_by(col(RatingRequest.run_id), col(RatingRequest.model_spec_id))).all()
    return {(int(r), int(m)): int(n) for r, m, n in rows}


def has_pending(engine: Engine, run_id: int) -> bool:
    with Session(engine) as session:
        return session.execute(select(col(RatingRequest.id)).where(
            col(RatingRequest.run_id) == run_id, col(RatingRequest.status) == RequestStatus.pending.value).limit(1)).first() is not None


__all__ = ["ChunkClaimer", "analyze_requests", "chunks_in_flight", "claim_chunk", "has_pending", "release_chunk",
           "release_expired", "renew_lease", "renew_leases", "take_ownership"]
