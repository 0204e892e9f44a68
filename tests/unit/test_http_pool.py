"""The providers' HTTP client: each SDK's aiohttp transport (an SDK upgrade that drops it is noticed here), no
redirects and no connection cap of its own, a proxy in the environment honoured, calls reusing a kept-alive
connection against the local OpenAI-wire server, and the SDK's errors unchanged over it."""

from __future__ import annotations

import asyncio

import pytest
from accord.worker.providers.base import ProviderError, ProviderRequest
from accord.worker.providers.http_pool import async_http_client
from accord.worker.providers.openai_provider import OpenAIProvider
from anthropic import DefaultAioHttpClient as AnthropicAioHttpClient
from openai import DefaultAioHttpClient as OpenAIAioHttpClient
from openai._vendor.httpx_aiohttp import AiohttpTransport

from tests.fakes.openai_server import openai_subprocess

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")
REQUEST = ProviderRequest(messages=[{"role": "user", "content": "Rate: hello"}], params={"max_tokens": 4},
                          labels=["1", "2"], want_logprobs=True, structured=True)


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("client_class", [OpenAIAioHttpClient, AnthropicAioHttpClient])
def test_each_sdk_client_runs_over_the_aiohttp_transport(no_proxy: None, client_class: type) -> None:
    client = async_http_client(client_class, 5.0)
    transport = client._transport
    assert type(transport).__name__ == "AiohttpTransport"
    assert transport.limits.max_connections == 0          # aiohttp's "no limit": the provider pool caps calls
    assert client.follow_redirects is False
    asyncio.run(client.aclose())


def test_a_proxy_in_the_environment_is_honoured(no_proxy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = async_http_client(OpenAIAioHttpClient, 5.0)
    proxied = [t for t in client._mounts.values() if isinstance(t, AiohttpTransport)]
    assert proxied and all(str(t.proxy.url) == "http://127.0.0.1:9" for t in proxied)
    asyncio.run(client.aclose())


def test_calls_reuse_a_kept_alive_connection(no_proxy: None) -> None:
    server = openai_subprocess({"latency_ms": 0})
    server.start()
    try:
        provider = OpenAIProvider("gpt-4o-mini", base_url=server.base_url)

        async def go() -> int:
            for _ in range(5):
                await provider.complete(REQUEST)
            connector = provider.client._client._transport.client.connector
            opened = sum(len(kept) for kept in connector._conns.values())
            await provider.aclose()
            return opened

        assert asyncio.run(go()) == 1        # one after the other: one connection, kept alive and reused
    finally:
        server.stop()


def test_errors_over_the_transport_are_the_sdks(no_proxy: None) -> None:
    """A refused connection and a timed-out answer come back as the provider's transient errors."""
    server = openai_subprocess({"latency_ms": 3000})
    server.start()
    try:
        slow = OpenAIProvider("gpt-4o-mini", base_url=server.base_url, timeout=0.5)
        refused = OpenAIProvider("gpt-4o-mini", base_url="http://127.0.0.1:9/v1")

        async def go() -> tuple[ProviderError, ProviderError]:
            errors = []
            for provider in (slow, refused):
                with pytest.raises(ProviderError) as caught:
                    await provider.complete(REQUEST)
                errors.append(caught.value)
                await provider.aclose()
            return errors[0], errors[1]

        timed_out, unreachable = asyncio.run(go())
        assert timed_out.retryable and "timed out" in str(timed_out)
        assert unreachable.retryable
    finally:
        server.stop()
