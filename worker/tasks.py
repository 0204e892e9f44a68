"""Celery tasks of the distributed mode.

``accord.execute_chunk(run_id, chunk_id, request_ids)`` runs ``accord.worker.execute.execute_chunk`` on the
requests the chunk still owns (``accord.worker.leases``), its lease renewed by the process's heartbeat
thread (``LeaseKeeper``) while it works, then hands back whatever it did not finish (requests skipped while
the run was paused). It is idempotent: a redelivered or stale message finds its requests done or owned by
another chunk and does nothing, and ``rating.request_id`` is unique.

Each worker process keeps one ``WorkerRuntime``: a database engine, one provider pool (HTTP clients, the
local model), the Redis rate limiter, budget ledger and hot cache, and one asyncio event loop in a thread,
on which every chunk of the process runs. ``execute_chunk`` keeps its database work off that loop (in
threads), so a call the limiter admits is sent at once. Prefork children (one runtime per child, created
after the fork; the default) or task threads (``-P threads``) submit their chunk and wait.

The control queue's tasks (``accord.reconcile``, ``accord.postprocess``) are the scheduler's:
``accord.scheduler.control_tasks``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from accord.extras import needs_extra
from accord.models import db
from accord.models.settings import get_settings
from accord.worker.budget import RedisBudgetLedger
from accord.worker.celery_app import EXECUTE_TASK, app, get_distributed_settings
from accord.worker.execute import ChunkOutcome, ExecutionContext, execute_chunk
from accord.worker.heap import freeze_startup_heap
from accord.worker.leases import LeaseKeeper, release_chunk, take_ownership
from accord.worker.provider_pool import ProviderPool
from accord.worker.rate_limiter import RedisRateLimiter
from accord.worker.response_cache import RedisHotCache
from sqlalchemy import event

with needs_extra("distributed"):                # optional: Celery and redis-py run the workers
    import redis
    from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown

log = logging.getLogger("accord.worker.tasks")
T = TypeVar("T")


def _preload() -> None:
    """Import the providers' SDKs now (in the parent, before prefork forks its children), so no child pays
    for the imports on its first calls."""
    for module in ("accord.worker.providers.openai_provider", "accord.worker.providers.anthropic_provider",
                   "accord.worker.parsing", "accord.worker.prompt_templates"):
        try:
            importlib.import_module(module)
        except ImportError:   # an optional SDK missing only matters to campaigns that use it
            log.debug("preload: %s not importable", module)


_preload()


def redis_client(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(url or get_settings().redis_url, socket_timeout=10, socket_connect_timeout=5,
                                health_check_interval=30, retry_on_timeout=True)


class WorkerRuntime:
    """Everything a worker process shares across its chunks."""

    def __init__(self) -> None:
        settings = get_settings()
        dist = get_distributed_settings()
        self.pid = os.getpid()
        self.engine = db.get_engine()
        if self.engine.dialect.name == "postgresql" and not dist.worker_synchronous_commit:
            event.listen(self.engine, "connect", _async_commit)
            self.engine.dispose()   # connections made before the listener get replaced
        self.redis = redis_client(settings.redis_url)
        self.limiter = RedisRateLimiter(self.redis, headroom=dist.rate_headroom)
        self.providers = ProviderPool()
        self.hot_cache = RedisHotCache(self.redis, ttl_seconds=dist.cache_ttl_seconds)
        self.ctx = ExecutionContext(engine=self.engine, providers=self.providers,
                                    limiter=self.limiter, hot_cache=self.hot_cache,
                                    budget=RedisBudgetLedger(self.redis),
                                    max_attempts=settings.max_attempts)
        self.lease_seconds = settings.lease_seconds
        self.leases = LeaseKeeper(self.engine, self.lease_seconds)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="accord-worker-loop", daemon=True)
        self.thread.start()
        freeze_startup_heap()    # what the process holds now lives as long as it: no full collection walks it

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def execute_leased(self, chunk_id: str, request_ids: list[int]) -> ChunkOutcome:
        """Execute the chunk on the execution loop, its lease renewed by the heartbeat thread meanwhile."""
        self.leases.hold(chunk_id)
        try:
            return self.run(execute_chunk(self.ctx, request_ids))
        finally:
            self.leases.drop(chunk_id)

    def close(self) -> None:
        self.leases.stop()
        if not self.loop.is_running():
            return
        try:
            self.run(self.providers.aclose())
        except Exception:
            log.exception("closing providers failed")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _async_commit(dbapi_connection: Any, _record: Any) -> None:
    """Worker connections commit without waiting for the WAL flush. Safe for accord's invariants: a
    rating and its request's status change share one transaction, so a PostgreSQL crash can only lose
    whole recent transactions, whose requests stay queued and are redone after their lease; the event
    loop no longer stalls on an fsync per rating."""
    with dbapi_connection.cursor() as cur:
        cur.execute("SET synchronous_commit TO off")
    dbapi_connection.commit()


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def runtime() -> WorkerRuntime:
    """This process's runtime (a forked child builds its own)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime.pid != os.getpid():
            _runtime = WorkerRuntime()
        return _runtime


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    """A prefork child must not use the parent's pooled connections: drop them without closing them (the
    sockets belong to the parent) and build this child's own runtime on first use."""
    global _runtime
    for engine in list(db._engines.values()):
        engine.dispose(close=False)
    db._engines.clear()
    _runtime = None
    try:
        runtime()   # build it now, before the first chunk arrives
    except Exception:   # the database or Redis not reachable yet: the first task builds it
        log.exception("worker runtime: deferred to the first task")


@worker_process_shutdown.connect
@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.close()
        _runtime = None


def run_chunk(rt: WorkerRuntime, run_id: int, chunk_id: str, request_ids: list[int]) -> dict[str, Any]:
    ids = take_ownership(rt.engine, chunk_id, request_ids, rt.lease_seconds)
    if not ids:
        return {"run_id": run_id, "chunk_id": chunk_id, "owned": 0}
    stats = rt.limiter.stats
    before = (stats.waited_s, stats.counts["window_waits"], stats.counts["rate_limited"])
    started = time.monotonic()
    outcome = rt.execute_leased(chunk_id, ids)
    released = release_chunk(rt.engine, chunk_id)
    result = {"run_id": run_id, "chunk_id": chunk_id, "owned": len(ids), "released": released, **outcome.summary(),
              "seconds": round(time.monotonic() - started, 3),
              # limiter figures of this process while the chunk ran (other chunks of the process included)
              "limiter_wait_s": round(stats.waited_s - before[0], 3),
              "window_waits": stats.counts["window_waits"] - before[1],
              "rate_limited": stats.counts["rate_limited"] - before[2]}
    result["errors"] = outcome.errors[:3]
    return result


@app.task(name=EXECUTE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_chunk_task(run_id: int, chunk_id: str, request_ids: list[int]) -> dict[str, Any]:
    result = run_chunk(runtime(), run_id, chunk_id, request_ids)
    log.info("chunk %s of run %s: %s", chunk_id[:8], run_id,
             {k: v for k, v in result.items() if k not in ("run_id", "chunk_id", "errors") and v})
    return result
