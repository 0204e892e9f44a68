"""Where a run started over the API executes: the pluggable execution backend.

- ``EmbeddedBackend`` (default): runs execute in this server process, on one background thread that owns
  an asyncio loop, with ``run_embedded_async`` (bounded concurrency, the shared execution function); a
  finished run is post-processed (metrics) on that thread's executor. One provider pool for all runs, so
  the local model is loaded once.
- ``DistributedBackend``: the run is handed to the dispatcher (``accord.scheduler.dispatcher``) that feeds
  Celery workers; this process only reads progress from the database.

A backend is told to ``start`` a run (also after a resume) and is ``shutdown`` with the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from accord.api.http.observability import ApiMetrics, run_id_var
from accord.scheduler import run_service
from accord.models.schema import ModelSpec, Rating, RatingRequest, Run
from accord.models.settings import get_settings
from accord.worker.rate_limiter import LocalRateLimiter, RateLimiter, RedisRateLimiter
from accord.scheduler.embedded import run_embedded_async
from accord.worker.provider_pool import ProviderPool
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

log = logging.getLogger("accord.api.backend")


class ExecutionBackend(Protocol):
    name: str

    def start(self, run_id: int) -> None:
        """Begin (or continue, after a resume) executing a run whose status is pending or running."""

    def shutdown(self) -> None:
        """Stop executing; runs left unfinished keep their state and can be resumed."""


def count_cached_by_provider(engine: Engine, run_id: int) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.execute(
            select(col(ModelSpec.provider), func.count())
            .select_from(Rating)
            .join(RatingRequest, col(RatingRequest.id) == col(Rating.request_id))
            .join(ModelSpec, col(ModelSpec.id) == col(RatingRequest.model_spec_id))
            .where(col(Rating.run_id) == run_id, col(Rating.cache_hit).is_(True))
            .group_by(ModelSpec.provider)).all()
    return {provider: int(n) for provider, n in rows}


class _InstrumentedProvider:
    """A provider whose every call is counted and timed in the app's metrics."""

    def __init__(self, inner: Any, spec: ModelSpec, metrics: ApiMetrics) -> None:
        self.inner = inner
        self.kind = getattr(inner, "kind", spec.provider)
        self.provider = spec.provider
        self.price_in = spec.price_input_per_mtok
        self.price_out = spec.price_output_per_mtok
        self.metrics = metrics

    async def complete(self, request: Any) -> Any:
        started = time.perf_counter()
        try:
            response = await self.inner.complete(request)
        except Exception as err:
            status = getattr(err, "status", None)
            self.metrics.observe_call(self.provider, latency_s=time.perf_counter() - started, failed=True,
                                      rate_limited=bool(getattr(err, "rate_limited", False)) or status in (429, 529))
            raise
        cost = (response.input_tokens * self.price_in + response.output_tokens * self.price_out) / 1e6
        self.metrics.observe_call(self.provider, latency_s=time.perf_counter() - started,
                                  input_tokens=response.input_tokens, output_tokens=response.output_tokens,
                                  cost_usd=cost)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class InstrumentedPool:
    """Wraps a provider pool (``accord.worker.provider_pool.ProviderPool`` or a compatible one) so that the
    providers it hands out report to the metrics."""

    def __init__(self, inner: Any, metrics: ApiMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self._wrapped: dict[int, _InstrumentedProvider] = {}
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec) -> Any:
        provider = self.inner.get(spec)
        with self._lock:
            wrapped = self._wrapped.get(id(provider))
            if wrapped is None or wrapped.inner is not provider:
                wrapped = self._wrapped[id(provider)] = _InstrumentedProvider(provider, spec, self.metrics)
            return wrapped

    @asynccontextmanager
    async def slot(self, spec: ModelSpec) -> AsyncIterator[None]:
        async with self.inner.slot(spec):
            yield

    async def aclose(self) -> None:
        await self.inner.aclose()


