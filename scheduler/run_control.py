"""Run state shared by the embedded and the distributed modes: claiming work, leases, pause / resume /
cancel, progress counters, and completion detected exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from accord.models.schema import TERMINAL_RUN_STATUSES, RatingRequest, RequestStatus, Run, RunStatus, utcnow
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col


class RunStateError(ValueError):
    """An action that the run's current status does not allow (e.g. resuming a completed run)."""


@dataclass
class Progress:
    run_id: int
    status: str
    total: int
    done: int
    failed: int
    cached: int
    cancelled: int
    cost_usd: float
    input_tokens: int
    output_tokens: int
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def remaining(self) -> int:
        return max(self.total - self.finished, 0)


def get_run(engine: Engine, run_id: int) -> Run:
    with Session(engine, expire_on_commit=False) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise RunStateError(f"run {run_id}: no such run")
        return run


def read_progress(engine: Engine, run_id: int) -> Progress:
    r = get_run(engine, run_id)
    return Progress(run_id=run_id, status=r.status, total=r.total, done=r.done, failed=r.failed, cached=r.cached,
                    cancelled=r.cancelled, cost_usd=r.cost_usd, input_tokens=r.input_tokens,
                    output_tokens=r.output_tokens, started_at=r.started_at, finished_at=r.finished_at)


def mark_started(engine: Engine, run_id: int) -> None:
    with Session(engine) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise RunStateError(f"run {run_id}: no such run")
        if run.status in {s.value for s in TERMINAL_RUN_STATUSES}:
            raise RunStateError(f"run {run_id} is {run.status}; start a new run instead")
        if run.status in (RunStatus.pending.value, RunStatus.paused.value):
            run.status = RunStatus.running.value
            run.started_at = run.started_at or utcnow()
            session.add(run)
            session.commit()


def claim_pending(engine: Engine, run_id: int, limit: int, lease_seconds: int,
                  model_spec_ids: list[int] | None = None) -> tuple[str, list[int]]:
    """Move up to ``limit`` pending requests of the run (of the given models only, if named) to queued under
    a new chunk id, with a lease."""
    chunk_id = uuid.uuid4().hex
    now = utcnow()
    with Session(engine) as session:
        pick = (select(col(RatingRequest.id)).where(col(RatingRequest.run_id) == run_id,
                                               col(RatingRequest.status) == RequestStatus.pending.value)
                .order_by(col(RatingRequest.id)).limit(limit))
        if model_spec_ids is not None:
            pick = pick.where(col(RatingRequest.model_spec_id).in_(model_spec_ids))
        if engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        ids = list(session.execute(pick).scalars())
        if ids:
            session.execute(update(RatingRequest).where(col(RatingRequest.id).in_(ids),
                                                        col(RatingRequest.status) == RequestStatus.pending.value)
                            .values(status=RequestStatus.queued.value, chunk_id=chunk_id,
                                    leased_until=now + timedelta(seconds=lease_seconds), updated_at=now))
            ids = list(session.execute(select(col(RatingRequest.id)).where(col(RatingRequest.chunk_id) == chunk_id,
                                                                      col(RatingRequest.status) == RequestStatus.queued.value)).scalars())
        session.commit()
    return chunk_id, ids


def release_expired_leases(engine: Engine, run_id: int | None = None, *, now: datetime | None = None) -> int:
    """Requests whose chunk never reported back (worker killed, broker lost) go back to pending."""
    now = now or utcnow()
    with Session(engine) as session:
        q = (update(RatingRequest)
             .where(col(RatingRequest.status) == RequestStatus.queued.value, col(RatingRequest.leased_until) < now)
             .values(status=RequestStatus.pending.value, chunk_id=None, leased_until=None, updated_at=now))
        if run_id is not None:
            q = q.where(col(RatingRequest.run_id) == run_id)
        n = session.execute(q).rowcount or 0  # type: ignore[attr-defined]  # DML: a CursorResult
        session.commit()
    return n


def release_all_queued(engine: Engine, run_id: int) -> int:
    """Embedded mode restarting a run: nothing else can hold its requests, so every lease is stale."""
    with Session(engine) as session:
        n = session.execute(update(RatingRequest).where(col(RatingRequest.run_id) == run_id,  # type: ignore[attr-defined]  # DML: a CursorResult
                                                        col(RatingRequest.status) == RequestStatus.queued.value)
                            .values(status=RequestStatus.pending.value, chunk_id=None, leased_until=None)).rowcount or 0
        session.commit()
    return n


