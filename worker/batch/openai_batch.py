"""The OpenAI Batch API through the official SDK: upload a JSONL file (purpose "batch"), create a batch for
``/v1/chat/completions`` with a 24 h completion window, poll it, download its output and error files and
match their lines to requests by ``custom_id``.

Limits: 50,000 requests and 200 MB per input file, one model per batch (the runner groups by model).
A batch carries ``metadata.accord_batch`` = the runner's key, so a process that died between creating the
batch and recording its id finds it again instead of submitting twice.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from accord.extras import needs_extra

with needs_extra("openai"):                     # optional: the OpenAI SDK
    import openai
    from openai import AsyncOpenAI

from accord.worker.batch.base import (
    CANCELED, ERRORED, EXPIRED, SUCCEEDED, BatchItem, BatchLimits, BatchResult, BatchState, SdkBatchClient,
    SubmittedBatch, guarded,
)
from accord.worker.providers.base import ProviderError, ProviderRequest
from accord.worker.providers.common import status_error
from accord.worker.providers.openai_provider import OpenAIProvider

log = logging.getLogger("accord.worker.batch")

ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
COMPLETION_WINDOW: Literal["24h"] = "24h"
LIMITS = BatchLimits(max_requests=50_000, max_bytes=200 * 1024 * 1024)
ENDED_STATUSES = ("completed", "expired", "failed", "cancelled")
METADATA_KEY = "accord_batch"
FIND_SCAN_LIMIT = 1000          # batches listed, newest first, when looking for one we may have created
EXPIRED_CODES = ("batch_expired",)
CANCELLED_CODES = ("batch_cancelled",)


class OpenAIBatchClient(SdkBatchClient[OpenAIProvider]):
    provider = "openai"
    default_limits = LIMITS
    _client: AsyncOpenAI

    def line(self, item: BatchItem) -> dict[str, Any]:
        return {"custom_id": item.custom_id, "method": "POST", "url": ENDPOINT,
                "body": self._provider.request_body(item.request)}

    def encode(self, item: BatchItem) -> bytes:
        return json.dumps(self.line(item), separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def encoded_size(self, item: BatchItem) -> int:
        return len(self.encode(item)) + 1            # plus the newline

    async def submit(self, items: Sequence[BatchItem], key: str) -> SubmittedBatch:
        if not items:
            raise ValueError("openai batch: nothing to submit")
        content = b"\n".join(self.encode(item) for item in items) + b"\n"
        if len(items) > self.limits.max_requests or len(content) > self.limits.max_bytes:
            raise ValueError(f"openai batch {key}: {len(items)} requests / {len(content)} bytes exceed the limits "
                             f"({self.limits.max_requests} / {self.limits.max_bytes})")
        uploaded = await guarded(self.provider, lambda: self._client.files.create(
            file=(f"{key}.jsonl", content, "application/jsonl"), purpose="batch"), openai)
        try:
            batch = await guarded(self.provider, lambda: self._client.batches.create(
                input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window=COMPLETION_WINDOW,
                metadata={METADATA_KEY: key}), openai)
        except ProviderError:
            await self._delete_file(uploaded.id)
            raise
        return SubmittedBatch(external_id=batch.id, provider_status=batch.status, input_file_id=uploaded.id)

    async def _delete_file(self, file_id: str) -> None:
        try:
            await self._client.files.delete(file_id)
        except openai.OpenAIError as exc:      # an orphan input file expires on its own
            log.warning("openai batch: could not delete input file %s: %s", file_id, exc)

    async def find(self, key: str, count: int, since: datetime, exclude: set[str]) -> str | None:
        """The id of a batch created with ``metadata.accord_batch == key`` (listed newest first)."""
        async def scan() -> str | None:
            seen = 0
            async for batch in self._client.batches.list(limit=100):
                seen += 1
                if (batch.metadata or {}).get(METADATA_KEY) == key and batch.id not in exclude:
                    return batch.id
                if seen >= FIND_SCAN_LIMIT or batch.created_at < since.timestamp() - 3600:
                    return None
            return None

        return await guarded(self.provider, scan, openai)

    async def poll(self, external_id: str) -> BatchState:
        batch = await guarded(self.provider, lambda: self._client.batches.retrieve(external_id), openai)
        counts = batch.request_counts
        error = None
        if batch.errors is not None and batch.errors.data:
            error = "; ".join(f"{e.code or 'error'}: {e.message}" + (f" (line {e.line})" if e.line else "")
                              for e in batch.errors.data)
        done = int(getattr(counts, "completed", 0) or 0)
        failed = int(getattr(counts, "failed", 0) or 0)
        total = int(getattr(counts, "total", 0) or 0)
        return BatchState(external_id=batch.id, provider_status=batch.status, ended=batch.status in ENDED_STATUSES,
                          counts=Counter({"succeeded": done, "errored": failed,
                                          "processing": max(total - done - failed, 0)}),
                          output_file_id=batch.output_file_id, error_file_id=batch.error_file_id,
                          error=error or (f"batch {batch.status}" if batch.status == "failed" else None))

    async def _lines(self, file_id: str) -> list[dict[str, Any]]:
        content = await guarded(self.provider, lambda: self._client.files.content(file_id), openai)
        lines = []
        for number, raw in enumerate(content.text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                log.warning("openai batch: file %s line %d is not JSON; skipped", file_id, number)
        return lines

    async def results(self, state: BatchState, requests: Mapping[str, ProviderRequest]) -> list[BatchResult]:
        """One result per line of the output and error files whose ``custom_id`` is one of ``requests``."""
        results: list[BatchResult] = []
        for file_id in (state.output_file_id, state.error_file_id):
            if not file_id:
                continue
            for line in await self._lines(file_id):
                custom_id = str(line.get("custom_id"))
                request = requests.get(custom_id)
                if request is None:
                    log.warning("openai batch %s: result for unknown custom_id %r ignored", state.external_id,
                                custom_id)
                    continue
                results.append(self._result(custom_id, line, request))
        return results

    def _result(self, custom_id: str, line: dict[str, Any], request: ProviderRequest) -> BatchResult:
        error = line.get("error")
        response = line.get("response")
        if isinstance(error, dict) and error:
            code = str(error.get("code") or "")
            message = f"openai batch: {code or 'error'}: {error.get('message') or ''}".rstrip(": ")
            if code in EXPIRED_CODES:
                return BatchResult(custom_id, EXPIRED, error=message)
            if code in CANCELLED_CODES:
                return BatchResult(custom_id, CANCELED, error=message)
            return BatchResult(custom_id, ERRORED, error=message, retryable=True)
        if not isinstance(response, dict):
            return BatchResult(custom_id, ERRORED, error="openai batch: result line without response", retryable=True)
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if status != 200:
            err = status_error(self.provider, status, {}, body, f"HTTP {status}")
            return BatchResult(custom_id, ERRORED, error=str(err), retryable=err.retryable)
        try:
            parsed = self._provider.response_from_completion(body, request)
        except ProviderError as err:
            return BatchResult(custom_id, ERRORED, error=str(err), retryable=True)
        return BatchResult(custom_id, SUCCEEDED, response=parsed)

    async def cancel(self, external_id: str) -> None:
        await guarded(self.provider, lambda: self._client.batches.cancel(external_id), openai)
