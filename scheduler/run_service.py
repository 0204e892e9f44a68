"""One owner of a run's life, whatever the mode and whoever asks (CLI, demo, HTTP API, reconciliation).

States: pending → running (⇄ paused) → finished (``completed``, ``cancelled`` or ``budget_exhausted``, with
``finished_at`` set) → analysed (``postprocessed_at`` set). ``finish`` moves a run whose requests are all
settled to its terminal status (``run_control.finalize_if_done``: exactly one caller makes the transition)
and then ``analyse_once``: the analysis suite runs once per finished run, under one lock (a PostgreSQL
advisory lock across processes; a per-run lock in this process on SQLite), and a failure is recorded on the
run (``run.error``) instead of escaping into whichever caller happened to trigger it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from accord.models.schema import Run
from accord.scheduler import run_control
from accord.scheduler.postprocess import postprocess_run

log = logging.getLogger("accord.scheduler.run_service")

# pg advisory-lock namespace for the analysis of a run (an arbitrary constant: "acc" + "pp").
ANALYSIS_LOCK_NS = 0x61636370
_LOCAL_LOCKS: dict[int, threading.Lock] = {}
_LOCAL_LOCKS_GUARD = threading.Lock()


@dataclass
class Analysis:
    """What ``analyse_once`` did: ``ran`` (this call computed the metrics), ``metrics`` stored, ``error``."""

    ran: bool
    metrics: int = 0
    error: str | None = None


@contextmanager
def _analysis_lock(engine: Engine, run_id: int) -> Iterator[bool]:
    """Held while one caller analyses the run; yields False when another holds it (PostgreSQL: in any
    process; SQLite, an embedded database: in this process, waiting for it)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:ns, :id)"),
                                    {"ns": ANALYSIS_LOCK_NS, "id": run_id}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:ns, :id)"), {"ns": ANALYSIS_LOCK_NS, "id": run_id})
                    conn.commit()
        return
    with _LOCAL_LOCKS_GUARD:
        lock = _LOCAL_LOCKS.setdefault(run_id, threading.Lock())
    with lock:
        yield True


def record_error(engine: Engine, run_id: int, message: str) -> None:
    with Session(engine) as session:
        session.execute(update(Run).where(col(Run.id) == run_id).values(error=message[:2000]))
        session.commit()


def analyse_once(engine: Engine, run_id: int, *, again: bool = False) -> Analysis:
    """Compute and store the metrics of a finished run unless that already happened (``again``: recompute).
    One caller at a time per run; a run still executing is left alone."""
    with _analysis_lock(engine, run_id) as got:
        if not got:
            return Analysis(ran=False)
        run = run_control.get_run(engine, run_id)
        if run.finished_at is None or (run.postprocessed_at is not None and not again):
            return Analysis(ran=False)
        try:
            n = postprocess_run(engine, run_id)
        except Exception as err:   # the suite failing must not leave the run looking unfinished
            log.exception("run %s: analysis failed", run_id)
            message = f"post-processing failed: {type(err).__name__}: {err}"
            record_error(engine, run_id, message)
            return Analysis(ran=False, error=message)
        log.info("run %s analysed: %d metrics", run_id, n)
        return Analysis(ran=True, metrics=n)


def finish(engine: Engine, run_id: int, *, analyse: bool = True) -> Analysis:
    """Move the run to its terminal status if nothing is left to execute, then analyse it once."""
    run_control.finalize_if_done(engine, run_id)
    if not analyse:
        return Analysis(ran=False)
    return analyse_once(engine, run_id)


def failed_share(run: Run) -> float:
    """Failed requests as a share of the run's requests."""
    return run.failed / run.total if run.total else 0.0
