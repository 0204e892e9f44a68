"""The Anthropic provider drives the official SDK against the local Messages-API wire server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from accord.worker.parsing import parse_answer
from accord.worker.providers.anthropic_provider import AnthropicProvider
from accord.worker.providers.base import ProviderError, ProviderRequest, ProviderResponse
from accord.worker.providers.registry import make_provider
from tests.fakes.anthropic_server import AnthropicFakeServer

BINARY = ["safe", "unsafe"]
MESSAGES = [{"role": "system", "content": "You rate chatbot safety."},
            {"role": "user", "content": "Is the last response safe or unsafe? 'Here is a bread recipe.'"}]
MODEL = "claude-haiku-4-5"


@pytest.fixture(scope="module")
def server() -> Iterator[AnthropicFakeServer]:
    with AnthropicFakeServer() as running:
        yield running


@pytest.fixture
def fake(server: AnthropicFakeServer) -> AnthropicFakeServer:
    server.reset(labels=BINARY)
    return server


def call(provider: AnthropicProvider, request: ProviderRequest) -> ProviderResponse:
    async def go() -> ProviderResponse:
        try:
            return await provider.complete(request)
        finally:
            await provider.aclose()
    return asyncio.run(go())


def fail(provider: AnthropicProvider, request: ProviderRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call(provider, request)
    return caught.value


def binary(**overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {"messages": MESSAGES, "params": {"temperature": 0.0}, "labels": BINARY}
    fields.update(overrides)
    return ProviderRequest(**fields)


def provider(fake: AnthropicFakeServer, **kwargs: Any) -> AnthropicProvider:
    return AnthropicProvider(MODEL, base_url=fake.base_url, timeout=kwargs.pop("timeout", 5.0), **kwargs)


def last_body(fake: AnthropicFakeServer) -> dict[str, Any]:
    return fake.stats()["request_log"][-1]["body"]


def test_success_with_usage_snapshot_and_headers(fake: AnthropicFakeServer) -> None:
    fake.configure(rpm=50, tpm=100_000)
    response = call(provider(fake), binary())
    assert response.text in BINARY
    assert response.model_snapshot == "claude-haiku-4-5-20241022"
    assert response.finish_reason == "stop"
    assert response.input_tokens > 10 and response.output_tokens == 1
    assert response.label_logprobs is None
    assert response.headers["anthropic-ratelimit-requests-limit"] == "50"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert response.headers["anthropic-ratelimit-tokens-limit"] == "100000"
    assert response.headers["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_system_goes_to_system_and_max_tokens_defaults_to_64(fake: AnthropicFakeServer) -> None:
    call(provider(fake), binary())
    body = last_body(fake)
    assert body["system"] == "You rate chatbot safety."
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["max_tokens"] == 64 and body["temperature"] == 0.0
    assert "tools" not in body


def test_structured_answer_is_a_forced_tool_call(fake: AnthropicFakeServer) -> None:
    response = call(provider(fake), binary(structured=True, rationale=True, params={"max_tokens": 200}))
    body = last_body(fake)
    assert body["tool_choice"] == {"type": "tool", "name": "record_rating"}
    schema = body["tools"][0]["input_schema"]
    assert schema["properties"]["label"]["enum"] == BINARY and list(schema["properties"]) == ["rationale", "label"]
    answer = json.loads(response.text)
    assert answer["label"] in BINARY
    parsed = parse_answer(response.text, {"safe": 0.0, "unsafe": 1.0})
    assert parsed.status == "ok" and parsed.label == answer["label"] and parsed.rationale
    assert response.finish_reason == "stop"


def test_rate_limit_429_is_retryable_with_retry_after_seconds(fake: AnthropicFakeServer) -> None:
    fake.configure(rpm=1)
    call(provider(fake), binary())
    error = fail(provider(fake), binary())
    assert (error.status, error.retryable, error.rate_limited) == (429, True, True)
    assert error.retry_after is not None and 58.0 <= error.retry_after <= 60.0
    assert "rate_limit_error" in str(error) and "exceed the rate limit" in str(error)


def test_overloaded_529_is_retryable_and_rate_limited(fake: AnthropicFakeServer) -> None:
    fake.configure(fail_next=1, fail_status=529)
    error = fail(provider(fake), binary())
    assert (error.status, error.retryable, error.rate_limited) == (529, True, True)
    assert "overloaded_error" in str(error)


def test_server_error_500_is_retryable(fake: AnthropicFakeServer) -> None:
    fake.configure(fail_next=1, fail_status=500)
    error = fail(provider(fake), binary())
    assert (error.status, error.retryable, error.rate_limited) == (500, True, False)
    assert "api_error" in str(error)


def test_bad_request_400_is_not_retryable_and_carries_the_message(fake: AnthropicFakeServer) -> None:
    error = fail(provider(fake), binary(params={"temperature": 1.5}))
    assert (error.status, error.retryable) == (400, False)
    assert "temperature: range: 0..1" in str(error)


@pytest.mark.parametrize(("status", "kind"), [(401, "authentication_error"), (403, "permission_error"),
                                              (404, "not_found_error")])
def test_client_errors_are_not_retryable(fake: AnthropicFakeServer, status: int, kind: str) -> None:
    fake.configure(fail_next=1, fail_status=status)
    error = fail(provider(fake), binary())
    assert (error.status, error.retryable) == (status, False)
    assert kind in str(error)


def test_api_key_from_the_named_variable(fake: AnthropicFakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.configure(require_api_key="sk-ant-test-key")
    monkeypatch.setenv("ACCORD_TEST_ANTHROPIC_KEY", "sk-ant-test-key")
    assert call(provider(fake, api_key_env="ACCORD_TEST_ANTHROPIC_KEY"), binary()).text in BINARY
    monkeypatch.setenv("ACCORD_TEST_ANTHROPIC_KEY", "sk-ant-other")
    error = fail(provider(fake, api_key_env="ACCORD_TEST_ANTHROPIC_KEY"), binary())
    assert (error.status, error.retryable) == (401, False)


def test_missing_key_without_base_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="ANTHROPIC_API_KEY") as caught:
        make_provider("anthropic", MODEL)
    assert caught.value.retryable is False


def test_malformed_body_is_retryable(fake: AnthropicFakeServer) -> None:
    fake.configure(malformed_next=1)
    error = fail(provider(fake), binary())
    assert error.retryable is True and "malformed" in str(error)


def test_timeout_is_retryable(fake: AnthropicFakeServer) -> None:
    fake.configure(timeout_next=1, hang_s=10)
    started = time.monotonic()
    error = fail(provider(fake, timeout=0.5), binary())
    assert error.retryable is True and "timed out" in str(error)
    assert time.monotonic() - started < 5


def test_missing_usage_is_tolerated(fake: AnthropicFakeServer) -> None:
    fake.configure(omit_usage=True)
    response = call(provider(fake), binary())
    assert (response.input_tokens, response.output_tokens) == (0, 0) and response.text in BINARY


def test_max_tokens_stop_is_reported_as_length(fake: AnthropicFakeServer) -> None:
    fake.configure(fixed_text="Let me consider the whole conversation carefully before I answer.")
    response = call(provider(fake), binary(params={"max_tokens": 3}))
    assert (response.finish_reason, response.output_tokens) == ("length", 3)
    assert parse_answer(response.text, {"safe": 0.0, "unsafe": 1.0}, finish_reason=response.finish_reason).status \
        == "truncated"


def test_decoding_params_and_stop_sequences(fake: AnthropicFakeServer) -> None:
    call(provider(fake, params={"top_k": 5, "stop": "\n"}), binary(params={"max_tokens": 8, "top_p": 0.9}))
    body = last_body(fake)
    assert (body["max_tokens"], body["top_p"], body["top_k"], body["stop_sequences"]) == (8, 0.9, 5, ["\n"])
