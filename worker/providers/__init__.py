"""Providers: one chat call in, one answer out, for OpenAI (and compatible servers), Anthropic and local
GGUF models. Build one with ``make_provider``; the interface is in ``base``."""

from accord.worker.providers.base import Provider, ProviderError, ProviderRequest, ProviderResponse
from accord.worker.providers.registry import make_provider

__all__ = ["Provider", "ProviderError", "ProviderRequest", "ProviderResponse", "make_provider"]
