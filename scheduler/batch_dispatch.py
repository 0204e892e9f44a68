"""Running a campaign through the providers' batch APIs (``dispatch: batch``, or ``auto`` with
``deadline_hours`` >= 24).

``run_batches_once(engine, run_id)`` is one poll tick — what a beat task or the CLI calls: collect ended
batches, poll submitted ones (cancelling them at the provider if the run was stopped), resume interrupted
submissions, put pending requests into new batches and submit them, execute in realtime the requests of
models without a batch API, and finish the run when nothing is left. Every step is idempotent, so ticks
may overlap a crash or each other. ``run_batches`` loops ticks every ``poll_seconds`` with progress
callbacks (embedded mode); it returns when the run is finished or paused (live batches keep running at the
provider; the next tick picks them up).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from accord.models.schema import (
    TERMINAL_RUN_STATUSES,
    BatchStatus,
    Campaign,
    ModelSpec,
    RatingRequest,
    Run,
    RunStatus,
)
from accord.models.settings import get_settings
from accord.scheduler import run_control
from accord.scheduler.campaign_spec import CampaignSpec
from accord.scheduler.expand import answer_from_cache
from accord.scheduler.run_control import Progress
from accord.worker.batch.base import CANCELED, BatchLimits
from accord.worker.batch.batch_runner import (
    STOPPED_RUN_STATUSES,
    BatchContext,
    TickReport,
    abandon_batch,
    answers_from_cache,
    assemble_batches,
    collect_batch,
    live_batches,
    poll_batch,
    submit_batch,
)
from accord.worker.execute import ExecutionContext, execute_chunk
from accord.worker.provider_pool import ProviderPool
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

log = logging.getLogger("accord.scheduler.batch")

DEFAULT_POLL_SECONDS = 30.0
POLL_SECONDS_ENV = "ACCORD_BATCH_POLL_SECONDS"


def poll_seconds_default() -> float:
    value = os.environ.get(POLL_SECONDS_ENV)
    return float(value) if value else DEFAULT_POLL_SECONDS


def campaign_of(engine: Engine, run_id: int) -> CampaignSpec:
    with Session(engine) as session:
        doc = session.execute(select(col(Campaign.spec)).join(Run, col(Run.campaign_id) == col(Campaign.id))
                              .where(col(Run.id) == run_id)).scalar_one()
    return CampaignSpec.model_validate(doc)


def dispatch_plan(engine: Engine, run_id: int) -> tuple[list[int], list[int]]:
    """(model spec ids whose requests go through a batch API, model spec ids run in realtime) for the run."""
    spec = campaign_of(engine, run_id)
    entries = {m.name: m for m in spec.all_models()}   # rating models, subjects and judges
    with Session(engine) as session:
        rows = session.execute(select(col(ModelSpec.id), col(ModelSpec.name)).where(col(ModelSpec.id).in_(
            select(col(RatingRequest.model_spec_id)).where(col(RatingRequest.run_id) == run_id).distinct()))).all()
    batch: list[int] = []
    realtime: list[int] = []
    for spec_id, name in sorted(rows):
        entry = entries.get(name)
        (batch if entry is not None and spec.uses_batch_api(entry) else realtime).append(spec_id)
    return batch, realtime


def uses_batch(engine: Engine, run_id: int) -> bool:
    """Whether any of the run's models go through a batch API (then run it with ``run_batches``)."""
    return bool(dispatch_plan(engine, run_id)[0])


async def _run_realtime(bctx: BatchContext, run_id: int, model_spec_ids: list[int]) -> None:
    """Execute the pending requests of models without a batch API, as the embedded runner would."""
    settings = get_settings()
    ctx = bctx.execution or ExecutionContext(engine=bctx.engine, providers=bctx.providers)
    while run_control.get_run(bctx.engine, run_id).status == RunStatus.running.value:
        _, ids = run_control.claim_pending(bctx.engine, run_id, settings.chunk_size, settings.lease_seconds,
                                           model_spec_ids)
        if not ids:
            return
        await execute_chunk(ctx, ids)


