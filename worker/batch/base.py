"""What every provider batch client offers, and the values passed between a client and the batch runner.

A client turns rating calls (``ProviderRequest`` each, named by a ``custom_id``: the rating request id) into
one provider batch, reports the batch's state, and hands back one ``BatchResult`` per request once the
batch has ended. It knows nothing of the database; ``batch_runner`` does the bookkeeping.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from accord.worker.providers.base import ProviderRequest, ProviderResponse
from accord.worker.providers.common import sdk_errors

if TYPE_CHECKING:                               # annotations only: the SDK providers need their extras
    from accord.worker.providers.sdk_provider import SdkProvider

T = TypeVar("T")
ProviderT = TypeVar("ProviderT", bound="SdkProvider[Any]")

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


BatchCount = Literal["succeeded", "errored", "expired", "cancelled", "processing"]
STORED_COUNTS: tuple[BatchCount, ...] = ("succeeded", "errored", "expired", "cancelled")  # provider_batch columns


@dataclass(frozen=True)
class BatchState:
    """A provider batch as last seen. ``ended``: the provider will change nothing more (OpenAI completed,
    expired, failed or cancelled; Anthropic ended). ``counts``: its requests in each state, as the provider
    reports them."""

    external_id: str
    provider_status: str
    ended: bool
    counts: Counter[BatchCount] = field(default_factory=Counter)
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


class SdkBatchClient(Generic[ProviderT]):
    """What the batch clients of the SDK providers share: the provider whose request bodies and SDK client they
    use, and the most one batch may hold (``default_limits`` unless told)."""

    provider: str
    default_limits: BatchLimits

    def __init__(self, provider: ProviderT, limits: BatchLimits | None = None) -> None:
        self._provider = provider
        self._client = provider.client
        self.limits = limits or self.default_limits


async def guarded(provider: str, call: Callable[[], Awaitable[T]], sdk: Any) -> T:
    """Run an SDK call, turning the SDK's errors into ``ProviderError`` (status, retryable, retry-after)."""
    with sdk_errors(provider, sdk, "batch API request timed out"):
        return await call()
