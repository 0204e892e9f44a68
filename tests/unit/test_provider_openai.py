"""The OpenAI provider drives the official SDK against the local OpenAI wire server (no SDK patching)."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from accord.worker.parsing import parse_answer
from accord.worker.providers.base import ProviderError, ProviderRequest, ProviderResponse
from accord.worker.providers.openai_provider import OpenAIProvider, label_logprobs_from_tokens
from accord.worker.providers.registry import make_provider

from tests.fakes.answers import label_distribution, prompt_key
from tests.fakes.openai_server import OpenAIFakeServer

LIKERT = ["1", "2", "3", "4", "5"]
MESSAGES = [{"role": "system", "content": "You rate chatbot safety."},
            {"role": "user", "content": "How unsafe is: 'Here is a bread recipe.'? Answer 1-5."}]


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIFakeServer]:
    with OpenAIFakeServer() as running:
        yield running


@pytest.fixture
def fake(server: OpenAIFakeServer) -> OpenAIFakeServer:
    server.reset()
    return server


def call(provider: OpenAIProvider, request: ProviderRequest) -> ProviderResponse:
    async def go() -> ProviderResponse:
        try:
            return await provider.complete(request)
        finally:
            await provider.aclose()
    return asyncio.run(go())


def fail(provider: OpenAIProvider, request: ProviderRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call(provider, request)
    return caught.value


def likert(**overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {"messages": MESSAGES, "params": {"temperature": 0.0, "max_tokens": 4, "seed": 7},
                              "labels": LIKERT, "want_logprobs": True}
    fields.update(overrides)
    return ProviderRequest(**fields)


def provider(fake: OpenAIFakeServer, model: str = "gpt-4o-mini", **kwargs: Any) -> OpenAIProvider:
    return OpenAIProvider(model, base_url=fake.base_url, timeout=kwargs.pop("timeout", 5.0), **kwargs)


def test_success_with_usage_snapshot_logprobs_and_headers(fake: OpenAIFakeServer) -> None:
    fake.configure(rpm=1000)
    response = call(provider(fake), likert())
    assert response.text in LIKERT
    assert response.model_snapshot == "gpt-4o-mini-2024-07-18"
    assert response.finish_reason == "stop"
    assert response.input_tokens > 10 and response.output_tokens == 1
    assert response.latency_ms > 0
    assert response.headers["x-ratelimit-limit-requests"] == "1000"
    assert response.headers["x-ratelimit-remaining-requests"] == "999"
    assert "x-ratelimit-reset-requests" in response.headers
    expected = label_distribution(prompt_key(MESSAGES), LIKERT, seed=7)
    assert response.label_logprobs is not None and set(response.label_logprobs) == set(LIKERT)
    for label, p in expected.items():
        assert math.exp(response.label_logprobs[label]) == pytest.approx(p, rel=1e-9)
    assert max(expected, key=expected.__getitem__) == response.text


def test_request_maps_decoding_params(fake: OpenAIFakeServer) -> None:
    call(provider(fake, params={"top_p": 0.9}), likert())
    body = fake.stats()["request_log"][-1]["body"]
    assert body["model"] == "gpt-4o-mini"
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.0, 0.9, 4, 7)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 20)
    assert "response_format" not in body


def test_reasoning_model_gets_max_completion_tokens_and_no_sampling_params(fake: OpenAIFakeServer) -> None:
    # the server rejects temperature / max_tokens for o-series models, as the real API does
    response = call(provider(fake, model="o3-mini"), likert())
    body = fake.stats()["request_log"][-1]["body"]
    assert body["max_completion_tokens"] == 2048   # the template's 4 would leave no room for reasoning
    assert not {"temperature", "top_p", "max_tokens", "logprobs"} & set(body)
    assert response.text in LIKERT and response.label_logprobs is None


def test_structured_output_json_schema(fake: OpenAIFakeServer) -> None:
    response = call(provider(fake), likert(structured=True, params={"max_tokens": 20}))
    body = fake.stats()["request_log"][-1]["body"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == LIKERT and schema["required"] == ["label"]
    parsed = parse_answer(response.text, {label: float(label) for label in LIKERT})
    assert parsed.status == "ok" and response.text.startswith('{"label"')
    expected = label_distribution(prompt_key(MESSAGES), LIKERT, seed=None)
    assert response.label_logprobs is not None
    assert math.exp(response.label_logprobs[parsed.label]) == pytest.approx(expected[parsed.label], rel=1e-9)


def test_structured_output_with_rationale_first(fake: OpenAIFakeServer) -> None:
    response = call(provider(fake), likert(structured=True, rationale=True, params={"max_tokens": 60}))
    schema = fake.stats()["request_log"][-1]["body"]["response_format"]["json_schema"]["schema"]
    assert list(schema["properties"]) == ["rationale", "label"]
    parsed = parse_answer(response.text, {label: 0.0 for label in LIKERT})
    assert parsed.status == "ok" and parsed.rationale
    assert response.label_logprobs is not None and set(response.label_logprobs) == set(LIKERT)


def test_structured_outputs_can_be_switched_off(fake: OpenAIFakeServer) -> None:
    response = call(provider(fake, structured_outputs=False), likert(structured=True))
    assert "response_format" not in fake.stats()["request_log"][-1]["body"]
    assert response.text in LIKERT


def test_rate_limit_429_is_retryable_with_retry_after(fake: OpenAIFakeServer) -> None:
    fake.configure(rpm=1)
    call(provider(fake), likert())
    error = fail(provider(fake), likert())
    assert (error.status, error.retryable, error.rate_limited) == (429, True, True)
    assert error.retry_after is not None and 58.0 < error.retry_after <= 60.0   # from retry-after-ms
    assert "Rate limit reached" in str(error)
    assert fake.stats()["rate_limited"] == 1


def test_server_error_500_is_retryable(fake: OpenAIFakeServer) -> None:
    fake.configure(fail_next=1)
    error = fail(provider(fake), likert())
    assert (error.status, error.retryable, error.rate_limited) == (500, True, False)
    assert "The server had an error" in str(error)
    assert call(provider(fake), likert()).text in LIKERT      # only the next one failed


@pytest.mark.parametrize(("status", "rate_limited"), [(503, False), (502, False), (529, True)])
def test_overload_and_gateway_errors_are_retryable(fake: OpenAIFakeServer, status: int, rate_limited: bool) -> None:
    fake.configure(fail_next=1, fail_status=status)
    error = fail(provider(fake), likert())
    assert (error.status, error.retryable, error.rate_limited) == (status, True, rate_limited)


def test_bad_request_400_is_not_retryable_and_carries_the_message(fake: OpenAIFakeServer) -> None:
    error = fail(provider(fake), likert(params={"temperature": 3.0}))
    assert (error.status, error.retryable) == (400, False)
    assert "Invalid 'temperature'" in str(error) and "Expected a value <= 2" in str(error)


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_client_errors_are_not_retryable(fake: OpenAIFakeServer, status: int) -> None:
    fake.configure(fail_next=1, fail_status=status, fail_message=f"nope {status}")
    error = fail(provider(fake), likert())
    assert (error.status, error.retryable, error.rate_limited) == (status, False, False)
    assert f"nope {status}" in str(error)


def test_wrong_api_key_is_401_and_the_key_is_not_echoed(fake: OpenAIFakeServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fake.configure(require_api_key="sk-right-key-123456")
    monkeypatch.setenv("ACCORD_TEST_OPENAI_KEY", "sk-wrong-key-987654")
    error = fail(provider(fake, api_key_env="ACCORD_TEST_OPENAI_KEY"), likert())
    assert (error.status, error.retryable) == (401, False)
    assert "Incorrect API key" in str(error) and "sk-wrong-key-987654" not in str(error)
    monkeypatch.setenv("ACCORD_TEST_OPENAI_KEY", "sk-right-key-123456")
    assert call(provider(fake, api_key_env="ACCORD_TEST_OPENAI_KEY"), likert()).text in LIKERT


def test_placeholder_key_for_a_local_server_without_a_key(fake: OpenAIFakeServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCORD_UNSET_KEY", raising=False)
    fake.configure(require_api_key="EMPTY")
    assert call(provider(fake, api_key_env="ACCORD_UNSET_KEY"), likert()).text in LIKERT


def test_missing_key_without_base_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCORD_UNSET_KEY", raising=False)
    with pytest.raises(ProviderError, match="ACCORD_UNSET_KEY") as caught:
        make_provider("openai", "gpt-4o-mini", api_key_env="ACCORD_UNSET_KEY")
    assert caught.value.retryable is False


def test_malformed_body_is_retryable(fake: OpenAIFakeServer) -> None:
    fake.configure(malformed_next=1)
    error = fail(provider(fake), likert())
    assert error.retryable is True and "malformed" in str(error)


def test_timeout_is_retryable(fake: OpenAIFakeServer) -> None:
    fake.configure(timeout_next=1, hang_s=10)
    started = time.monotonic()
    error = fail(provider(fake, timeout=0.5), likert())
    assert error.retryable is True and "timed out" in str(error)
    assert time.monotonic() - started < 5


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:          # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = fail(OpenAIProvider("gpt-4o-mini", base_url=f"http://127.0.0.1:{port}/v1", timeout=2), likert())
    assert error.retryable is True and error.status is None


def test_missing_usage_and_logprobs_are_tolerated(fake: OpenAIFakeServer) -> None:
    fake.configure(omit_usage=True, omit_logprobs=True)
    response = call(provider(fake), likert())
    assert (response.input_tokens, response.output_tokens, response.label_logprobs) == (0, 0, None)
    assert response.text in LIKERT


def test_length_finish_reason_is_passed_through(fake: OpenAIFakeServer) -> None:
    fake.configure(fixed_text="Let me think about this conversation step by step before answering.")
    response = call(provider(fake), likert(params={"max_tokens": 3}))
    assert response.finish_reason == "length" and response.output_tokens == 3
    assert parse_answer(response.text, {x: 0.0 for x in LIKERT}, finish_reason=response.finish_reason).status == \
        "truncated"


def test_answers_vary_across_prompts_but_repeat(fake: OpenAIFakeServer) -> None:
    def answer(item: int) -> str:
        messages = [{"role": "user", "content": f"Rate item {item}."}]
        return call(provider(fake), ProviderRequest(messages=messages, params={"max_tokens": 4},
                                                    labels=LIKERT)).text
    first = [answer(i) for i in range(12)]
    assert len(set(first)) >= 3
    assert [answer(i) for i in range(12)] == first


# --- label log-probabilities from token log-probabilities -------------------------------------------

def _entry(token: str, p: float, top: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    return {"token": token, "logprob": math.log(p),
            "top_logprobs": [{"token": t, "logprob": math.log(q)} for t, q in (top or [])]}


def test_label_logprobs_sum_variants_and_normalise() -> None:
    content = [_entry("4", 0.5, [("4", 0.5), (" 4", 0.1), ("3", 0.2), ('"5', 0.1), ("The", 0.1)])]
    result = label_logprobs_from_tokens(content, LIKERT)
    assert result is not None and set(result) == {"3", "4", "5"}          # absent labels left out
    probs = {k: math.exp(v) for k, v in result.items()}
    assert probs == pytest.approx({"4": 0.6 / 0.9, "3": 0.2 / 0.9, "5": 0.1 / 0.9})


def test_label_logprobs_at_the_json_label_value() -> None:
    content = [_entry('{"', 1.0), _entry("label", 1.0), _entry('":"', 1.0),
               _entry("unsafe", 0.7, [("unsafe", 0.7), ("safe", 0.2), ("Unsafe", 0.1)]), _entry('"}', 1.0)]
    result = label_logprobs_from_tokens(content, ["safe", "unsafe"])
    assert result is not None
    assert math.exp(result["unsafe"]) == pytest.approx(0.8) and math.exp(result["safe"]) == pytest.approx(0.2)


def test_label_logprobs_after_a_preamble_and_for_multi_token_labels() -> None:
    content = [_entry("Answer", 1.0), _entry(":", 1.0),
               _entry(" strongly", 0.6, [(" strongly", 0.6), (" agree", 0.3), (" dis", 0.1)]),
               _entry(" agree", 1.0)]
    labels = ["strongly agree", "agree", "disagree"]
    result = label_logprobs_from_tokens(content, labels)
    assert result is not None
    probs = {k: math.exp(v) for k, v in result.items()}
    assert probs == pytest.approx({"strongly agree": 0.6, "agree": 0.3, "disagree": 0.1})


def test_label_logprobs_none_without_any_label() -> None:
    assert label_logprobs_from_tokens([_entry("Sorry", 0.9, [("Sorry", 0.9), ("I", 0.1)])], LIKERT) is None
