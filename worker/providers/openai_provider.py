"""OpenAI chat completions (and OpenAI-compatible servers: vLLM, llama.cpp server, Ollama, ...) via the
official ``openai`` SDK, with SDK retries off (retrying is the caller's job).

OpenAI caches long prompt prefixes (1024 tokens and more) by itself; the cached part is reported in
``usage.prompt_tokens_details.cached_tokens`` and lands in ``ProviderResponse.cached_input_tokens``, priced
at the model's cached-input price."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from accord.extras import needs_extra

with needs_extra("openai"):                     # optional: the OpenAI SDK (and its HTTP library)
    import httpx2
    import openai
    from openai import AsyncOpenAI, DefaultAioHttpClient

from accord.worker.providers.base import ProviderRequest, ProviderResponse, output_budget
from accord.worker.providers.common import is_reasoning_model, malformed_error, pick_headers
from accord.worker.providers.sdk_provider import SdkProvider, SdkVendor

RATE_LIMIT_HEADERS = ("x-ratelimit-limit-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-requests",
                      "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
                      "retry-after", "retry-after-ms")
TOP_LOGPROBS = 20
# decoding parameters passed through unchanged (besides temperature/top_p/max_tokens/seed, mapped below)
PASSTHROUGH_PARAMS = ("stop", "presence_penalty", "frequency_penalty", "logit_bias", "reasoning_effort",
                      "service_tier", "user", "extra_body")
_QUOTES = " \t\r\n\"'`*_“”‘’"


class OpenAIProvider(SdkProvider[AsyncOpenAI]):
    vendor = SdkVendor("openai", openai, AsyncOpenAI, DefaultAioHttpClient, "OPENAI_API_KEY")
    option_defaults = {"structured_outputs": True}  # False: a server without json_schema response formats

    def call_kwargs(self, request: ProviderRequest, params: dict[str, Any]) -> dict[str, Any]:
        """The chat.completions.create arguments for ``request`` (decoding params mapped per model family)."""
        reasoning = is_reasoning_model(self.model)
        kwargs: dict[str, Any] = {"model": self.model, "messages": list(request.messages)}
        max_tokens = params.get("max_completion_tokens", params.get("max_tokens"))
        structured = bool(request.structured and request.labels and self.options["structured_outputs"])
        max_tokens = output_budget(max_tokens, structured=structured, rationale=request.rationale, reasoning=reasoning)
        if reasoning:
            if max_tokens is not None:
                kwargs["max_completion_tokens"] = int(max_tokens)
        else:
            for name in ("temperature", "top_p"):
                if params.get(name) is not None:
                    kwargs[name] = params[name]
            if max_tokens is not None:
                kwargs["max_tokens"] = int(max_tokens)
        if params.get("seed") is not None:
            kwargs["seed"] = int(params["seed"])
        for name in PASSTHROUGH_PARAMS:
            if params.get(name) is not None:
                kwargs[name] = params[name]
        if request.want_logprobs and request.labels and not reasoning:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = TOP_LOGPROBS
        if structured:
            kwargs["response_format"] = response_format(request.labels, request.rationale)
        return kwargs

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        body = self.request_body(request)
        started = time.perf_counter()
        with self.call_errors():
            # The SDK's client (auth, base URL, timeouts, its error types) with the body as built: the typed
            # ``create`` would walk the whole body through its transforms and build response models, three
            # times the CPU of the call itself; the answer is read from its JSON.
            raw = await self._client.post("/chat/completions", body=body, cast_to=httpx2.Response)
            headers = pick_headers(raw.headers, RATE_LIMIT_HEADERS)
            completion = json.loads(raw.content)
        latency_ms = (time.perf_counter() - started) * 1000.0
        return self.response_from_completion(completion, request, headers=headers, latency_ms=latency_ms)

    def response_from_completion(self, completion: Any, request: ProviderRequest, *,
                                 headers: dict[str, str] | None = None, latency_ms: float = 0.0) -> ProviderResponse:
        """A ProviderResponse from a chat.completion: its JSON (the realtime answer, a Batch API output line)
        or an SDK object. Missing usage counts as zero tokens; missing logprobs as no label scores; anything
        that is not a chat completion with a choice is a malformed answer."""
        choices = _field(completion, "choices") if not isinstance(completion, str) else None
        if not isinstance(choices, (list, tuple)) or not choices:
            raise malformed_error(self.kind, f"no choices in {str(completion)[:200]!r}")
        choice = choices[0]
        message = _field(choice, "message")
        if message is not None and not isinstance(message, dict) and not hasattr(message, "content"):
            raise malformed_error(self.kind, f"not a chat.completion message: {str(message)[:200]!r}")
        text = (_field(message, "content") if message is not None else None) or ""
        if not isinstance(text, str):
            raise malformed_error(self.kind, f"message content is not text: {str(text)[:200]!r}")
        finish_reason = _field(choice, "finish_reason")
        refusal = _field(message, "refusal") if message is not None else None
        if refusal and not text:
            text, finish_reason = str(refusal), "refusal"
        usage = _field(completion, "usage")
        details = _field(usage, "prompt_tokens_details") if usage is not None else None
        label_logprobs = None
        logprobs = _field(choice, "logprobs")
        content = _field(logprobs, "content") if logprobs is not None else None
        if request.want_logprobs and request.labels and content:
            label_logprobs = label_logprobs_from_tokens(content, request.labels)
        return ProviderResponse(
            text=text,
            input_tokens=_count(usage, "prompt_tokens"),
            output_tokens=_count(usage, "completion_tokens"),
            model_snapshot=_field(completion, "model") or self.model,
            finish_reason=finish_reason,
            label_logprobs=label_logprobs,
            latency_ms=latency_ms,
            headers=dict(headers or {}),
            cached_input_tokens=_count(details, "cached_tokens"),
        )


def _count(entry: Any, name: str) -> int:
    if entry is None:
        return 0
    try:
        return int(_field(entry, name) or 0)
    except (TypeError, ValueError):
        return 0


def response_format(labels: Sequence[str], rationale: bool) -> dict[str, Any]:
    """A strict json_schema response format: {"label": one of labels} (with "rationale" first)."""
    properties: dict[str, Any] = {}
    if rationale:
        properties["rationale"] = {"type": "string", "description": "One or two sentences of reasoning."}
    properties["label"] = {"type": "string", "enum": list(labels)}
    return {"type": "json_schema", "json_schema": {
        "name": "rating", "strict": True,
        "schema": {"type": "object", "properties": properties, "required": list(properties),
                   "additionalProperties": False}}}


def _normalise(token: str) -> str:
    return token.strip(_QUOTES).casefold()


def _match_label(token: str, keys: dict[str, str]) -> str | None:
    """The label a token names: exactly (ignoring whitespace, quotes, case), or as the unique label it
    begins (a multi-token label's first token)."""
    norm = _normalise(token)
    if not norm:
        return None
    if norm in keys:
        return keys[norm]
    prefixed = [label for key, label in keys.items() if key.startswith(norm)]
    return prefixed[0] if len(prefixed) == 1 else None


def _answer_position(tokens: Sequence[str], keys: dict[str, str]) -> int | None:
    """Index of the token where the answer label starts: the value of "label" in a JSON answer, else the
    first token naming a label."""
    text = "".join(tokens)
    start = None
    if text.lstrip().startswith("{"):
        found = list(re.finditer(r'"label"\s*:\s*"?', text))
        if found:
            start = found[-1].end()
    offset = 0
    for index, token in enumerate(tokens):
        end = offset + len(token)
        if start is not None:
            if end > start and _normalise(text[max(offset, start):end]):
                return index
        elif _match_label(token, keys) is not None:
            return index
        offset = end
    return None


def label_logprobs_from_tokens(content: Sequence[Any], labels: Sequence[str]) -> dict[str, float] | None:
    """log P(label), normalised over the allowed labels present, at the answer's first token.

    ``content`` is the ``logprobs.content`` list (objects or dicts with token, logprob, top_logprobs).
    Token variants of a label (" 3", "3", '"3') add up. Labels absent from the top alternatives are left
    out; None when no allowed label appears at all."""
    keys = {label.casefold(): label for label in labels}
    tokens = [_field(entry, "token") or "" for entry in content]
    position = _answer_position(tokens, keys)
    if position is None:
        return None
    entry = content[position]
    alternatives = _field(entry, "top_logprobs") or []
    if not alternatives:
        alternatives = [entry]
    mass: dict[str, float] = {}
    for alternative in alternatives:
        label = _match_label(_field(alternative, "token") or "", keys)
        logprob = _field(alternative, "logprob")
        if label is None or logprob is None or not math.isfinite(logprob):
            continue
        mass[label] = mass.get(label, 0.0) + math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {label: math.log(p / total) for label, p in mass.items() if p > 0}


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)

