"""Embedded mode: execute a run in this process with bounded concurrency, the same execution function
the Celery workers call (``accord.worker.execute.execute_chunk``)."""

from __future__ import annotations

import asyncio
from typing import Any
from collections.abc import Callable

from sqlalchemy.engine import Engine

from accord.models.schema import RunStatus
from accord.models.settings import get_settings
from accord.scheduler import run_control
from accord.scheduler.batch_dispatch import run_batches_async, uses_batch
from accord.scheduler.run_control import Progress
from accord.worker.budget import MemoryBudgetLedger
from accord.worker.execute import ChunkOutcome, ExecutionContext, execute_chunk
from accord.worker.heap import frozen_heap
from accord.worker.provider_pool import ProviderPool
from accord.worker.rate_limiter import LocalRateLimiter, RateLimiter


async def run_embedded_async(engine: Engine, run_id: int, *, chunk_size: int | None = None,
                             concurrency: int | None = None, providers: ProviderPool | None = None,
                             on_progress: Callable[[Progress], None] | None = None,
                             max_attempts: int | None = None, backoff_initial: float = 0.5,
                             limiter: RateLimiter | None = None) -> Progress:
    if uses_batch(engine, run_id):
        # Models on a provider batch API are submitted and polled; the rest run in realtime in the same loop.
        return await run_batches_async(engine, run_id, providers=providers, on_progress=on_progress,
                                       max_attempts=max_attempts)
    settings = get_settings()
    chunk_size = chunk_size or settings.chunk_size
    concurrency = concurrency or settings.embedded_concurrency
    own_pool = providers is None
    providers = providers or ProviderPool()
    # The same admission as distributed mode (rpm/tpm pacing, 429 back-off), held in this process; the
    # budget's reservations likewise.
    ctx = ExecutionContext(engine=engine, providers=providers, limiter=limiter or LocalRateLimiter(),
                           budget=MemoryBudgetLedger(), max_attempts=max_attempts or settings.max_attempts,
                           backoff_initial=backoff_initial)
    run_control.release_all_queued(engine, run_id)   # a previous process that died left its leases behind
    run_control.mark_started(engine, run_id)
    if on_progress:
        on_progress(run_control.read_progress(engine, run_id))

    slots = asyncio.Semaphore(concurrency)
    in_flight: set[asyncio.Task[ChunkOutcome]] = set()

    async def run_chunk(ids: list[int]) -> ChunkOutcome:
        try:
            return await execute_chunk(ctx, ids)
        finally:
            slots.release()
            if on_progress:
                on_progress(await asyncio.to_thread(run_control.read_progress, engine, run_id))

    try:
        while True:
            status = (await asyncio.to_thread(run_control.get_run, engine, run_id)).status
            if status != RunStatus.running.value:
                break
            await slots.acquire()
            # database work off the event loop, where admitted calls are being sent
            _, ids = await asyncio.to_thread(run_control.claim_pending, engine, run_id, chunk_size,
                                             settings.lease_seconds)
            if not ids:
                slots.release()
                if not in_flight:
                    break
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            task = asyncio.create_task(run_chunk(ids))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
    finally:
        if own_pool:
            await providers.aclose()
    if run_control.get_run(engine, run_id).status == RunStatus.paused.value:
        run_control.release_all_queued(engine, run_id)
    return run_control.settle(engine, run_id, on_progress)


def run_embedded(engine: Engine, run_id: int, **kwargs: Any) -> Progress:
    with frozen_heap():          # no full collection walks the process's libraries while the run sends
        return asyncio.run(run_embedded_async(engine, run_id, **kwargs))
