"""The local wire servers themselves: rate limits, faults, admin endpoints, subprocess mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from accord.worker.providers.base import ProviderError, ProviderRequest
from accord.worker.providers.registry import make_provider
from tests.fakes.anthropic_server import AnthropicFakeServer, anthropic_subprocess
from tests.fakes.openai_server import OpenAIFakeServer, openai_subprocess
from tests.fakes.server_core import format_duration, max_in_window

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Rate item 1."}], "max_tokens": 4}


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAIFakeServer]:
    with OpenAIFakeServer() as running:
        yield running


@pytest.fixture
def fake(server: OpenAIFakeServer) -> OpenAIFakeServer:
    server.reset()
    return server


async def _burst(url: str, n: int, body: dict[str, Any] | None = None) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        return list(await asyncio.gather(*(client.post(url, json=body or CHAT) for _ in range(n))))


def burst(fake: OpenAIFakeServer, n: int, body: dict[str, Any] | None = None) -> list[httpx.Response]:
    return asyncio.run(_burst(fake.base_url + "/chat/completions", n, body))


def test_sliding_window_rate_limit_is_never_exceeded(fake: OpenAIFakeServer) -> None:
    fake.configure(rpm=300, window_s=2.0)            # 10 requests per sliding 2 s window
    first = burst(fake, 25)
    assert sorted(r.status_code for r in first) == [200] * 10 + [429] * 15
    limited = next(r for r in first if r.status_code == 429)
    assert limited.json() == {"error": {"message": limited.json()["error"]["message"], "type": "requests",
                                        "param": None, "code": "rate_limit_exceeded"}}
    assert 0 < int(limited.headers["retry-after-ms"]) <= 2000 and limited.headers["retry-after"] in ("1", "2")
    assert limited.headers["x-ratelimit-limit-requests"] == "300"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.headers["x-ratelimit-reset-requests"].endswith("s")
    time.sleep(int(limited.headers["retry-after-ms"]) / 1000 + 0.05)
    second = burst(fake, 12)
    assert sum(r.status_code == 200 for r in second) == 10
    stats = fake.stats()
    assert (stats["accepted"], stats["rate_limited"], stats["requests"]) == (20, 17, 37)
    assert max_in_window(stats["accepted_times"], 2.0) == 10
    assert sum(stats["accepted_per_second"].values()) == 20


def test_token_rate_limit(fake: OpenAIFakeServer) -> None:
    fake.configure(tpm=70, window_s=60)              # each request costs 11 prompt + 4 output tokens
    statuses = [r.status_code for r in burst(fake, 1) + burst(fake, 1) + burst(fake, 1) + burst(fake, 1)
                + burst(fake, 1)]
    assert statuses == [200, 200, 200, 200, 429]
    limited = burst(fake, 1)[0]
    assert limited.json()["error"]["type"] == "tokens" and limited.headers["x-ratelimit-remaining-tokens"] == "10"


def test_latency_and_jitter(fake: OpenAIFakeServer) -> None:
    fake.configure(latency_ms=150, jitter_ms=20)
    started = time.monotonic()
    response = burst(fake, 4)
    elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in response)
    assert 0.13 <= elapsed < 1.0                      # concurrent: about one latency, not four
    assert fake.stats()["max_in_flight"] == 4


def test_error_rate_is_seeded_and_counted(fake: OpenAIFakeServer) -> None:
    fake.configure(error_rate=0.5, seed=11)
    first = [r.status_code for r in burst(fake, 40)]
    fake.reset(error_rate=0.5, seed=11)
    second = [r.status_code for r in burst(fake, 40)]
    assert sorted(first) == sorted(second)
    assert 10 <= first.count(500) <= 30 and set(first) == {200, 500}
    assert fake.stats()["errors_injected"] == second.count(500)


def test_admin_endpoints_over_http(fake: OpenAIFakeServer) -> None:
    admin = fake.url + "/_admin"
    changed = httpx.post(admin + "/config", json={"fixed_text": "Hello", "latency_ms": 1}).json()
    assert changed["fixed_text"] == "Hello" and changed["latency_ms"] == 1
    assert httpx.post(admin + "/config", json={"rpm": -1}).status_code == 422
    assert httpx.post(admin + "/config", json={"no_such_field": 1}).status_code == 422
    assert burst(fake, 1)[0].json()["choices"][0]["message"]["content"] == "Hello"
    stats = httpx.get(admin + "/stats").json()
    assert stats["requests"] == 1 and stats["request_log"][0]["body"]["messages"] == CHAT["messages"]
    httpx.post(admin + "/reset")
    assert httpx.get(admin + "/stats").json()["requests"] == 0
    assert httpx.get(fake.base_url + "/models").json()["object"] == "list"


def test_request_log_is_bounded(fake: OpenAIFakeServer) -> None:
    fake.configure(max_log=5)
    burst(fake, 12)
    stats = fake.stats()
    assert stats["requests"] == 12 and len(stats["request_log"]) == 5


def test_invalid_json_request_is_a_400(fake: OpenAIFakeServer) -> None:
    response = httpx.post(fake.base_url + "/chat/completions", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and "could not parse the JSON body" in response.json()["error"]["message"]


def test_anthropic_429_and_529_bodies() -> None:
    with AnthropicFakeServer(rpm=1) as server:
        headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
        body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        url = server.url + "/v1/messages"
        assert httpx.post(url, json=body, headers=headers).status_code == 200
        limited = httpx.post(url, json=body, headers=headers)
        assert limited.status_code == 429 and limited.json()["error"]["type"] == "rate_limit_error"
        assert limited.json()["type"] == "error" and limited.headers["retry-after"] == "60"
        assert limited.headers["anthropic-ratelimit-requests-remaining"] == "0"
        server.reset(fail_next=1, fail_status=529)
        overloaded = httpx.post(url, json=body, headers=headers)
        assert overloaded.status_code == 529
        assert overloaded.json() == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        missing = httpx.post(url, json={k: v for k, v in body.items() if k != "max_tokens"}, headers=headers)
        assert missing.status_code == 400 and missing.json()["error"]["message"] == "max_tokens: Field required"


def test_openai_subprocess_with_command_line_options() -> None:
    with openai_subprocess(args=["--latency-ms", "30", "--rpm", "6000", "--labels", "safe,unsafe"]) as server:
        provider = make_provider("openai", "gpt-4o-mini", base_url=server.base_url, timeout=5)
        request = ProviderRequest(messages=[{"role": "user", "content": "Safe?"}], params={"max_tokens": 4},
                                  labels=["safe", "unsafe"])

        async def go() -> tuple[str, str]:
            try:
                first = await provider.complete(request)
                server.configure(fail_next=1)
                try:
                    await provider.complete(request)
                except ProviderError as error:
                    return first.text, str(error.status)
                return first.text, "no error"
            finally:
                await provider.aclose()

        text, status = asyncio.run(go())
        assert text in ("safe", "unsafe") and status == "500"
        stats = server.stats()
        assert (stats["accepted"], stats["errors_injected"]) == (2, 1)
        assert stats["config"]["latency_ms"] == 30 and stats["config"]["labels"] == ["safe", "unsafe"]
        assert server.reset()["latency_ms"] == 0
        process = server.process
    assert process is not None and process.returncode is not None      # stopped


def test_anthropic_subprocess_starts_and_answers() -> None:
    with anthropic_subprocess({"labels": ["A", "B"]}) as server:
        response = httpx.post(server.base_url + "/v1/messages",
                              json={"model": "claude-haiku-4-5", "max_tokens": 5,
                                    "messages": [{"role": "user", "content": "A or B?"}]},
                              headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
        assert response.json()["content"][0]["text"] in ("A", "B")


def test_format_duration_and_max_in_window() -> None:
    assert [format_duration(s) for s in (0.12, 1.5, 20, 360)] == ["120ms", "1.5s", "20s", "6m0s"]
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.2, 5.0], 1.0) == 4
    assert max_in_window([], 1.0) == 0
