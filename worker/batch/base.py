"""What every provider batch client offers, and the values passed between a client and the batch runner.

A client turns rating calls (``ProviderRequest`` each, named by a ``custom_id``: the rating request id) into
one provider batch, reports the batch's state, and hands back one ``BatchResult`` per request once the
batch has ended. It knows nothing of the database; ``batch_runner`` does the bookkeeping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from accord.worker.providers.base import ProviderError, ProviderRequest, ProviderResponse
from accord.worker.providers.common import malformed_error, status_error

T = TypeVar("T")

SUCCEEDED = "succeeded"
ERRORED = "errored"
EXPIRED = "expired"
CANCELED = "canceled"
MISSING = "missing"      # the batch ended without a result line for the request


@dataclass(frozen=True)
class BatchLimits:
    """The most a single provider batch may hold."""

    max_requests: int
    max_bytes: int


@dataclass(frozen=True)
class BatchItem:
    custom_id: str
    request: ProviderRequest


@dataclass(frozen=True)
class SubmittedBatch:
    external_id: str
    provider_status: str
    input_file_id: str | None = None


@dataclass(frozen=True)
class BatchState:
    """A provider batch as last seen. ``ended``: the provider will change nothing more (OpenAI completed,
    expired, failed or cancelled; Anthropic ended)."""

    external_id: str
    provider_status: str
    ended: bool
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    cancelled: int = 0
    processing: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    error: str | None = None          # why the whole batch failed, when it did


@dataclass(frozen=True)
class BatchResult:
    """One request's result: ``kind`` is succeeded / errored / expired / canceled; ``response`` for a
    success; ``error`` and ``retryable`` for an error (a transient one is worth resubmitting)."""

    custom_id: str
    kind: str
    response: ProviderResponse | None = None
    error: str | None = None
    retryable: bool = True


class BatchClient(Protocol):
    provider: str
    limits: BatchLimits

    def encoded_size(self, item: BatchItem) -> int: ...

    async def submit(self, items: Sequence[BatchItem], key: str) -> SubmittedBatch: ...

    async def find(self, key: str, count: int, since: datetime, exclude: set[str]) -> str | None: ...

    async def poll(self, external_id: str) -> BatchState: ...

    async def results(self, state: BatchState, requests: Mapping[str, ProviderRequest]) -> list[BatchResult]: ...

    async def cancel(self, external_id: str) -> None: ...


async def guarded(provider: str, call: Callable[[], Awaitable[T]], sdk: Any) -> T:
    """Run an SDK call, turning the SDK's errors into ``ProviderError`` (status, retryable, retry-after)."""
    try:
        return await call()
    except sdk.APITimeoutError as exc:
        raise ProviderError(f"{provider}: batch API request timed out ({exc})", retryable=True) from exc
    except sdk.APIConnectionError as exc:
        raise ProviderError(f"{provider}: connection error: {exc}", retryable=True) from exc
    except sdk.APIStatusError as exc:
        raise status_error(provider, exc.status_code, exc.response.headers, exc.body, exc.message) from exc
    except sdk.APIResponseValidationError as exc:
        raise malformed_error(provider, str(exc), exc.status_code) from exc
