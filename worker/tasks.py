"""Celery tasks of the distributed mode.

``accord.execute_chunk(run_id, chunk_id, request_ids)`` runs ``accord.worker.execute.execute_chunk`` on the
requests the chunk still owns, renewing their lease while it works, then hands back whatever it did not
finish (requests skipped while the run was paused). It is idempotent: a redelivered or stale message finds
its requests done or owned by another chunk and does nothing, and ``rating.request_id`` is unique.

Each worker process keeps one ``WorkerRuntime``: a database engine, one provider pool (HTTP clients, the
local model), the Redis rate limiter and hot cache, and two asyncio event loops in threads: the execution
loop, on which every chunk of the process runs, and the network loop, on which provider calls are admitted
by the limiter and sent (``accord.worker.network_pool``). Prefork children (one runtime per child, created
after the fork; the default) or task threads (``-P threads``) submit their chunk and wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import asdict
from typing import Any, TypeVar

import redis
from accord.models import db
from accord.models.settings import get_settings
from accord.scheduler.chunk_leases import release_chunk, renew_lease, take_ownership
from accord.worker.celery_app import (
    EXECUTE_TASK,
    POSTPROCESS_TASK,
    RECONCILE_TASK,
    app,
    get_distributed_settings,
)
from accord.worker.budget import RedisBudgetLedger
from accord.worker.execute import ChunkOutcome, ExecutionContext, execute_chunk
from accord.worker.network_pool import FeedbackOnlyLimiter, NetworkLoop, NetworkProviderPool
from accord.worker.rate_limiter import RedisRateLimiter
from accord.worker.response_cache import RedisHotCache
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown
from sqlalchemy import event

log = logging.getLogger("accord.worker.tasks")
T = TypeVar("T")
EXECUTION_NICENESS = 5


def _preload() -> None:
    """Import the providers' SDKs and run one OpenAI SDK request through an in-memory transport, now (in
    the parent, before prefork forks its children): otherwise each process's first calls pay for lazy
    imports (the SDK's request path, anyio's backend, response models) on the event loop, after the rate
    limiter admitted them, and reach the provider in a bunch."""
    import importlib

    for module in ("accord.worker.providers.openai_provider", "accord.worker.providers.anthropic_provider",
                   "accord.worker.parsing", "accord.worker.prompt_templates"):
        try:
            importlib.import_module(module)
        except ImportError:   # an optional SDK missing only matters to campaigns that use it
            log.debug("preload: %s not importable", module)
    try:
        asyncio.run(_exercise_openai_sdk())
    except Exception as err:  # noqa: BLE001 - best effort: a changed SDK only costs the first calls some latency
        log.debug("preload: OpenAI SDK warm-up skipped (%s)", err)


async def _exercise_openai_sdk() -> None:
    import httpx2
    import openai

    body = {"id": "warm", "object": "chat.completion", "created": 0, "model": "warm-up",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": "{\"label\": \"1\"}"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, json=body))
    client = openai.AsyncOpenAI(api_key="warm-up", base_url="http://warm-up.invalid/v1", max_retries=0,
                                http_client=httpx2.AsyncClient(transport=transport))
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="warm-up", messages=[{"role": "user", "content": "x"}], max_tokens=1, temperature=0.0,
            logprobs=True, top_logprobs=2, seed=1,
            response_format={"type": "json_schema", "json_schema": {"name": "rating", "strict": True, "schema": {
                "type": "object", "properties": {"label": {"type": "string", "enum": ["1"]}},
                "required": ["label"], "additionalProperties": False}}})
        parsed = raw.parse()
        if asyncio.iscoroutine(parsed):
            await parsed
    finally:
        await client.close()


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
        # The network loop's thread must get the GIL back quickly from the execution loop's thread (CPU-bound
        # database and parsing steps), or admitted calls wait in the SDK: hand it over every 0.5 ms, not 5 ms.
        sys.setswitchinterval(0.0005)
        self.engine = db.get_engine()
        if self.engine.dialect.name == "postgresql" and not dist.worker_synchronous_commit:
            event.listen(self.engine, "connect", _async_commit)
            self.engine.dispose()   # connections made before the listener get replaced
        self.redis = redis_client(settings.redis_url)
        self.limiter = RedisRateLimiter(self.redis, headroom=dist.rate_headroom)
        self.network = NetworkLoop()
        self.providers = NetworkProviderPool(self.network, self.limiter)
        self.hot_cache = RedisHotCache(self.redis, ttl_seconds=dist.cache_ttl_seconds)
        self.ctx = ExecutionContext(engine=self.engine, providers=self.providers,
                                    limiter=FeedbackOnlyLimiter(self.limiter), hot_cache=self.hot_cache,
                                    budget=RedisBudgetLedger(self.redis),
                                    max_attempts=settings.max_attempts)
        self.lease_seconds = settings.lease_seconds
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run_execution_loop, name="accord-worker-loop", daemon=True)
        self.thread.start()
        try:   # this loop's first SDK request (thread pools, connection machinery) before any real call
            self.network.submit(_exercise_openai_sdk()).result(30)
        except Exception as err:  # noqa: BLE001 - best effort, as above
            log.debug("network loop warm-up skipped (%s)", err)

    def _run_execution_loop(self) -> None:
        # The execution loop's CPU-bound steps yield the CPU to the network loop's thread (which only sends
        # admitted calls and reads answers): a lower priority for this thread alone (Linux: per thread).
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EXECUTION_NICENESS)
        except (AttributeError, OSError):
            pass
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def execute_leased(self, chunk_id: str, request_ids: list[int]) -> ChunkOutcome:
        """Execute the chunk, renewing its lease every third of the lease while it runs."""
        task = asyncio.ensure_future(execute_chunk(self.ctx, request_ids))
        every = max(self.lease_seconds / 3.0, 1.0)
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            try:
                await asyncio.to_thread(renew_lease, self.engine, chunk_id, self.lease_seconds)
            except Exception:   # the database briefly away: the lease may lapse, the chunk stays correct
                log.exception("chunk %s: lease renewal failed", chunk_id)

    def close(self) -> None:
        if not self.loop.is_running():
            return
        try:
            self.run(self.providers.aclose())
        except Exception:
            log.exception("closing providers failed")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.network.stop()


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
    before = (rt.limiter.stats.waited_s, rt.limiter.stats.window_waits, rt.limiter.stats.rate_limited)
    started = time.monotonic()
    outcome = rt.run(rt.execute_leased(chunk_id, ids))
    released = release_chunk(rt.engine, chunk_id)
    result = {"run_id": run_id, "chunk_id": chunk_id, "owned": len(ids), "released": released, **asdict(outcome),
              "seconds": round(time.monotonic() - started, 3),
              # limiter figures of this process while the chunk ran (other chunks of the process included)
              "limiter_wait_s": round(rt.limiter.stats.waited_s - before[0], 3),
              "window_waits": rt.limiter.stats.window_waits - before[1],
              "rate_limited": rt.limiter.stats.rate_limited - before[2]}
    result["errors"] = outcome.errors[:3]
    return result


@app.task(name=EXECUTE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_chunk_task(run_id: int, chunk_id: str, request_ids: list[int]) -> dict[str, Any]:
    result = run_chunk(runtime(), run_id, chunk_id, request_ids)
    log.info("chunk %s of run %s: %s", chunk_id[:8], run_id,
             {k: v for k, v in result.items() if k not in ("run_id", "chunk_id", "errors") and v})
    return result


@app.task(name=RECONCILE_TASK, acks_late=True, ignore_result=True)
def reconcile_task() -> dict[str, Any]:
    from accord.scheduler.reconcile import reconcile_once

    report = reconcile_once(runtime().engine, grace_seconds=get_distributed_settings().postprocess_grace_seconds)
    return {"released": report.released, "finalized": report.finalized, "postprocess_sent": report.postprocess_sent}


@app.task(name=POSTPROCESS_TASK, acks_late=True, ignore_result=True)
def postprocess_task(run_id: int) -> bool:
    from accord.scheduler.reconcile import postprocess_once

    return postprocess_once(runtime().engine, run_id)