async def run_batches_once_async(bctx: BatchContext, run_id: int, *, realtime: bool = True) -> TickReport:
    """One tick over the run's batches (see the module docstring). ``realtime``: also execute the requests
    of models without a batch API (the distributed mode leaves those to its workers)."""
    engine = bctx.engine
    report = TickReport()
    run = run_control.get_run(engine, run_id)
    if run.status == RunStatus.pending.value:
        run_control.mark_started(engine, run_id)
        run = run_control.get_run(engine, run_id)
    batch_ids, realtime_ids = dispatch_plan(engine, run_id)

    for batch in live_batches(engine, run_id, (BatchStatus.ended.value,)):
        report.merge(await collect_batch(bctx, batch))
    for batch in live_batches(engine, run_id, (BatchStatus.submitted.value,)):
        state, polled = await poll_batch(bctx, batch)
        report.merge(polled)
        if state is not None and state.ended:
            report.merge(await collect_batch(bctx, batch, state))

    status = run_control.get_run(engine, run_id).status
    unsent = live_batches(engine, run_id, (BatchStatus.preparing.value, BatchStatus.submitting.value))
    if status in STOPPED_RUN_STATUSES:
        for batch in unsent:
            if batch.status == BatchStatus.preparing.value:      # never sent: nothing to wait for
                abandon_batch(bctx, batch, f"run {status}", report, retry=True, kind=CANCELED)
            else:                                                # may exist at the provider: adopt it, then cancel
                report.merge(await submit_batch(bctx, batch, resend=False))
    elif status == RunStatus.running.value:
        if campaign_of(engine, run_id).cache is True:
            report.stored += answers_from_cache(engine, run_id)   # subjects first: their judges may be cached too
            with Session(engine) as session:
                answer_from_cache(session, run_id)
                session.commit()
        for batch in unsent:
            report.merge(await submit_batch(bctx, batch))
        for spec_id in batch_ids:
            report.merge(assemble_batches(bctx, run_id, spec_id))
        for batch in live_batches(engine, run_id, (BatchStatus.preparing.value,)):
            report.merge(await submit_batch(bctx, batch))
        if realtime and realtime_ids:
            await _run_realtime(bctx, run_id, realtime_ids)
    run_control.finalize_if_done(engine, run_id)
    return report


def run_batches_once(engine: Engine, run_id: int, *, limits: dict[str, BatchLimits] | None = None,
                     max_attempts: int | None = None, realtime: bool = True) -> TickReport:
    """One tick, synchronously, with providers of its own (for a beat task or a CLI command)."""
    async def tick() -> TickReport:
        providers = ProviderPool()
        try:
            bctx = BatchContext(engine=engine, providers=providers, limits=dict(limits or {}),
                                max_attempts=max_attempts or get_settings().max_attempts)
            return await run_batches_once_async(bctx, run_id, realtime=realtime)
        finally:
            await providers.aclose()

    return asyncio.run(tick())


def _settled(engine: Engine, run_id: int) -> bool:
    """Nothing more will happen without a new call: the run is terminal, or stopped/paused with no batch
    live at a provider."""
    status = run_control.get_run(engine, run_id).status
    if status in {s.value for s in TERMINAL_RUN_STATUSES} and not live_batches(engine, run_id):
        return True
    return status == RunStatus.paused.value


async def run_batches_async(engine: Engine, run_id: int, *, providers: ProviderPool | None = None,
                            on_progress: Callable[[Progress], None] | None = None,
                            poll_seconds: float | None = None, limits: dict[str, BatchLimits] | None = None,
                            max_attempts: int | None = None, **_: Any) -> Progress:
    """Tick until the run is finished (or paused), sleeping ``poll_seconds`` between ticks while batches
    are live at a provider. Same call shape as ``run_embedded_async``."""
    poll = poll_seconds_default() if poll_seconds is None else poll_seconds
    own_pool = providers is None
    providers = providers or ProviderPool()
    bctx = BatchContext(engine=engine, providers=providers, limits=dict(limits or {}),
                        max_attempts=max_attempts or get_settings().max_attempts)
    if run_control.get_run(engine, run_id).status == RunStatus.pending.value:
        run_control.mark_started(engine, run_id)      # a paused run stays paused; a stopped one is wound down
    try:
        while True:
            report = await run_batches_once_async(bctx, run_id)
            for error in report.errors:
                log.warning("run %s: %s", run_id, error)
            if on_progress:
                on_progress(run_control.read_progress(engine, run_id))
            if _settled(engine, run_id):
                break
            idle = not (report.stored or report.released or report.assembled or report.collected)
            if idle or live_batches(engine, run_id):
                await asyncio.sleep(poll)
    finally:
        if own_pool:
            await providers.aclose()
    return run_control.settle(engine, run_id, on_progress)


def run_batches(engine: Engine, run_id: int, **kwargs: Any) -> Progress:
    return asyncio.run(run_batches_async(engine, run_id, **kwargs))
