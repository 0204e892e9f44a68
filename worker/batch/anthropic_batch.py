"""Anthropic Message Batches through the official SDK: ``messages.batches.create / retrieve / results /
cancel / list``. Each request is ``{"custom_id", "params"}`` with the same Messages body a realtime call
sends; results come back per ``custom_id`` as succeeded / errored / canceled / expired.

Limits: 100,000 requests or 256 MB per batch. Message Batches carry no metadata, so a process that died
between creating a batch and recording its id looks for it among the batches created since it started
submitting with the same number of requests and no owner in the database (the oldest such one).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from accord.extras import needs_extra

with needs_extra("anthropic"):                  # optional: the Anthropic SDK
    import anthropic
    from anthropic import AsyncAnthropic

from accord.worker.batch.base import (
    CANCELED, ERRORED, EXPIRED, SUCCEEDED, BatchItem, BatchLimits, BatchResult, BatchState, SdkBatchClient,
    SubmittedBatch, guarded,
)
from accord.worker.providers.anthropic_provider import AnthropicProvider
from accord.worker.providers.base import ProviderError, ProviderRequest

log = logging.getLogger("accord.worker.batch")

LIMITS = BatchLimits(max_requests=100_000, max_bytes=256 * 1024 * 1024)
# error types worth another try in a later batch (the rest, e.g. invalid_request_error, would fail again)
RETRYABLE_ERRORS = ("api_error", "overloaded_error", "rate_limit_error", "timeout_error")
FIND_SCAN_LIMIT = 1000
CLOCK_SKEW = timedelta(minutes=2)


class AnthropicBatchClient(SdkBatchClient[AnthropicProvider]):
    provider = "anthropic"
    default_limits = LIMITS
    _client: AsyncAnthropic

    def entry(self, item: BatchItem) -> dict[str, Any]:
        return {"custom_id": item.custom_id, "params": self._provider.request_body(item.request)}

    def encoded_size(self, item: BatchItem) -> int:
        return len(json.dumps(self.entry(item), separators=(",", ":"), ensure_ascii=False).encode("utf-8")) + 1

    async def submit(self, items: Sequence[BatchItem], key: str) -> SubmittedBatch:
        if not items:
            raise ValueError("anthropic batch: nothing to submit")
        entries = [self.entry(item) for item in items]
        size = sum(self.encoded_size(item) for item in items)
        if len(items) > self.limits.max_requests or size > self.limits.max_bytes:
            raise ValueError(f"anthropic batch {key}: {len(items)} requests / {size} bytes exceed the limits "
                             f"({self.limits.max_requests} / {self.limits.max_bytes})")
        batch = await guarded(self.provider, lambda: self._client.messages.batches.create(
            requests=entries), anthropic)  # type: ignore[arg-type]  # plain dicts of the SDK's request shape
        return SubmittedBatch(external_id=batch.id, provider_status=batch.processing_status)

    async def find(self, key: str, count: int, since: datetime, exclude: set[str]) -> str | None:
        """The oldest batch created after ``since`` (less clock skew) holding ``count`` requests that is
        not in ``exclude`` (batches the database already owns)."""
        async def scan() -> str | None:
            found: list[tuple[datetime, str]] = []
            seen = 0
            async for batch in self._client.messages.batches.list(limit=100):
                seen += 1
                if batch.created_at < since - CLOCK_SKEW or seen > FIND_SCAN_LIMIT:
                    break
                counts = batch.request_counts
                total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
                if total == count and batch.id not in exclude:
                    found.append((batch.created_at, batch.id))
            return min(found)[1] if found else None

        return await guarded(self.provider, scan, anthropic)

    async def poll(self, external_id: str) -> BatchState:
        batch = await guarded(self.provider, lambda: self._client.messages.batches.retrieve(external_id), anthropic)
        counts = batch.request_counts
        return BatchState(external_id=batch.id, provider_status=batch.processing_status,
                          ended=batch.processing_status == "ended",
                          counts=Counter({"succeeded": counts.succeeded, "errored": counts.errored,
                                          "expired": counts.expired, "cancelled": counts.canceled,
                                          "processing": counts.processing}))

    async def results(self, state: BatchState, requests: Mapping[str, ProviderRequest]) -> list[BatchResult]:
        async def read() -> list[BatchResult]:
            out: list[BatchResult] = []
            async for entry in await self._client.messages.batches.results(state.external_id):
                request = requests.get(entry.custom_id)
                if request is None:
                    log.warning("anthropic batch %s: result for unknown custom_id %r ignored", state.external_id,
                                entry.custom_id)
                    continue
                out.append(self._result(entry.custom_id, entry.result, request))
            return out

        return await guarded(self.provider, read, anthropic)

    def _result(self, custom_id: str, result: Any, request: ProviderRequest) -> BatchResult:
        kind = getattr(result, "type", None)
        if kind == "succeeded":
            try:
                response = self._provider.response_from_message(
                    result.message, structured=bool(request.structured and request.labels))
            except ProviderError as err:
                return BatchResult(custom_id, ERRORED, error=str(err), retryable=True)
            return BatchResult(custom_id, SUCCEEDED, response=response)
        if kind == "errored":
            inner = getattr(getattr(result, "error", None), "error", None)
            error_type = str(getattr(inner, "type", "") or "error")
            message = f"anthropic batch: {error_type}: {getattr(inner, 'message', '') or ''}".rstrip(": ")
            return BatchResult(custom_id, ERRORED, error=message, retryable=error_type in RETRYABLE_ERRORS)
        if kind == "expired":
            return BatchResult(custom_id, EXPIRED, error="anthropic batch: the request expired before processing")
        if kind == "canceled":
            return BatchResult(custom_id, CANCELED, error="anthropic batch: the request was canceled")
        return BatchResult(custom_id, ERRORED, error=f"anthropic batch: unknown result type {kind!r}")

    async def cancel(self, external_id: str) -> None:
        await guarded(self.provider, lambda: self._client.messages.batches.cancel(external_id), anthropic)
