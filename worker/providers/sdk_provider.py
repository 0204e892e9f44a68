"""What the providers over a vendor SDK (``OpenAIProvider``, ``AnthropicProvider``) share: the model, its
endpoint, default decoding params and timeout; the SDK client (``http_pool.sdk_client_options``: the API key, no
retries inside the SDK, the pooled HTTP client), which the batch APIs use too and ``aclose`` closes; the errors
of a realtime call as ``ProviderError``; and the request body a batch line carries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypedDict, TypeVar

from accord.worker.providers.base import ProviderRequest
from accord.worker.providers.common import malformed_error, sdk_errors
from accord.worker.providers.http_pool import sdk_client_options

if TYPE_CHECKING:                               # annotations only
    import httpx2


class SdkClient(Protocol):
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=SdkClient)


class Endpoint(TypedDict, total=False):
    """The constructor arguments every SDK provider takes (``make_provider`` passes them)."""

    base_url: str | None            # an OpenAI-compatible server, a proxy ...; None: the vendor's own API
    api_key_env: str | None         # the variable holding the key (default: the vendor's, e.g. OPENAI_API_KEY)
    params: dict[str, Any] | None   # default decoding params; a request's own override them
    timeout: float                  # seconds per call
    path: str | None                # a local model file: not used by an SDK provider
    max_connections: int | None     # calls this process has in flight at most (sizes the connection pool)


class SdkProvider(Generic[ClientT]):
    kind: str
    sdk: Any                        # the SDK's module, whose error classes ``sdk_errors`` reads

    def __init__(self, model: str, sdk_client: Callable[..., ClientT], http_client: type[httpx2.AsyncClient],
                 default_key_env: str, *, base_url: str | None = None, api_key_env: str | None = None,
                 params: dict[str, Any] | None = None, timeout: float = 60.0, path: str | None = None,
                 max_connections: int | None = None) -> None:
        self.model = model
        self.base_url = base_url
        self.params = dict(params or {})
        self.timeout = timeout
        self._client = sdk_client(**sdk_client_options(self.kind, base_url, api_key_env, default_key_env,
                                                       timeout, max_connections, http_client))

    @property
    def client(self) -> ClientT:
        """The SDK client (the batch APIs use it beside the realtime calls)."""
        return self._client

    async def aclose(self) -> None:
        await self._client.close()

    @contextmanager
    def call_errors(self) -> Iterator[None]:
        """The errors of a realtime call as ``ProviderError`` (``sdk_errors``); a ValueError, e.g. a 200 whose
        body is not JSON, as a malformed answer."""
        try:
            with sdk_errors(self.kind, self.sdk, f"request timed out after {self.timeout:g}s"):
                yield
        except ValueError as exc:            # json.JSONDecodeError from a 200 with an invalid body
            raise malformed_error(self.kind, str(exc)) from exc

    def build_kwargs(self, request: ProviderRequest) -> dict[str, Any]:
        """The arguments of the SDK call for ``request``."""
        raise NotImplementedError

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        """The JSON body of the call for ``request`` (what a batch request carries): ``build_kwargs`` with
        ``extra_body`` merged in."""
        kwargs = self.build_kwargs(request)
        extra = kwargs.pop("extra_body", None) or {}
        return {**kwargs, **extra}
