"""The HTTP connection pool under the OpenAI and Anthropic SDKs' clients: sized to the calls a process actually
has in flight, with connections kept alive and reused, and a cheap idle-connection check.

httpcore's pool re-examines every connection it holds whenever a request starts or ends, and asks each idle
one whether the server closed it (``get_extra_info("is_readable")``). Over anyio, that question rebuilds the
stream's whole attribute table (``getpeername``, ``getsockname``, the address family ...) before polling the
socket: at 80 connections, 80 of those per request and 30% of a request's CPU. ``SocketCachingBackend``
opens the same anyio streams, looks each one's socket up once (the socket of a stream never changes) and
answers the pool's questions of one pass with one ``poll`` over all its connections; everything else goes
to the stream unchanged.

``async_http_client`` gives a provider its ``httpx2.AsyncClient``: no redirects, the caller's timeout, at most
``keepalive`` idle connections kept (the provider pool's concurrency for the model), over that backend. A
proxy configured in the environment (``HTTPS_PROXY`` ...) keeps httpx's own transport, which honours it.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import ssl
from typing import Any

from accord.worker.providers.common import resolve_api_key

from accord.extras import needs_extra

with needs_extra("openai"):                     # optional: httpx2, the OpenAI and Anthropic SDKs' HTTP library
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
    """An anyio stream whose readability its backend answers (its socket is looked up once)."""

    def __init__(self, inner: httpcore2.AsyncNetworkStream, backend: SocketCachingBackend) -> None:
        self._inner = inner
        self._backend = backend
        self.sock: socket.socket | None = inner.get_extra_info("socket")
        self.fd = -1 if self.sock is None else self.sock.fileno()
        backend.track(self)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        self._backend.forget(self)
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout), self._backend)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._backend.readable(self)
        return self._inner.get_extra_info(info)


class SocketCachingBackend(httpcore2.AsyncNetworkBackend):
    """httpcore's anyio backend, its streams wrapped in ``_Stream``. The pool asks about every idle connection
    in one synchronous pass; the first question of a pass polls every open connection of this backend at
    once (one ``poll`` registered as connections open and close) and the rest of the pass reads that answer."""

    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._poller = select.poll()
        self._streams: dict[int, _Stream] = {}
        self._ready: set[int] | None = None

    def track(self, stream: _Stream) -> None:
        if stream.fd >= 0:
            self._poller.register(stream.fd, select.POLLIN)   # a reused descriptor: registered anew
            self._streams[stream.fd] = stream

    def forget(self, stream: _Stream) -> None:
        if stream.fd >= 0 and self._streams.get(stream.fd) is stream:
            del self._streams[stream.fd]
            self._poller.unregister(stream.fd)
            if self._ready is not None:
                self._ready.discard(stream.fd)

    def readable(self, stream: _Stream) -> bool:
        if stream.fd < 0 or self._streams.get(stream.fd) is not stream:
            return socket_readable(stream.sock)
        if self._ready is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return socket_readable(stream.sock)
            # any event counts: data or the end (POLLIN), a reset (POLLERR, POLLHUP), a closed fd (POLLNVAL)
            self._ready = {fd for fd, _ in self._poller.poll(0)}
            loop.call_soon(self._new_pass)
        return stream.fd in self._ready

    def _new_pass(self) -> None:
        self._ready = None

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(host, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options), self)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore2.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options),
                       self)

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


def sdk_client_options(kind: str, base_url: str | None, api_key_env: str | None, default_key_env: str,
                       timeout: float, max_connections: int | None,
                       client_class: type[httpx2.AsyncClient]) -> dict[str, Any]:
    """The arguments of a provider's SDK client (``AsyncOpenAI``, ``AsyncAnthropic``): the API key from the
    variable ``api_key_env`` names (else ``default_key_env`` for the vendor's own endpoint; ``resolve_api_key``),
    no retries inside the SDK (the worker retries), ``timeout``, and the HTTP client of ``async_http_client``.

    No redirects: the endpoint was checked against the allow-list, a hop it redirects to was not (and would
    receive the prompt and, same-origin, the key). A 3xx answer is an error like any other.
    ``max_connections``: the calls this process has in flight at most (the provider pool's concurrency): idle
    connections kept beyond it would only be re-examined on every request."""
    env_name = api_key_env or (None if base_url else default_key_env)
    return {"base_url": base_url, "api_key": resolve_api_key(env_name, base_url, kind), "max_retries": 0,
            "timeout": timeout, "http_client": async_http_client(client_class, timeout, max_connections)}
