"""The HTTP connection pool under the OpenAI and Anthropic SDKs' clients: sized to the calls a process actually has in flight,
with connections kept alive and reused, and a cheap idle-connection check.

httpcore's pool re-examines every connection it holds whenever a request starts or ends, and asks each idle
one whether the server closed it (``get_extra_info("is_readable")``). Over anyio, that question rebuilds the
stream's whole attribute table (``getpeername``, ``getsockname``, the address family ...) before polling the
socket: at 80 connections, 80 of those per request and 30% of a request's CPU. ``SocketCachingBackend``
opens the same anyio streams and answers that one question from the socket it looked up once (the socket of a
stream never changes), polling it the same way; everything else goes to the stream unchanged.

``async_http_client`` gives a provider its ``httpx2.AsyncClient``: no redirects, the caller's timeout, at most
``keepalive`` idle connections kept (the provider pool's concurrency for the model), over that backend. A
proxy configured in the environment (``HTTPS_PROXY`` ...) keeps httpx's own transport, which honours it.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
from typing import Any

import httpcore2
import httpx2

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def socket_readable(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has data (or its end) waiting: an idle keep-alive connection that is readable was
    closed by the server. A socket that is gone counts as readable (its next read returns the end)."""
    fd = None if sock is None else sock.fileno()
    if fd is None or fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore2.AsyncNetworkStream):
    """An anyio stream whose raw socket is looked up once."""

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            if self._sock is None:
                self._sock = self._inner.get_extra_info("socket")
            return socket_readable(self._sock)
        return self._inner.get_extra_info(info)


class SocketCachingBackend(httpcore2.AsyncNetworkBackend):
    """httpcore's anyio backend, its streams wrapped in ``_Stream``."""

    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pooled_transport(keepalive: int) -> httpx2.AsyncHTTPTransport | None:
    """httpx's transport with ``keepalive`` idle connections at most, over ``SocketCachingBackend``; None
    when this httpx's pool does not take a network backend the way this module knows (then the caller keeps
    httpx's own transport)."""
    transport = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_connections=None,
                                                               max_keepalive_connections=max(1, keepalive)))
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore2.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        return None
    pool._network_backend = SocketCachingBackend()
    return transport


def async_http_client(client_class: type[httpx2.AsyncClient], timeout: float,
                      keepalive: int | None) -> httpx2.AsyncClient:
    """The HTTP client of one provider (one per model endpoint per process, see ``ProviderPool``):
    ``client_class`` is the SDK's ``DefaultAsyncHttpxClient`` (its default headers and limits)."""
    options: dict[str, Any] = {"timeout": timeout, "follow_redirects": False}
    if keepalive:
        transport = None if any(os.environ.get(name) for name in PROXY_VARIABLES) else pooled_transport(keepalive)
        if transport is not None:
            options["transport"] = transport
        else:
            options["limits"] = httpx2.Limits(max_connections=None, max_keepalive_connections=max(1, keepalive))
    return client_class(**options)
