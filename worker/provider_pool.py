"""Providers per process: one client per model spec (the local model is loaded once per process), and a
concurrency cap per model spec so a slow or rate-limited model cannot take every slot."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from accord.models.schema import ModelSpec, endpoint_identity
from accord.worker.providers.base import Provider
from accord.worker.providers.registry import make_provider


class ProviderPool:
    def __init__(self, timeout: float = 60.0, concurrency_override: int | None = None) -> None:
        self._providers: dict[str, Provider] = {}
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()
        self.timeout = timeout
        self.concurrency_override = concurrency_override

    def get(self, spec: ModelSpec) -> Provider:
        key = endpoint_identity(spec)
        with self._lock:
            if key not in self._providers:
                self._providers[key] = make_provider(
                    spec.provider, spec.model, base_url=spec.base_url, api_key_env=spec.api_key_env,
                    path=(spec.params or {}).get("path"), timeout=self.timeout)
            return self._providers[key]

    def concurrency(self, spec: ModelSpec) -> int:
        """Calls of this model at once in one event loop."""
        return self.concurrency_override or max(1, spec.max_concurrency)

    @asynccontextmanager
    async def slot(self, spec: ModelSpec) -> AsyncIterator[None]:
        # One semaphore per model per event loop (Celery tasks each run their own loop).
        loop = asyncio.get_running_loop()
        key = endpoint_identity(spec)
        with self._lock:
            per_loop = self._semaphores.setdefault(loop, {})
            sem = per_loop.get(key)
            if sem is None:
                sem = asyncio.Semaphore(self.concurrency(spec))
                per_loop[key] = sem
        async with sem:
            yield

    async def aclose(self) -> None:
        for provider in list(self._providers.values()):
            await provider.aclose()
        self._providers.clear()
        self._semaphores.clear()
