"""The provider abstraction: one call in, one answer out, whatever the vendor.

A provider turns a ``ProviderRequest`` (chat messages, decoding params, the allowed labels) into a
``ProviderResponse`` (text, token usage, the served model snapshot, log-probabilities over the allowed
labels where the provider exposes them). Errors are ``ProviderError`` with enough information for the
caller to decide: retry now, retry after ``retry_after`` seconds, or give up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ProviderRequest:
    messages: list[dict[str, str]]          # [{"role": "system"|"user"|"assistant", "content": str}]
    params: dict[str, Any]                   # temperature, top_p, max_tokens, seed, ...
    labels: list[str] = field(default_factory=list)   # allowed answer labels ([] = free text)
    want_logprobs: bool = False              # ask for label log-probabilities where supported
    sample_index: int = 0
    structured: bool = False                 # ask for the strongest structured answer the provider supports
    rationale: bool = False                  # the answer carries a short rationale before the label


@dataclass
class ProviderResponse:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    model_snapshot: str | None = None
    finish_reason: str | None = None         # "stop", "length", "refusal", ...
    label_logprobs: dict[str, float] | None = None   # log P(label) over the allowed labels, where available
    latency_ms: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # rate-limit headers worth feeding back to the limiter


class ProviderError(Exception):
    """A failed provider call.

    ``retryable``: transient (429, 5xx, 529, timeouts, connection errors); ``retry_after`` in seconds when
    the provider said how long to wait; ``status`` the HTTP status where there was one.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.rate_limited = rate_limited


class Provider(Protocol):
    kind: str

    async def complete(self, request: ProviderRequest) -> ProviderResponse: ...

    async def aclose(self) -> None: ...