def active_count(engine: Engine, run_id: int) -> int:
    with Session(engine) as session:
        return int(session.execute(select(func.count()).select_from(RatingRequest).where(
            col(RatingRequest.run_id) == run_id,
            col(RatingRequest.status).in_((RequestStatus.pending.value, RequestStatus.queued.value)))).scalar_one())


def _set_status(engine: Engine, run_id: int, allowed_from: set[str], to: str) -> bool:
    with Session(engine) as session:
        n = session.execute(update(Run).where(col(Run.id) == run_id, col(Run.status).in_(allowed_from))  # type: ignore[attr-defined]  # DML: a CursorResult (rowcount)
                            .values(status=to)).rowcount or 0
        session.commit()
    return bool(n)


def pause_run(engine: Engine, run_id: int) -> None:
    if not _set_status(engine, run_id, {RunStatus.pending.value, RunStatus.running.value}, RunStatus.paused.value):
        raise RunStateError(f"run {run_id} is {get_run(engine, run_id).status}; only a pending or running run can be paused")


def resume_run(engine: Engine, run_id: int) -> None:
    if not _set_status(engine, run_id, {RunStatus.paused.value}, RunStatus.running.value):
        raise RunStateError(f"run {run_id} is {get_run(engine, run_id).status}; only a paused run can be resumed")
    release_all_queued(engine, run_id) if get_run(engine, run_id).mode == "embedded" else None


def cancel_run(engine: Engine, run_id: int) -> int:
    """Cancel: pending requests are cancelled now; queued ones are dropped by their chunk; in-flight ones finish."""
    if not _set_status(engine, run_id, {RunStatus.pending.value, RunStatus.running.value, RunStatus.paused.value},
                       RunStatus.cancelled.value):
        raise RunStateError(f"run {run_id} is {get_run(engine, run_id).status}; it can no longer be cancelled")
    return cancel_pending(engine, run_id, "run cancelled")


def cancel_pending(engine: Engine, run_id: int, reason: str) -> int:
    with Session(engine) as session:
        n = session.execute(update(RatingRequest).where(col(RatingRequest.run_id) == run_id,  # type: ignore[attr-defined]  # DML: a CursorResult
                                                        col(RatingRequest.status) == RequestStatus.pending.value)
                            .values(status=RequestStatus.cancelled.value, last_error=reason, updated_at=utcnow())).rowcount or 0
        if n:
            session.execute(text("UPDATE run SET cancelled = cancelled + :n WHERE id = :id"), {"n": n, "id": run_id})
        session.commit()
    return n


def settle(engine: Engine, run_id: int, on_progress: Callable[[Progress], None] | None = None) -> Progress:
    """An executor's last step: ``finalize_if_done``, then the run's progress, also passed to ``on_progress``."""
    finalize_if_done(engine, run_id)
    progress = read_progress(engine, run_id)
    if on_progress:
        on_progress(progress)
    return progress


def finalize_if_done(engine: Engine, run_id: int) -> str | None:
    """If no request of the run is pending or queued, move it to its terminal status.

    Returns the new status when *this call* made the transition (so post-processing is triggered exactly
    once, however many workers or beat ticks notice completion), else None."""
    run = get_run(engine, run_id)
    if run.status == RunStatus.budget_exhausted.value:
        cancel_pending(engine, run_id, "budget exhausted")
    elif run.status == RunStatus.cancelled.value:   # requests created after the cancel (judges of a late answer)
        cancel_pending(engine, run_id, "run cancelled")
    if active_count(engine, run_id) > 0:
        return None
    target = {RunStatus.running.value: RunStatus.completed.value,
              RunStatus.pending.value: RunStatus.completed.value}.get(run.status)
    with Session(engine) as session:
        if target is not None:
            n = session.execute(update(Run).where(col(Run.id) == run_id, col(Run.status) == run.status, col(Run.finished_at).is_(None))  # type: ignore[attr-defined]  # DML: a CursorResult
                                .values(status=target, finished_at=utcnow())).rowcount
            session.commit()
            return target if n else None
        if run.status in (RunStatus.budget_exhausted.value, RunStatus.cancelled.value):
            n = session.execute(update(Run).where(col(Run.id) == run_id, col(Run.finished_at).is_(None))  # type: ignore[attr-defined]  # DML: a CursorResult
                                .values(finished_at=utcnow())).rowcount
            session.commit()
            return run.status if n else None
    return None
