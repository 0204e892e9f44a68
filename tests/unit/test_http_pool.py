"""The providers' HTTP pool: the socket-caching backend is in place (a library upgrade that moves httpx's pool
internals is noticed here), the idle-connection check reads the socket right, a proxy keeps httpx's own
transport, and calls reuse a kept-alive connection against the local OpenAI-wire server."""

from __future__ import annotations

import asyncio
import socket

import pytest
from accord.worker.providers.http_pool import (
    PROXY_VARIABLES,
    SocketCachingBackend,
    async_http_client,
    pooled_transport,
    socket_readable,
)
from openai import DefaultAsyncHttpxClient


def test_the_pool_uses_the_socket_caching_backend() -> None:
    transport = pooled_transport(8)
    assert transport is not None
    assert isinstance(transport._pool._network_backend, SocketCachingBackend)
    assert transport._pool._max_keepalive_connections == 8


def test_an_idle_socket_is_readable_only_once_the_peer_wrote_or_closed() -> None:
    a, b = socket.socketpair()
    try:
        assert not socket_readable(a)
        b.close()
        assert socket_readable(a)            # the end of the stream is waiting: the server closed it
    finally:
        a.close()
    assert socket_readable(None)


def test_a_proxy_in_the_environment_keeps_httpx_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    plain = async_http_client(DefaultAsyncHttpxClient, 5.0, 4)
    assert isinstance(plain._transport._pool._network_backend, SocketCachingBackend)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    proxied = async_http_client(DefaultAsyncHttpxClient, 5.0, 4)
    assert not isinstance(getattr(proxied._transport._pool, "_network_backend", None), SocketCachingBackend)
    asyncio.run(plain.aclose())
    asyncio.run(proxied.aclose())


def test_calls_reuse_a_kept_alive_connection() -> None:
    from accord.worker.providers.base import ProviderRequest
    from accord.worker.providers.openai_provider import OpenAIProvider

    from tests.fakes.openai_server import openai_subprocess

    server = openai_subprocess({"latency_ms": 0})
    server.start()
    try:
        provider = OpenAIProvider("gpt-4o-mini", base_url=server.base_url, max_connections=2)
        request = ProviderRequest(messages=[{"role": "user", "content": "Rate: hello"}], params={"max_tokens": 4},
                                  labels=["1", "2"], want_logprobs=True, structured=True)

        async def go() -> int:
            for _ in range(5):
                await provider.complete(request)
            pool = provider.client._client._transport._pool
            return len(pool.connections)

        assert asyncio.run(go()) == 1        # one after the other: one connection, kept alive and reused
    finally:
        server.stop()
