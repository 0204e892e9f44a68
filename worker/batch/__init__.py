"""Provider batch APIs: OpenAI Batch API and Anthropic Message Batches.

``openai_batch`` and ``anthropic_batch`` speak to the providers (through the official SDKs);
``batch_runner`` keeps the books (``provider_batch`` rows, request states, stored ratings) so every step
is idempotent and resumable; ``accord.scheduler.batch_dispatch`` drives a run with them.
"""

from __future__ import annotations

from accord.worker.batch.base import BatchClient, BatchLimits
from accord.worker.providers.base import Provider


def batch_client_for(provider: Provider, limits: BatchLimits | None = None) -> BatchClient | None:
    """The batch client for a realtime provider (sharing its SDK client), or None when the provider has
    no batch API (local models)."""
    kind = getattr(provider, "kind", None)
    if kind == "openai":
        from accord.worker.batch.openai_batch import OpenAIBatchClient  # its SDK: optional, heavy

        return OpenAIBatchClient(provider, limits)  # type: ignore[arg-type]  # kind 'openai': an OpenAIProvider
    if kind == "anthropic":
        from accord.worker.batch.anthropic_batch import AnthropicBatchClient  # its SDK: optional, heavy

        return AnthropicBatchClient(provider, limits)  # type: ignore[arg-type]  # kind 'anthropic': an AnthropicProvider
    return None


__all__ = ["BatchClient", "BatchLimits", "batch_client_for"]
