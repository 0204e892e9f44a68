"""The HTTP client under the OpenAI and Anthropic SDKs' clients: each SDK's own ``DefaultAioHttpClient``, an
``httpx2.AsyncClient`` whose transport is aiohttp (the SDKs' ``aiohttp`` extra, vendored ``httpx_aiohttp``).

The SDKs' default transport (httpcore over anyio) costs about 1.6x the CPU of the aiohttp one per call: a
call over the OpenAI SDK to the local OpenAI-wire server, 3.0 ms of CPU against 1.9 ms on a 2-core AMD EPYC
(``bench/throughput.py`` shows what that is worth end to end). The SDK, its errors, its retries (off here)
and its request building are unchanged: the transport maps aiohttp's errors onto httpx's, which the SDK maps
onto its own (``APITimeoutError``, ``APIConnectionError``).

``async_http_client`` gives a provider its client: no redirects (see ``sdk_client_options``), the caller's
timeout, and no cap on connections of its own (the provider pool caps the calls in flight per model; aiohttp
keeps the idle ones alive and reuses them). A proxy in the environment (``HTTPS_PROXY`` ...) is honoured:
httpx mounts a proxied aiohttp transport for it.
"""

from __future__ import annotations

from typing import Any

from accord.worker.providers.common import resolve_api_key

from accord.extras import needs_extra

with needs_extra("openai"):                     # optional: the SDKs' HTTP library and its aiohttp transport
    import aiohttp  # noqa: F401  (the transport imports it when the first call is made: missing, say so now)
    import httpx2

# aiohttp's connector takes 0 as "no limit"; httpx's None would leave aiohttp at its default of 100
UNCAPPED = httpx2.Limits(max_connections=0, max_keepalive_connections=None)


def async_http_client(client_class: type[httpx2.AsyncClient], timeout: float) -> httpx2.AsyncClient:
    """The HTTP client of one provider (one per model endpoint per process, see ``ProviderPool``):
    ``client_class`` is the SDK's ``DefaultAioHttpClient`` (its default headers, the aiohttp transport)."""
    return client_class(timeout=timeout, follow_redirects=False, limits=UNCAPPED)


def sdk_client_options(kind: str, base_url: str | None, api_key_env: str | None, default_key_env: str,
                       timeout: float, client_class: type[httpx2.AsyncClient]) -> dict[str, Any]:
    """The arguments of a provider's SDK client (``AsyncOpenAI``, ``AsyncAnthropic``): the API key from the
    variable ``api_key_env`` names (else ``default_key_env`` for the vendor's own endpoint; ``resolve_api_key``),
    no retries inside the SDK (the worker retries), ``timeout``, and the HTTP client of ``async_http_client``.

    No redirects: the endpoint was checked against the allow-list, a hop it redirects to was not (and would
    receive the prompt and, same-origin, the key). A 3xx answer is an error like any other."""
    env_name = api_key_env or (None if base_url else default_key_env)
    return {"base_url": base_url, "api_key": resolve_api_key(env_name, base_url, kind), "max_retries": 0,
            "timeout": timeout, "http_client": async_http_client(client_class, timeout)}
