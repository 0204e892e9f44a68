"""The worker's side of a chunk's lease, in the database (the system of record).

The dispatcher (``accord.scheduler.chunk_leases``) claims a chunk: its requests move from ``pending`` to
``queued`` under a fresh ``chunk_id``, leased only for the short *pickup window*. A worker starting the
chunk takes ownership (``take_ownership``: the lease now runs ``lease_seconds`` from the pickup), a
``LeaseKeeper`` thread renews the leases of the chunks its process runs every third of the lease (a
heartbeat, independent of the event loop that executes them), and the worker hands back what it did not
finish (``release_chunk``). A chunk whose message was lost (broker flushed) is never picked up and its
short pickup lease runs out; a chunk whose worker died stops being renewed and its lease runs out. Either
way the scheduler releases the requests and claims them again under a new id: a stale message for an old
chunk id owns nothing any more, so it does nothing.

Every function takes ``now`` (default: the database clock's UTC now from ``utcnow``) so tests drive time.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from accord.models.schema import RatingRequest, RequestStatus, utcnow
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

log = logging.getLogger("accord.worker.leases")


def take_ownership(engine: Engine, chunk_id: str, request_ids: list[int], lease_seconds: float,
                   now: datetime | None = None) -> list[int]:
    """A worker starting the chunk: the requests of ``request_ids`` still queued under ``chunk_id``, with
    their lease renewed from now in the same statement (so reconciliation cannot release them between the
    check and the renewal). A stale message (its requests re-claimed by another chunk) gets []."""
    if not request_ids:
        return []
    now = now or utcnow()
    with Session(engine) as session:
        ids = session.execute(update(RatingRequest).where(
            col(RatingRequest.id).in_(request_ids), col(RatingRequest.chunk_id) == chunk_id,
            col(RatingRequest.status) == RequestStatus.queued.value)
            .values(leased_until=now + timedelta(seconds=lease_seconds))
            .returning(col(RatingRequest.id))).scalars().all()
        session.commit()
    return sorted(int(i) for i in ids)


def renew_leases(engine: Engine, chunk_ids: Iterable[str], lease_seconds: float, now: datetime | None = None) -> int:
    """Extend the lease of the still-queued requests of these chunks to ``now + lease_seconds`` (one
    statement); returns how many requests."""
    ids = sorted(set(chunk_ids))
    if not ids:
        return 0
    now = now or utcnow()
    with Session(engine) as session:
        n = session.execute(update(RatingRequest).where(
            col(RatingRequest.chunk_id).in_(ids), col(RatingRequest.status) == RequestStatus.queued.value)
            .values(leased_until=now + timedelta(seconds=lease_seconds))).rowcount or 0  # type: ignore[attr-defined]  # DML: a CursorResult
        session.commit()
    return n


def renew_lease(engine: Engine, chunk_id: str, lease_seconds: float, now: datetime | None = None) -> int:
    """Extend the lease of the chunk's still-queued requests; returns how many."""
    return renew_leases(engine, [chunk_id], lease_seconds, now)


def release_chunk(engine: Engine, chunk_id: str) -> int:
    """Hand the chunk's unfinished requests back (to pending): e.g. those skipped while the run was paused."""
    with Session(engine) as session:
        n = session.execute(update(RatingRequest).where(
            col(RatingRequest.chunk_id) == chunk_id, col(RatingRequest.status) == RequestStatus.queued.value)
            .values(status=RequestStatus.pending.value, chunk_id=None, leased_until=None, updated_at=utcnow())
        ).rowcount or 0  # type: ignore[attr-defined]  # DML: a CursorResult
        session.commit()
    return n


class LeaseKeeper:
    """A heartbeat thread renewing, every ``lease_seconds / 3``, the leases of the chunks this process is
    executing (``hold`` / ``drop`` around each chunk). One UPDATE per beat for all of them, off the event
    loop, so a busy loop or a slow chunk never lets a live chunk's lease lapse; a killed process stops
    beating and its chunks come back within one lease."""

    def __init__(self, engine: Engine, lease_seconds: float, *,
                 renew: Callable[[Engine, Iterable[str], float], int] = renew_leases) -> None:
        self.engine = engine
        self.lease_seconds = float(lease_seconds)
        self.every = max(self.lease_seconds / 3.0, 0.5)
        self._renew = renew
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, chunk_id: str) -> None:
        with self._lock:
            self._held[chunk_id] += 1
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._beat, name="accord-lease-keeper", daemon=True)
                self._thread.start()

    def drop(self, chunk_id: str) -> None:
        with self._lock:
            self._held[chunk_id] -= 1
            if self._held[chunk_id] <= 0:
                del self._held[chunk_id]

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def beat_once(self) -> int:
        chunks = self.held()
        if not chunks:
            return 0
        try:
            return self._renew(self.engine, chunks, self.lease_seconds)
        except Exception:   # the database briefly away: the next beat tries again (two more before the lease ends)
            log.exception("renewing the leases of %d chunks failed", len(chunks))
            return 0

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self.beat_once()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
