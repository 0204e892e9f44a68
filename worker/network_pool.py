"""Provider calls on an event loop of their own, admitted by the shared rate limiter right before they are
sent.

Why: ``accord.worker.execute`` runs a chunk's requests as coroutines whose database work (state checks,
cache look-ups, storing ratings) is synchronous. On a loop shared with that work, a call the limiter has
admitted can wait behind other requests' database steps for tens to hundreds of milliseconds before its
bytes leave, so calls admitted evenly would reach the provider in bunches and break a per-second limit.

So a worker process runs two loops:
- the *execution loop* runs ``execute_chunk`` (database work, parsing, retries);
- the *network loop* (``NetworkLoop``) runs only the provider calls: it waits for admission by the Redis
  limiter and sends at once; nothing else runs on it, so admission and sending are milliseconds apart.

``NetworkProviderPool`` is the worker's ``ProviderPool``: ``get(spec)`` returns a ``PacedProvider`` whose
``complete()`` hops to the network loop, acquires the limiter there and calls the real provider. Because
``execute`` takes the provider's concurrency slot before calling ``complete()``, admission also happens
inside the slot (a call never waits for a slot after being admitted). ``execute``'s own limiter hook gets a
``FeedbackOnlyLimiter``: admission already happened in the provider, feedback (429s, usage, headers) still
reaches the shared limiter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from accord.models.schema import ModelSpec
from accord.worker.execute import estimate_tokens
from accord.worker.provider_pool import ProviderPool
from accord.worker.providers.base import Provider, ProviderError, ProviderRequest, ProviderResponse
from accord.worker.rate_limiter import RedisRateLimiter

T = TypeVar("T")


class NetworkLoop:
    """An asyncio event loop running in a daemon thread, for provider I/O only."""

    def __init__(self, name: str = "accord-network") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the network loop from another loop (cancelling the wait cancels it there)."""
        return await asyncio.wrap_future(self.submit(coro))

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)


def limit_view(spec: ModelSpec) -> ModelSpec:
    """A detached copy of the fields the limiter reads (the original belongs to a closed session)."""
    return ModelSpec(id=spec.id, name=spec.name, provider=spec.provider, model=spec.model, base_url=spec.base_url,
                     api_key_env=spec.api_key_env, rpm=spec.rpm, tpm=spec.tpm, max_concurrency=spec.max_concurrency,
                     spec_hash=spec.spec_hash)


class PacedProvider:
    """A provider whose calls run on the network loop, each admitted by the limiter just before it is sent."""

    def __init__(self, inner: Provider, spec: ModelSpec, limiter: RedisRateLimiter | None, network: NetworkLoop) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.spec = spec
        self.limiter = limiter
        self.network = network

    async def _paced(self, request: ProviderRequest) -> ProviderResponse:
        if self.limiter is not None:
            await self.limiter.acquire(self.spec, estimate_tokens(request.messages, request.params.get("max_tokens")))
        return await self.inner.complete(request)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        return await self.network.run(self._paced(request))

    async def aclose(self) -> None:
        await self.network.run(self.inner.aclose())


class NetworkProviderPool(ProviderPool):
    """The worker's provider pool: one client per model (bound to the network loop), paced per limit group."""

    def __init__(self, network: NetworkLoop, limiter: RedisRateLimiter | None, timeout: float = 60.0,
                 concurrency_override: int | None = None) -> None:
        super().__init__(timeout=timeout, concurrency_override=concurrency_override)
        self.network = network
        self.limiter = limiter
        self._paced: dict[tuple[str, int | None, int | None], PacedProvider] = {}

    def get(self, spec: ModelSpec) -> Provider:
        inner = super().get(spec)
        key = (self._key(spec), spec.rpm, spec.tpm)
        with self._lock:
            paced = self._paced.get(key)
            if paced is None or paced.inner is not inner:
                paced = PacedProvider(inner, limit_view(spec), self.limiter, self.network)
                self._paced[key] = paced
            return paced

    async def aclose(self) -> None:
        # The clients belong to the network loop: close them there.
        await self.network.run(ProviderPool.aclose(self))
        self._paced.clear()


class FeedbackOnlyLimiter:
    """``execute``'s limiter hook when admission happens in ``PacedProvider``: acquire is a no-op, feedback
    (429/529 with retry-after, usage, rate-limit headers) goes to the shared limiter."""

    def __init__(self, limiter: RedisRateLimiter) -> None:
        self.limiter = limiter

    async def acquire(self, spec: ModelSpec, estimated_tokens: int) -> None:
        return None

    def observe(self, spec: ModelSpec, *, response: ProviderResponse | None = None,
                error: ProviderError | None = None, estimated_tokens: int = 0) -> None:
        self.limiter.observe(spec, response=response, error=error, estimated_tokens=estimated_tokens)
