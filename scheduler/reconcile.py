"""Reconciliation, the periodic repair job of the distributed mode (run by Celery beat every few seconds).

It relies on the database only, so it repairs whatever the broker lost:
- requests whose chunk's lease ran out (never picked up within the pickup window: the message was lost
  with the broker; or its worker stopped renewing: killed) go back to pending, where the dispatcher claims
  them again (the dispatcher does the same every second; this is the backstop);
- runs with nothing left pending or queued are moved to their terminal status by
  ``run_control.finalize_if_done``, which reports the transition to exactly one caller; that caller sends
  the post-processing task;
- a finished run whose post-processing message was lost gets it again (``postprocess_once`` runs the
  suite at most once at a time and not again once it succeeded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from accord.models.schema import Run, RunStatus, utcnow
from accord.scheduler import run_control, run_service
from accord.scheduler.chunk_leases import DISTRIBUTED, release_expired
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

log = logging.getLogger("accord.scheduler.reconcile")

UNFINISHED = (RunStatus.pending.value, RunStatus.running.value, RunStatus.paused.value,
              RunStatus.cancelled.value, RunStatus.budget_exhausted.value)


@dataclass
class ReconcileReport:
    released: int = 0
    finalized: dict[int, str] = field(default_factory=dict)
    postprocess_sent: list[int] = field(default_factory=list)


def send_postprocess(run_id: int) -> None:
    # Celery: the distributed mode's optional dependency, needed only once a task is sent
    from accord.worker.celery_app import CONTROL, POSTPROCESS_TASK, queue_name, send

    send(POSTPROCESS_TASK, [run_id], queue_name(CONTROL))


def finalize(engine: Engine, run_id: int, on_finished: Callable[[int], None] | None = None) -> str | None:
    """Drain a cancelled run's pending requests, then ``finalize_if_done``; the one caller that made the
    transition triggers post-processing."""
    run = run_control.get_run(engine, run_id)
    if run.status == RunStatus.cancelled.value:
        run_control.cancel_pending(engine, run_id, "run cancelled")
    status = run_control.finalize_if_done(engine, run_id)
    if status is not None:
        log.info("run %s finished: %s", run_id, status)
        (on_finished or send_postprocess)(run_id)
    return status


def unfinished_distributed_runs(engine: Engine) -> list[Run]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.execute(select(Run).where(
            col(Run.mode) == DISTRIBUTED, col(Run.finished_at).is_(None), col(Run.status).in_(UNFINISHED))
            .order_by(col(Run.id))).scalars())


def reconcile_once(engine: Engine, *, grace_seconds: float = 60.0,
                   on_finished: Callable[[int], None] | None = None) -> ReconcileReport:
    report = ReconcileReport()
    report.released = release_expired(engine)
    if report.released:
        log.warning("released %d requests of chunks whose lease expired", report.released)
    for run in unfinished_distributed_runs(engine):
        if run.status in (RunStatus.pending.value, RunStatus.paused.value):
            continue
        status = finalize(engine, run.id, on_finished)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        if status is not None:
            report.finalized[run.id] = status  # type: ignore[index]  # a stored row's id is set (flushed or loaded)
        else:
            p = run_control.read_progress(engine, run.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
            log.info("run %s %s: %d/%d finished (%d cached, %d failed), $%.4f", run.id, p.status, p.finished,
                     p.total, p.cached, p.failed, p.cost_usd)
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    with Session(engine) as session:
        lost = list(session.execute(select(col(Run.id)).where(
            col(Run.mode) == DISTRIBUTED, col(Run.finished_at).is_not(None), col(Run.finished_at) < cutoff,
            col(Run.postprocessed_at).is_(None), col(Run.error).is_(None))).scalars())
    for run_id in lost:
        if run_id in report.finalized:
            continue
        log.warning("run %s finished without post-processing; sending it again", run_id)
        (on_finished or send_postprocess)(run_id)
        report.postprocess_sent.append(run_id)
    return report


def postprocess_once(engine: Engine, run_id: int) -> bool:
    """Analyse a finished run unless that already happened (``run_service.analyse_once``)."""
    return run_service.analyse_once(engine, run_id).ran
