"""The dispatcher: the distributed twin of the embedded loop. It feeds chunks of rating requests to the
provider queues, with back-pressure, fairness across runs and run priorities.

Every tick (a fraction of a second):
1. submitted (pending) distributed runs start;
2. for each rate-limit group (the requests of model specs that share a provider's limit), the chunks in
   flight are counted in the database (distinct ``chunk_id`` of queued requests). The group may hold
   about ``dispatch_ahead_seconds`` of work as measured by how fast its chunks come back (``GroupFlow``),
   never more than ``ceil(rpm / 60 x dispatch_ahead_seconds / chunk_size)`` chunks (``max_chunks_per_group``
   without rpm), each run at most ``max_chunks_per_run``: a huge run never floods the broker, and queued
   work never outlives its lease;
3. free slots go one at a time to the (run, model spec) with the highest priority, then the fewest chunks
   in flight (water-filling: runs that share a provider share its capacity equally; none starves behind
   a large one); each slot is a claim in the database, then a message to ``<prefix>.<provider>``;
4. runs over their budget stop being fed (``budget_exhausted``); paused runs are not fed; runs with
   nothing left pending or queued are finalized, exactly once (``reconcile.finalize``).

Before counting, at most once a second, requests whose lease ran out go back to pending
(``chunk_leases.release_expired``). A chunk is claimed with a lease of only the *pickup window*
(``pickup_seconds``, longer for a group whose chunks come back slowly: ``GroupFlow.pickup_window``); the
worker that takes it extends the lease and renews it by heartbeat. So a chunk whose message was lost with
the broker is released and sent again ``pickup_seconds`` after it was sent,
and a killed worker's chunks ``lease_seconds`` after its last heartbeat: a flushed broker costs a run
seconds, not a lease of minutes.

The database is the system of record: nothing here depends on what the broker holds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from accord.models.settings import get_settings
from accord.models.schema import JudgeAssignment, ModelSpec, RatingRequest, Run, RunStatus, utcnow
from accord.scheduler import run_control
from accord.scheduler.batch_dispatch import dispatch_plan, poll_seconds_default, run_batches_once
from accord.scheduler.chunk_leases import (
    ChunkClaimer,
    analyze_requests,
    chunks_in_flight,
    has_pending,
    release_expired,
)
from accord.scheduler.chunk_leases import DISTRIBUTED
from accord.scheduler.reconcile import finalize, unfinished_distributed_runs
from accord.worker.rate_limiter import limit_group
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

log = logging.getLogger("accord.scheduler.dispatcher")

SendChunk = Callable[[str, int, str, list[int]], None]   # (queue, run id, chunk id, request ids)


@dataclass
class SpecInfo:
    id: int
    provider: str
    group: str
    rpm: int | None
    tpm: int | None


@dataclass
class Candidate:
    """One (run, model spec) that may receive chunks."""

    run_id: int
    spec_id: int
    group: str
    priority: int
    in_flight: int
    run_in_flight: int = 0   # the run's chunks in this group over all its specs


@dataclass
class DispatchReport:
    started: list[int] = field(default_factory=list)
    sent: dict[int, int] = field(default_factory=dict)      # run id -> chunks sent
    requests: int = 0
    released: int = 0                                       # requests whose lease ran out, back to pending
    finalized: dict[int, str] = field(default_factory=dict)
    budget_exhausted: list[int] = field(default_factory=list)


def group_capacity(specs: list[SpecInfo], chunk_size: int, ahead_seconds: float, max_chunks: int) -> int:
    """The most chunks a rate-limit group may hold in flight: enough to cover ``ahead_seconds`` of its
    request rate (the lowest rpm of the specs sharing it), at least 2, at most ``max_chunks``."""
    rpms = [s.rpm for s in specs if s.rpm]
    if not rpms:
        return max_chunks
    per_second = min(rpms) / 60.0
    return max(2, min(max_chunks, math.ceil(per_second * ahead_seconds / chunk_size)))


@dataclass
class GroupFlow:
    """How fast a group's chunks complete (an exponentially weighted rate, chunks per second), and the
    in-flight allowance that follows from it: ``rate x ahead_seconds`` chunks, between ``low`` and the
    group's capacity. Starting low and growing as chunks come back, the allowance settles where queued
    chunks wait about ``ahead_seconds``, however many workers serve the queue: queued work never
    outlives its lease, and a huge run never floods the broker."""

    low: int
    rate: float = 0.0
    load: int = 0
    sent: int = 0
    at: float = field(default_factory=time.monotonic)
    tau: float = 5.0

    def update(self, load_now: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        dt = max(now - self.at, 1e-3)
        completed = max(0, self.load + self.sent - load_now)
        alpha = 1.0 - math.exp(-dt / self.tau)
        self.rate += alpha * (completed / dt - self.rate)
        self.load, self.sent, self.at = load_now, 0, now

    def allowance(self, ahead_seconds: float, capacity: int) -> int:
        return max(min(self.low, capacity), min(capacity, math.ceil(self.rate * ahead_seconds)))

    def pickup_window(self, base: float, cap: float) -> float:
        """How long a chunk sent now may wait for a worker before it counts as lost: ``base``, or longer
        when the group's chunks are slow to come back (1.5 x the chunks in flight / the completion rate,
        the wait of a chunk behind all of them), never more than ``cap`` (also the window while nothing has
        come back yet: workers starting, scaling up from zero). Slow chunks (a local model, one worker)
        then wait their turn instead of being released and sent again over and over. The dispatcher keeps
        about ``ahead_seconds`` of work in flight, so a busy group's window is ``base``."""
        if self.rate <= 0:
            return cap
        return min(cap, max(base, 1.5 * (self.load + self.sent) / self.rate))


