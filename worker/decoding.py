"""Decoding parameters of a rating request: campaign defaults, then the model's overrides, then the
template's output cap, then the per-sample seed. The scheduler (for cache keys) and the executor (for the
call) both use this one function, so a cache key always describes the call that was made."""

from __future__ import annotations

from typing import Any


def request_decoding(campaign_decoding: dict[str, Any], model_decoding: dict[str, Any] | None,
                     template_max_tokens: int | None, sample_index: int) -> dict[str, Any]:
    params = {k: v for k, v in campaign_decoding.items() if v is not None}
    params.update({k: v for k, v in (model_decoding or {}).items() if v is not None})
    if "max_tokens" not in params and template_max_tokens:
        params["max_tokens"] = int(template_max_tokens)
    if "seed" in params:
        # Each sample gets its own seed, so repeated samples are genuinely distinct calls.
        params["seed"] = int(params["seed"]) + sample_index
    return params
