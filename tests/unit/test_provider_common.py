"""Shared provider helpers: API keys, Retry-After, error-status mapping, the registry."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from accord.worker.providers.base import ProviderError
from accord.worker.providers.common import (PLACEHOLDER_KEY, body_message, is_reasoning_model, parse_retry_after,
                                            pick_headers, resolve_api_key, status_error)
from accord.worker.providers.registry import make_provider


def test_api_key_is_read_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCORD_KEY_UNDER_TEST", "sk-123")
    assert resolve_api_key("ACCORD_KEY_UNDER_TEST", None, "openai") == "sk-123"
    monkeypatch.delenv("ACCORD_KEY_UNDER_TEST")
    assert resolve_api_key("ACCORD_KEY_UNDER_TEST", "http://127.0.0.1:8000/v1", "openai") == PLACEHOLDER_KEY
    assert resolve_api_key(None, "http://127.0.0.1:8000/v1", "openai") == PLACEHOLDER_KEY
    with pytest.raises(ProviderError, match="ACCORD_KEY_UNDER_TEST is not set") as caught:
        resolve_api_key("ACCORD_KEY_UNDER_TEST", None, "openai")
    assert caught.value.retryable is False


def test_retry_after_from_milliseconds_seconds_and_http_date() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "20"}) == 20.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    now = time.time()
    date = formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after({"retry-after": formatdate(now - 30, usegmt=True)}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(("status", "body", "retryable", "rate_limited"), [
    (429, {"message": "Rate limit reached", "type": "requests"}, True, True),
    (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, True, True),
    (500, {"type": "error", "error": {"type": "api_error", "message": "Internal"}}, True, False),
    (503, "Service Unavailable", True, False),
    (408, None, True, False),
    (400, {"message": "Invalid 'temperature'", "type": "invalid_request_error"}, False, False),
    (401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, False, False),
    (403, None, False, False),
    (404, {"error": {"message": "model not found"}}, False, False),
    (422, {"message": "unprocessable"}, False, False),
])
def test_status_error_mapping(status: int, body: object, retryable: bool, rate_limited: bool) -> None:
    error = status_error("openai", status, {"retry-after": "3"}, body, "fallback text")
    assert (error.status, error.retryable, error.rate_limited) == (status, retryable, rate_limited)
    assert error.retry_after == (3.0 if retryable else None)
    assert body_message(body, "fallback text") in str(error)


def test_body_message_variants() -> None:
    assert body_message({"error": {"message": "inner"}}, "x") == "inner"
    assert body_message({"message": "flat"}, "x") == "flat"
    assert body_message({"error": "plain"}, "x") == "plain"
    assert body_message("<html>Bad Gateway</html>", "x") == "<html>Bad Gateway</html>"
    assert body_message(None, "x") == "x"


def test_pick_headers_by_name_and_prefix() -> None:
    headers = {"X-RateLimit-Remaining-Requests": "5", "anthropic-ratelimit-tokens-remaining": "100",
               "content-type": "application/json", "Retry-After": "2"}
    assert pick_headers(headers, ["x-ratelimit-remaining-requests", "retry-after"], ["anthropic-ratelimit-"]) == {
        "x-ratelimit-remaining-requests": "5", "anthropic-ratelimit-tokens-remaining": "100", "retry-after": "2"}


def test_reasoning_models() -> None:
    assert [is_reasoning_model(m) for m in ("o1", "o3-mini", "o4-mini-2025-04-16", "gpt-5-nano", "openai/o3")] == \
        [True] * 5
    assert [is_reasoning_model(m) for m in ("gpt-4o-mini", "gpt-4.1", "llama-3-8b")] == [False] * 3


def test_registry_kinds_and_unknown_kind(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert make_provider("OpenAI", "gpt-4o-mini", base_url="http://127.0.0.1:9/v1").kind == "openai"
    assert make_provider("anthropic", "claude-haiku-4-5", base_url="http://127.0.0.1:9").kind == "anthropic"
    with pytest.raises(ProviderError, match="unknown provider kind 'cohere'"):
        make_provider("cohere", "command-r")
    with pytest.raises(ProviderError, match="does not exist"):
        make_provider("local", "x", path=str(tmp_path / "missing.gguf"))


def test_output_budget_makes_room_for_envelopes_and_reasoning() -> None:
    from accord.worker.providers.base import output_budget

    assert output_budget(4) == 4
    assert output_budget(None, structured=True) is None
    assert output_budget(4, structured=True) == 32
    assert output_budget(4, structured=True, rationale=True) == 384
    assert output_budget(4, reasoning=True) == 2048
    assert output_budget(5000, reasoning=True) == 5000