def allocate(candidates: list[Candidate], free: int, per_run_cap: int,
             exhausted: Callable[[Candidate], bool] | None = None) -> list[Candidate]:
    """Pick who gets each of ``free`` chunk slots of one group: highest priority first, then fewest chunks
    in flight (the run's, then the spec's), then the lowest run id. Mutates the in-flight counts.

    ``exhausted(c)`` is asked lazily before giving ``c`` a slot (e.g. "claim a chunk; was there none?");
    an exhausted candidate leaves the draw."""
    picks: list[Candidate] = []
    live = [c for c in candidates if c.run_in_flight < per_run_cap]
    while free > 0 and live:
        best = min(live, key=lambda c: (-c.priority, c.run_in_flight, c.in_flight, c.run_id, c.spec_id))
        if exhausted is not None and exhausted(best):
            live.remove(best)
            continue
        picks.append(best)
        free -= 1
        for c in candidates:
            if c.run_id == best.run_id:
                c.run_in_flight += 1
        best.in_flight += 1
        live = [c for c in live if c.run_in_flight < per_run_cap]
    return picks


def celery_sender() -> SendChunk:
    # Celery: the distributed mode's optional dependency, needed only once chunks are sent
    from accord.worker.celery_app import EXECUTE_TASK, send

    def send_chunk(queue: str, run_id: int, chunk_id: str, ids: list[int]) -> None:
        send(EXECUTE_TASK, [run_id, chunk_id, ids], queue)

    return send_chunk