def default_pool_factory() -> Any:
    return ProviderPool()


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, engine: Engine, metrics: ApiMetrics | None = None,
                 pool_factory: Callable[[], Any] = default_pool_factory, *, chunk_size: int | None = None,
                 concurrency: int | None = None, postprocess: bool = True, backoff_initial: float = 0.5) -> None:
        self.engine = engine
        self.metrics = metrics or ApiMetrics()
        self.pool_factory = pool_factory
        self.chunk_size = chunk_size
        self.concurrency = concurrency
        self.postprocess = postprocess
        self.backoff_initial = backoff_initial
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: Any = None
        self._futures: dict[int, concurrent.futures.Future[None]] = {}
        self._cached_seen: dict[int, dict[str, int]] = {}
        self._lock = threading.Lock()
        # one limiter for every run of this server: two runs on one model share its limits
        self.limiter: RateLimiter | None = LocalRateLimiter()

    # -- lifecycle ----------------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="accord-embedded-runs", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def start(self, run_id: int) -> None:
        loop = self._ensure_loop()
        with self._lock:
            current = self._futures.get(run_id)
            if current is not None and not current.done():
                # Still draining (e.g. resumed right after a pause): start again once that finishes.
                current.add_done_callback(lambda _f: self.start(run_id))
                return
            self._futures[run_id] = asyncio.run_coroutine_threadsafe(self._execute(run_id), loop)

    def is_active(self, run_id: int) -> bool:
        future = self._futures.get(run_id)
        return future is not None and not future.done()

    def wait(self, run_id: int, timeout: float | None = None) -> None:
        """Block until the run's current execution (and post-processing) is over (tests, CLI)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            future = self._futures.get(run_id)
            if future is None:
                return
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                future.result(timeout=remaining)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"run {run_id} did not finish within {timeout} s") from None
            except Exception:
                pass
            if self._futures.get(run_id) is future:
                return

    def recover(self) -> list[int]:
        """Start again the embedded runs a previous server process left running (their leases are
        released by ``run_embedded_async``); returns their ids."""
        with Session(self.engine) as session:
            ids = list(session.execute(select(col(Run.id)).where(col(Run.mode) == self.name, col(Run.status) == "running")
                                       .order_by(col(Run.id))).scalars())
        for run_id in ids:
            log.info("resuming a run left running by a previous server", extra={"run_id": run_id})
            self.start(run_id)
        return ids

    def shutdown(self) -> None:
        """Stop every execution (in-flight calls are abandoned; their requests stay queued and go back to
        pending when the run is started again), then close the providers."""
        loop = self._loop
        if loop is None:
            return

        async def stop_everything() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._pool is not None:
                await self._pool.aclose()

        try:
            asyncio.run_coroutine_threadsafe(stop_everything(), loop).result(timeout=30)
        except Exception:
            log.warning("stopping the embedded runs failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None
        self._thread = None
        self._pool = None

    # -- execution ----------------------------------------------------------------------------------
    def _providers(self) -> Any:
        if self._pool is None:
            self._pool = InstrumentedPool(self.pool_factory(), self.metrics)
        return self._pool

    def _count_cached(self, run_id: int) -> None:
        try:
            counts = count_cached_by_provider(self.engine, run_id)
        except Exception:
            log.warning("counting cache hits failed", exc_info=True)
            return
        seen = self._cached_seen.setdefault(run_id, {})
        for provider, n in counts.items():
            self.metrics.observe_cached(provider, n - seen.get(provider, 0))
            seen[provider] = n

    async def _execute(self, run_id: int) -> None:
        run_id_var.set(run_id)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._count_cached, run_id)
        try:
            progress = await run_embedded_async(self.engine, run_id, chunk_size=self.chunk_size,
                                                concurrency=self.concurrency, providers=self._providers(),
                                                backoff_initial=self.backoff_initial, limiter=self.limiter)
        except asyncio.CancelledError:
            log.info("run execution stopped (server shutting down)")
            raise
        except Exception as err:
            log.exception("run execution failed")
            await loop.run_in_executor(None, run_service.record_error, self.engine, run_id, f"execution failed: {err}")
            return
        await loop.run_in_executor(None, self._count_cached, run_id)
        log.info("run execution ended", extra={"status": progress.status, "done": progress.done,
                                               "failed": progress.failed, "cached": progress.cached})
        if self.postprocess and progress.status in ("completed", "budget_exhausted", "cancelled"):
            await loop.run_in_executor(None, _postprocess, self.engine, run_id)


def _postprocess(engine: Engine, run_id: int) -> None:
    run_id_var.set(run_id)
    analysis = run_service.finish(engine, run_id)
    if analysis.ran:
        log.info("run post-processed", extra={"metrics": analysis.metrics})


class DistributedBackend:
    """Distributed mode: runs are created with mode ``distributed``; the dispatcher of ``accord scheduler``
    (``accord.scheduler.dispatcher``) picks up every unfinished distributed run, feeds its chunks to the
    Celery workers and finalizes it. Starting or resuming a run is therefore only its status in the database."""

    name = "distributed"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._limiter: RateLimiter | None = None

    @property
    def limiter(self) -> RateLimiter:
        """The workers' shared limiter (Redis), read for the limiter's current pace on progress pages."""
        if self._limiter is None:
            # redis and Celery: the distributed mode's optional dependencies, needed only when it is in use
            import redis
            from accord.worker.celery_app import get_distributed_settings

            client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._limiter = RedisRateLimiter(client, headroom=get_distributed_settings().rate_headroom)
        return self._limiter

    def start(self, run_id: int) -> None:
        log.info("run handed to the distributed scheduler", extra={"run_id": run_id})

    def shutdown(self) -> None:
        return None


def make_backend(kind: str, engine: Engine, metrics: ApiMetrics) -> ExecutionBackend:
    if kind == "embedded":
        return EmbeddedBackend(engine, metrics)
    if kind == "distributed":
        return DistributedBackend(engine)
    raise ValueError(f"execution: expected embedded or distributed, got {kind!r}")
