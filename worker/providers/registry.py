"""Build a provider from a model spec's fields: ``make_provider("openai", "gpt-4o-mini", ...)``."""

from __future__ import annotations

from typing import Any

from accord.models.schema import ProviderKind
from accord.extras import MissingExtra
from accord.worker.providers.base import Provider, ProviderError
from accord.worker.providers.local_llama import LocalLlamaProvider


def make_provider(provider_kind: str, model: str, base_url: str | None = None, api_key_env: str | None = None,
                  path: str | None = None, timeout: float = 60.0, *, params: dict[str, Any] | None = None,
                  **options: Any) -> Provider:
    """A provider of ``provider_kind`` (a ``ProviderKind``) for ``model``.

    ``params`` are default decoding parameters (a request's own params override them); ``options`` are
    provider-specific constructor flags (e.g. ``structured_outputs=False`` for an OpenAI-compatible server
    without json_schema support). Unknown kinds and a missing API key raise a non-retryable ProviderError."""
    kind = provider_kind.strip().lower()
    common: dict[str, Any] = {"base_url": base_url, "api_key_env": api_key_env, "params": params,
                              "timeout": timeout, "path": path}
    try:
        if kind == "openai":
            from accord.worker.providers.openai_provider import OpenAIProvider  # its SDK: optional, heavy

            return OpenAIProvider(model, **common, **options)
        if kind == "anthropic":
            from accord.worker.providers.anthropic_provider import AnthropicProvider  # its SDK: optional, heavy

            return AnthropicProvider(model, **common, **options)
        if kind == "local":   # llama.cpp is imported by the provider when it loads its model
            return LocalLlamaProvider(model, **common, **options)
    except MissingExtra as exc:                 # the provider's SDK or llama.cpp is not installed
        raise ProviderError(f"{kind}: {exc}", retryable=False) from exc
    kinds = ", ".join(k.value for k in ProviderKind)
    raise ProviderError(f"unknown provider kind {provider_kind!r}; expected one of {kinds}",
                        retryable=False)