class Dispatcher:
    """``lease_seconds`` is the workers' lease (kept for reference); chunks are claimed with a lease of
    ``pickup_seconds`` (default: the ``ACCORD_PICKUP_SECONDS`` setting; up to ``max_pickup_seconds``,
    default 6x, for groups whose chunks come back slowly), extended by the worker that takes them. ``clock`` (UTC now) and ``tick(now=...)`` let tests drive the lease clock; ``release_every`` is
    how often (seconds of that clock) a tick releases expired leases."""

    def __init__(self, engine: Engine, *, chunk_size: int, lease_seconds: int, ahead_seconds: float = 6.0,
                 max_chunks_per_run: int = 32, max_chunks_per_group: int = 64, min_chunks_per_group: int = 4,
                 send_chunk: SendChunk | None = None, queue_for: Callable[[str], str] | None = None,
                 on_finished: Callable[[int], None] | None = None, batch_poll_seconds: float | None = None,
                 pickup_seconds: float | None = None, max_pickup_seconds: float | None = None,
                 clock: Callable[[], datetime] = utcnow, release_every: float = 1.0) -> None:
        self.engine = engine
        self.chunk_size = chunk_size
        self.lease_seconds = lease_seconds
        if pickup_seconds is None:
            pickup_seconds = get_settings().pickup_seconds
        self.pickup_seconds = pickup_seconds
        self.max_pickup_seconds = max_pickup_seconds if max_pickup_seconds is not None else 6.0 * pickup_seconds
        self.clock = clock
        self.release_every = release_every
        self._released_at: datetime | None = None
        self.ahead_seconds = ahead_seconds
        self.max_chunks_per_run = max_chunks_per_run
        self.max_chunks_per_group = max_chunks_per_group
        self.min_chunks_per_group = min_chunks_per_group
        self._flows: dict[str, GroupFlow] = {}
        self.claimer = ChunkClaimer(engine)
        self.send_chunk = send_chunk or celery_sender()
        if queue_for is None:
            # Celery: the distributed mode's optional dependency
            from accord.worker.celery_app import provider_queue

            queue_for = provider_queue
        self.queue_for = queue_for
        self.on_finished = on_finished
        self._run_specs: dict[int, list[SpecInfo]] = {}
        self._batch_specs: dict[int, list[int]] = {}
        self._batch_ticked: dict[int, float] = {}
        self.batch_poll_seconds = batch_poll_seconds if batch_poll_seconds is not None else poll_seconds_default()

    # ------------------------------------------------------------------ run bookkeeping
    def batch_specs_of(self, run_id: int) -> list[int]:
        """Model specs of the run whose requests go through their provider's batch API (not fed as chunks)."""
        if run_id not in self._batch_specs:
            self._batch_specs[run_id] = dispatch_plan(self.engine, run_id)[0]
        return self._batch_specs[run_id]

    def specs_of(self, run_id: int) -> list[SpecInfo]:
        """Model specs of the run that workers execute in realtime (batch-API models are left out)."""
        if run_id not in self._run_specs:
            batch = set(self.batch_specs_of(run_id))
            with Session(self.engine) as session:
                # Judges have no request until the first answer is stored: their assignments name them.
                found = set(session.execute(select(col(RatingRequest.model_spec_id)).distinct()
                                            .where(col(RatingRequest.run_id) == run_id)).scalars())
                found |= set(session.execute(select(col(JudgeAssignment.model_spec_id))
                                             .where(col(JudgeAssignment.run_id) == run_id)).scalars())
                ids = [i for i in found if i not in batch]
                rows = list(session.execute(select(ModelSpec).where(col(ModelSpec.id).in_(ids))).scalars())
            self._run_specs[run_id] = [SpecInfo(r.id, r.provider, limit_group(r), r.rpm, r.tpm)
                                       for r in sorted(rows, key=lambda r: r.id or 0)]
        return self._run_specs[run_id]

    def _over_budget(self, run: Run) -> bool:
        if run.budget_usd is None or run.cost_usd < run.budget_usd:
            return False
        with Session(self.engine) as session:
            n = session.execute(update(Run).where(col(Run.id) == run.id, col(Run.status) == RunStatus.running.value)  # type: ignore[attr-defined]  # DML: a CursorResult
                                .values(status=RunStatus.budget_exhausted.value)).rowcount
            session.commit()
        return bool(n)

    def _tick_batches(self, run_id: int) -> None:
        """Submit, poll and collect the run's provider batches, at most once per batch poll interval. A
        provider outage is logged and retried next interval; it never stops the dispatcher."""
        now = time.monotonic()
        if now - self._batch_ticked.get(run_id, -math.inf) < self.batch_poll_seconds:
            return
        self._batch_ticked[run_id] = now
        try:
            run_batches_once(self.engine, run_id, realtime=False)
        except Exception:
            log.exception("run %s: batch tick failed; retrying in %.0f s", run_id, self.batch_poll_seconds)

    def release_expired(self, now: datetime) -> int:
        """Release the requests whose lease ran out, at most once per ``release_every`` seconds."""
        if self._released_at is not None and (now - self._released_at).total_seconds() < self.release_every:
            return 0
        self._released_at = now
        n = release_expired(self.engine, now)
        if n:
            log.warning("released %d requests of chunks whose lease expired (not picked up within %gs, or "
                        "their worker stopped renewing); sending them again", n, self.pickup_seconds)
        return n

    # ------------------------------------------------------------------ one tick
    def tick(self, now: datetime | None = None) -> DispatchReport:
        report = DispatchReport()
        now_utc = now or self.clock()
        report.released = self.release_expired(now_utc)
        runs = unfinished_distributed_runs(self.engine)
        if any(run.status == RunStatus.pending.value for run in runs):
            analyze_requests(self.engine)   # the new runs' rows: statistics for the claim's plan
        for run in runs:
            if run.status == RunStatus.pending.value:
                run_control.mark_started(self.engine, run.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                run.status = RunStatus.running.value
                report.started.append(run.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                log.info("run %s started (%d requests, priority %d)", run.id, run.total, run.priority)
        for run in runs:
            if run.status == RunStatus.running.value and self._over_budget(run):
                run.status = RunStatus.budget_exhausted.value
                report.budget_exhausted.append(run.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        running = [r for r in runs if r.status == RunStatus.running.value]
        for run in runs:
            if run.status in (RunStatus.running.value, RunStatus.cancelled.value) and self.batch_specs_of(run.id):  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                self._tick_batches(run.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        in_flight = chunks_in_flight(self.engine, [r.id for r in runs])  # type: ignore[misc]  # a stored row's id is set (flushed or loaded)

        groups: dict[str, list[Candidate]] = {}
        group_specs: dict[str, list[SpecInfo]] = {}
        spec_by_id: dict[int, SpecInfo] = {}
        for run in running:
            specs = self.specs_of(run.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
            run_group_load: dict[str, int] = {}
            for s in specs:
                run_group_load[s.group] = run_group_load.get(s.group, 0) + in_flight.get((run.id, s.id), 0)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
            for s in specs:
                spec_by_id[s.id] = s
                group_specs.setdefault(s.group, []).append(s)
                groups.setdefault(s.group, []).append(Candidate(
                    run.id, s.id, s.group, run.priority, in_flight.get((run.id, s.id), 0),  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                    run_group_load[s.group]))
        # Chunks of runs no longer fed (paused, cancelled) still occupy their group until they finish.
        group_load: dict[str, int] = {}
        for (run_id, spec_id), n in in_flight.items():
            spec = spec_by_id.get(spec_id)
            if spec is None:
                found = [s for s in self.specs_of(run_id) if s.id == spec_id]
                spec = found[0] if found else None
            if spec is not None:
                group_load[spec.group] = group_load.get(spec.group, 0) + n

        mono = time.monotonic()
        for group in set(group_load) | set(groups):
            flow = self._flows.setdefault(group, GroupFlow(low=self.min_chunks_per_group, at=mono))
            flow.update(group_load.get(group, 0), mono)
        for group, candidates in groups.items():
            flow = self._flows[group]
            cap = flow.allowance(self.ahead_seconds, group_capacity(
                group_specs[group], self.chunk_size, self.ahead_seconds, self.max_chunks_per_group))
            free = cap - group_load.get(group, 0)

            def claim_or_exhausted(c: Candidate) -> bool:
                pickup = self._flows[c.group].pickup_window(self.pickup_seconds, self.max_pickup_seconds)
                chunk_id, ids = self.claimer.claim(c.run_id, c.spec_id, self.chunk_size, pickup, now=now_utc)
                if not ids:
                    return True
                self.send_chunk(self.queue_for(spec_by_id[c.spec_id].provider), c.run_id, chunk_id, ids)
                self._flows[c.group].sent += 1
                report.sent[c.run_id] = report.sent.get(c.run_id, 0) + 1
                report.requests += len(ids)
                return False

            allocate(candidates, free, self.max_chunks_per_run, claim_or_exhausted)
        # A running run with no chunk in flight and nothing pending is done (finalize_if_done decides).
        busy = {run_id for (run_id, _), n in in_flight.items() if n > 0} | set(report.sent)
        drained = {r.id: (r.id not in busy and not has_pending(self.engine, r.id)) for r in running}  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        # Finalize: running runs with nothing left to claim or in flight, and runs no longer fed.
        for run in runs:
            check = (run.status == RunStatus.running.value and drained.get(run.id, False)) or run.status in (
                RunStatus.cancelled.value, RunStatus.budget_exhausted.value)
            if check:
                status = finalize(self.engine, run.id, self.on_finished)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                if status is not None:
                    report.finalized[run.id] = status  # type: ignore[index]  # a stored row's id is set (flushed or loaded)
                    self._run_specs.pop(run.id, None)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                    self._batch_specs.pop(run.id, None)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                    self._batch_ticked.pop(run.id, None)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                    self.claimer.forget(run.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        return report

    def run_forever(self, interval: float = 0.25, stop: Callable[[], bool] | None = None,
                    on_tick: Callable[[DispatchReport], None] | None = None) -> None:
        """Tick until ``stop()``; a failing tick (database briefly down, ...) is logged and retried."""
        while not (stop and stop()):
            started = time.monotonic()
            try:
                report = self.tick()
                if on_tick:
                    on_tick(report)
                if report.sent:
                    log.debug("dispatched %d requests in %s", report.requests, report.sent)
            except Exception:
                log.exception("dispatcher tick failed; retrying")
                time.sleep(min(5.0, interval * 8))
            time.sleep(max(0.0, interval - (time.monotonic() - started)))


__all__ = ["DISTRIBUTED", "Candidate", "DispatchReport", "Dispatcher", "SpecInfo", "allocate", "group_capacity"]
