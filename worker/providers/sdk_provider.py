"""What the providers over a vendor SDK (``OpenAIProvider``, ``AnthropicProvider``) share: the model, its
endpoint, default decoding params and timeout; the provider's own flags (``option_defaults``); the SDK client
(``http_pool.sdk_client_options``: the API key, no retries inside the SDK, the aiohttp transport), which the
batch APIs use too and ``aclose`` closes; the errors of a realtime call as ``ProviderError``; and the request
body a batch line carries. Each subclass declares its ``SdkVendor`` and builds its call's arguments
(``call_kwargs``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from accord.worker.providers.base import ProviderRequest
from accord.worker.providers.common import malformed_error, sdk_errors
from accord.worker.providers.http_pool import sdk_client_options

if TYPE_CHECKING:                               # annotations only
    import httpx2


class SdkClient(Protocol):
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=SdkClient)


@dataclass(frozen=True)
class SdkVendor(Generic[ClientT]):
    """What one vendor's SDK provider is built from."""

    kind: str                                   # its ``ProviderKind`` value
    sdk: Any                                    # the SDK's module, whose error classes ``sdk_errors`` reads
    client: Callable[..., ClientT]              # the SDK's async client class
    http_client: type[httpx2.AsyncClient]       # the SDK's ``DefaultAioHttpClient`` (``http_pool``)
    key_env: str                                # the variable holding the key unless a spec names another


class SdkProvider(Generic[ClientT]):
    vendor: ClassVar[SdkVendor[Any]]
    option_defaults: ClassVar[Mapping[str, bool]] = {}     # the provider's own flags (a model spec's options)
    kind: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = cls.vendor.kind

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str | None = None,
                 params: dict[str, Any] | None = None, timeout: float = 60.0, path: str | None = None,
                 **options: bool) -> None:
        # ``make_provider`` passes every kind the same arguments: ``path`` (a local model file) is not used here
        unknown = sorted(set(options) - set(self.option_defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} takes no option {', '.join(unknown)}; "
                            f"its options: {', '.join(self.option_defaults) or 'none'}")
        self.model = model
        self.base_url = base_url
        self.params = dict(params or {})
        self.timeout = timeout
        self.options = {**self.option_defaults, **options}
        vendor = self.vendor
        self._client: ClientT = vendor.client(**sdk_client_options(
            self.kind, base_url, api_key_env, vendor.key_env, timeout, vendor.http_client))

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
            with sdk_errors(self.kind, self.vendor.sdk, f"request timed out after {self.timeout:g}s"):
                yield
        except ValueError as exc:            # json.JSONDecodeError from a 200 with an invalid body
            raise malformed_error(self.kind, str(exc)) from exc

    def build_kwargs(self, request: ProviderRequest) -> dict[str, Any]:
        """The arguments of the SDK call for ``request``: ``call_kwargs`` with the provider's default params
        under the request's own."""
        return self.call_kwargs(request, {**self.params, **request.params})

    def call_kwargs(self, request: ProviderRequest, params: dict[str, Any]) -> dict[str, Any]:
        """The arguments of the SDK call for ``request`` with decoding ``params``."""
        raise NotImplementedError

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        """The JSON body of the call for ``request`` (what a batch request carries): ``build_kwargs`` with
        ``extra_body`` merged in."""
        kwargs = self.build_kwargs(request)
        extra = kwargs.pop("extra_body", None) or {}
        return {**kwargs, **extra}
