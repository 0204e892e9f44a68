"""Helpers the HTTP providers share: API keys from the environment, rate-limit headers, Retry-After,
and turning an HTTP failure (or a vendor SDK's error, ``sdk_errors``) into a ``ProviderError`` the caller can
act on."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any

from accord.worker.providers.base import ProviderError

PLACEHOLDER_KEY = "EMPTY"     # what OpenAI-compatible local servers accept when they need no key
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")


def resolve_api_key(api_key_env: str | None, base_url: str | None, provider: str) -> str:
    """The API key from the environment variable *named* ``api_key_env``.

    Unset (or no name) with a ``base_url`` (a local compatible server): the placeholder "EMPTY".
    Unset without a ``base_url``: a non-retryable ProviderError naming the variable. The key value
    itself is never logged or stored beyond the SDK client."""
    if api_key_env:
        value = os.environ.get(api_key_env)
        if value:
            return value
    if base_url:
        return PLACEHOLDER_KEY
    name = api_key_env or "(no variable named: set api_key_env)"
    raise ProviderError(f"{provider}: the API key environment variable {name} is not set", retryable=False)


def pick_headers(headers: Mapping[str, str] | Any, names: Iterable[str] = (), prefixes: Iterable[str] = ()) -> dict[str, str]:
    """The headers worth feeding back to a rate limiter: those named, or starting with a prefix
    (case-insensitive; keys returned in lower case)."""
    wanted = {name.lower() for name in names}
    starts = tuple(prefix.lower() for prefix in prefixes)
    picked: dict[str, str] = {}
    for key, value in headers.items():
        low = key.lower()
        if low in wanted or (starts and low.startswith(starts)):
            picked[low] = value
    return picked


def parse_retry_after(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (milliseconds) or ``retry-after`` (seconds or an HTTP
    date); None when neither is present or readable."""
    get = headers.get
    millis = get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def body_message(body: object, fallback: str) -> str:
    """The provider's own error message from an error body (OpenAI ``{"error": {"message"}}`` or its
    inner dict, Anthropic ``{"type": "error", "error": {"type", "message"}}``), else ``fallback``."""
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str) and inner:
            return inner
        if body.get("message"):
            return str(body["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return fallback


def body_error_type(body: object) -> str | None:
    if isinstance(body, Mapping):
        inner = body.get("error")
        if isinstance(inner, Mapping) and inner.get("type"):
            return str(inner["type"])
        if body.get("type") and body.get("type") != "error":
            return str(body["type"])
    return None


def status_error(provider: str, status: int, headers: Mapping[str, str] | Any, body: object,
                 fallback: str) -> ProviderError:
    """A ProviderError for an HTTP error status.

    429: retryable, rate limited, ``retry_after`` from the headers. 529 / ``overloaded_error``: retryable,
    rate limited. 408, 409 and 5xx: retryable. Other 4xx (400, 401, 403, 404, 422, ...): not retryable;
    the message carries the provider's own error message."""
    message = body_message(body, fallback)
    retry_after = parse_retry_after(headers)
    error_type = body_error_type(body)
    text = f"{provider}: HTTP {status}" + (f" {error_type}" if error_type else "") + f": {message}"
    kept = pick_headers(headers, ("retry-after", "retry-after-ms"), ("x-ratelimit-", "anthropic-ratelimit-")) \
        if headers is not None else {}
    if status == 429:
        return ProviderError(text, retryable=True, retry_after=retry_after, status=status, rate_limited=True,
                             headers=kept)
    if status == 529 or error_type == "overloaded_error":
        return ProviderError(text, retryable=True, retry_after=retry_after, status=status, rate_limited=True,
                             headers=kept)
    if status in (408, 409) or status >= 500:
        return ProviderError(text, retryable=True, retry_after=retry_after, status=status, headers=kept)
    return ProviderError(text, retryable=False, status=status, headers=kept)


def malformed_error(provider: str, detail: str, status: int | None = 200) -> ProviderError:
    return ProviderError(f"{provider}: malformed response body (not the expected JSON): {detail}",
                         retryable=True, status=status)


@contextmanager
def sdk_errors(provider: str, sdk: Any, timed_out: str) -> Iterator[None]:
    """Turn the errors of a vendor SDK's call into ``ProviderError``: ``sdk`` is the ``openai`` or ``anthropic``
    module (their error classes share names). A timeout (``<provider>: <timed_out> (<error>)``) and a
    connection error are retryable, an error status is what ``status_error`` makes of it, and an answer the SDK
    cannot read is malformed."""
    try:
        yield
    except sdk.APITimeoutError as exc:
        raise ProviderError(f"{provider}: {timed_out} ({exc})", retryable=True) from exc
    except sdk.APIConnectionError as exc:
        raise ProviderError(f"{provider}: connection error: {exc}", retryable=True) from exc
    except sdk.APIStatusError as exc:
        raise status_error(provider, exc.status_code, exc.response.headers, exc.body, exc.message) from exc
    except sdk.APIResponseValidationError as exc:
        raise malformed_error(provider, str(exc), exc.status_code) from exc


def is_reasoning_model(model: str) -> bool:
    """OpenAI reasoning models (o1, o3, o4-mini, gpt-5*): no temperature/top_p, max_completion_tokens."""
    name = model.rsplit("/", 1)[-1].lower()
    return name.startswith(REASONING_MODEL_PREFIXES)
