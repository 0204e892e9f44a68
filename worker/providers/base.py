"""The provider abstraction: one call in, one answer out, whatever the vendor.

A provider turns a ``ProviderRequest`` (chat messages, decoding params, the allowed labels) into a
``ProviderResponse`` (text, token usage, the served model snapshot, log-probabilities over the allowed
labels where the provider exposes them). Errors are ``ProviderError`` with enough information for the
caller to decide: retry now, retry after ``retry_after`` seconds, or give up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


STRUCTURED_MIN_TOKENS = 32      # a JSON object or tool call around the label needs room beyond the label
RATIONALE_MIN_TOKENS = 384      # "analyze, then rate": room for the short rationale before the label
REASONING_MIN_TOKENS = 2048     # reasoning models spend hidden tokens before the answer


def output_budget(max_tokens: int | None, *, structured: bool = False, rationale: bool = False,
                  reasoning: bool = False) -> int | None:
    """The output-token cap to send. A template's cap is sized for a bare label; a structured answer, a
    rationale or a reasoning model's hidden thinking would be cut off by it and come back truncated."""
    if max_tokens is None:
        return None
    floor = 0
    if structured:
        floor = STRUCTURED_MIN_TOKENS
    if rationale:
        floor = max(floor, RATIONALE_MIN_TOKENS)
    if reasoning:
        floor = max(floor, REASONING_MIN_TOKENS)
    return max(int(max_tokens), floor)


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
    input_tokens: int = 0                    # every input token of the call, cached or not
    output_tokens: int = 0
    model_snapshot: str | None = None
    finish_reason: str | None = None         # "stop", "length", "refusal", ...
    label_logprobs: dict[str, float] | None = None   # log P(label) over the allowed labels, where available
    latency_ms: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # rate-limit headers worth feeding back to the limiter
    cached_input_tokens: int = 0             # of input_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0              # of input_tokens: written to the prompt cache (Anthropic)


class ProviderError(Exception):
    """A failed provider call.

    ``retryable``: transient (429, 5xx, 529, timeouts, connection errors); ``retry_after`` in seconds when
    the provider said how long to wait; ``status`` the HTTP status where there was one.
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None, rate_limited: bool = False,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.rate_limited = rate_limited
        self.headers = headers or {}   # rate-limit headers of the error response, for the limiter


class Provider(Protocol):
    kind: str

    async def complete(self, request: ProviderRequest) -> ProviderResponse: ...

    async def aclose(self) -> None: ...
