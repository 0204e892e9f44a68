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


def test_one_poll_answers_a_pass_and_a_server_close_is_seen_on_the_next() -> None:
    async def go() -> None:
        peers: list[asyncio.StreamWriter] = []

        async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        backend = SocketCachingBackend()
        first = await backend.connect_tcp("127.0.0.1", port)
        second = await backend.connect_tcp("127.0.0.1", port)
        while len(peers) < 2:
            await asyncio.sleep(0.01)
        polls = []
        poller = backend._poller

        class Counting:                                 # the backend's poll, its polls counted
            def poll(self, timeout: float) -> list[tuple[int, int]]:
                polls.append(timeout)
                return poller.poll(timeout)

        backend._poller = Counting()  # type: ignore[assignment]
        assert not first.get_extra_info("is_readable") and not second.get_extra_info("is_readable")
        assert len(polls) == 1                          # one poll answered both questions of this pass
        peers[0].close()                                # the server closes the first connection
        for _ in range(100):                            # a later pass sees it (the FIN may take a moment)
            await asyncio.sleep(0.01)
            if first.get_extra_info("is_readable"):
                break
        assert first.get_extra_info("is_readable")
        assert not second.get_extra_info("is_readable")
        backend._poller = poller
        await first.aclose()
        await second.aclose()
        assert backend._streams == {}
        server.close()
        await server.wait_closed()

    asyncio.run(go())


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
