"""Anthropic Messages API via the official ``anthropic`` SDK, with SDK retries off.

System messages go to ``system=``; ``max_tokens`` defaults to 64. A structured request with labels is a
forced tool call (``record_rating`` with ``{"label": enum}``), and the response text is the JSON of the
tool input, which ``parse_answer`` reads like any JSON answer. The API exposes no log-probabilities.
The installed SDK's ``messages.create`` has no temperature/top_p/top_k arguments, so those go in the
request body through ``extra_body``; seed is not part of the Messages API and is ignored.

Prompt caching: when the shared prefix of a campaign's calls (the rating tool, the system prompt, and the
template's instructions before the rated content) is long enough to be cached (``CACHE_MIN_TOKENS``), a
``cache_control: {"type": "ephemeral"}`` breakpoint marks its end (see ``cache_breakpoint``). Usage then reports ``cache_creation_input_tokens`` (first call,
1.25x the input price) and ``cache_read_input_tokens`` (later calls, the cached-input price).
``prompt_cache=False`` turns it off.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Sequence
from typing import Any

from accord.extras import needs_extra

with needs_extra("anthropic"):                  # optional: the Anthropic SDK
    import anthropic
    from anthropic import AsyncAnthropic, DefaultAioHttpClient
    from anthropic.types import Message

from accord.worker.providers.base import ProviderRequest, ProviderResponse, output_budget
from accord.worker.providers.common import malformed_error, pick_headers
from accord.worker.providers.sdk_provider import SdkProvider, SdkVendor

DEFAULT_MAX_TOKENS = 64
# Prompt caching: Anthropic caches a prefix only from this many tokens on (2048 for Haiku models).
CACHE_MIN_TOKENS = 1024
CACHE_MIN_TOKENS_HAIKU = 2048
CHARS_PER_TOKEN = 3.5          # the same rough estimate the scheduler uses before a call
CONTENT_MARKER = "<<<BEGIN RATED CONTENT>>>"   # where a template's shared instructions end (prompt_templates.BEGIN)
TOOL_NAME = "record_rating"
RATE_LIMIT_PREFIXES = ("anthropic-ratelimit-",)
RATE_LIMIT_HEADERS = ("retry-after",)
PASSTHROUGH_PARAMS = ("metadata", "service_tier", "thinking", "output_config")
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")
# Messages API stop reasons -> the provider-neutral finish reasons ("stop", "length", "refusal")
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop", "max_tokens": "length",
                  "refusal": "refusal", "model_context_window_exceeded": "length"}


class AnthropicProvider(SdkProvider[AsyncAnthropic]):
    vendor = SdkVendor("anthropic", anthropic, AsyncAnthropic, DefaultAioHttpClient, "ANTHROPIC_API_KEY")
    option_defaults = {"prompt_cache": True}        # False: no cache_control breakpoint

    def call_kwargs(self, request: ProviderRequest, params: dict[str, Any]) -> dict[str, Any]:
        """The messages.create arguments for ``request``."""
        system = "\n\n".join(m["content"] for m in request.messages if m.get("role") == "system")
        messages = [{"role": m["role"], "content": m["content"]} for m in request.messages if m.get("role") != "system"]
        structured = bool(request.structured and request.labels)
        max_tokens = output_budget(int(params.get("max_tokens") or DEFAULT_MAX_TOKENS), structured=structured,
                                   rationale=request.rationale)
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens}
        tools = [rating_tool(request.labels, request.rationale)] if structured else None
        cached_system, cached_messages = cache_breakpoint(system, messages, tools, self.model,
                                                         self.options["prompt_cache"])
        kwargs["messages"] = cached_messages
        if system:
            kwargs["system"] = cached_system
        # this SDK version no longer lists the sampling parameters; the API takes them in the JSON body
        sampling = {name: params[name] for name in SAMPLING_PARAMS if params.get(name) is not None}
        if sampling or params.get("extra_body"):
            kwargs["extra_body"] = {**sampling, **(params.get("extra_body") or {})}
        stop = params.get("stop_sequences", params.get("stop"))
        if stop:
            kwargs["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        for name in PASSTHROUGH_PARAMS:
            if params.get(name) is not None:
                kwargs[name] = params[name]
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return kwargs

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        kwargs = self.build_kwargs(request)
        started = time.perf_counter()
        with self.call_errors():
            raw = await self._client.messages.with_raw_response.create(**kwargs)
            headers = pick_headers(raw.headers, RATE_LIMIT_HEADERS, RATE_LIMIT_PREFIXES)
            message = raw.parse()
            if inspect.isawaitable(message):
                message = await message
        latency_ms = (time.perf_counter() - started) * 1000.0
        return self.response_from_message(message, structured="tools" in kwargs, headers=headers,
                                          latency_ms=latency_ms)

    def response_from_message(self, message: Any, *, structured: bool, headers: dict[str, str] | None = None,
                              latency_ms: float = 0.0) -> ProviderResponse:
        """A ProviderResponse from a Messages API message (an SDK object, or its JSON as a batch result).

        ``input_tokens`` counts every input token: the API's ``input_tokens`` (after the last cache
        breakpoint) plus ``cache_read_input_tokens`` and ``cache_creation_input_tokens``, which are also
        reported on their own for pricing."""
        if isinstance(message, dict):
            try:
                message = Message.model_validate(message)
            except ValueError as exc:
                raise malformed_error(self.kind, f"not a message: {exc}") from exc
        if isinstance(message, str) or getattr(message, "content", None) is None:
            raise malformed_error(self.kind, f"no content in {str(message)[:200]!r}")
        text = response_text(message.content, TOOL_NAME if structured else None)
        usage = message.usage
        fresh = int(getattr(usage, "input_tokens", 0) or 0)
        read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
        written = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
        stop_reason = message.stop_reason
        return ProviderResponse(
            text=text,
            input_tokens=fresh + read + written,
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            model_snapshot=message.model or self.model,
            finish_reason=FINISH_REASONS.get(stop_reason, stop_reason) if stop_reason else None,
            label_logprobs=None,
            latency_ms=latency_ms,
            headers=dict(headers or {}),
            cached_input_tokens=read,
            cache_write_tokens=written,
        )


def cache_min_tokens(model: str) -> int:
    """The shortest prefix Anthropic caches for ``model`` (shorter prefixes are sent uncached)."""
    name = model.lower()
    return CACHE_MIN_TOKENS_HAIKU if "haiku" in name else CACHE_MIN_TOKENS


def estimated_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN)


def cache_breakpoint(system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, model: str,
                     enabled: bool = True) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """(``system=``, ``messages=``) with one ``cache_control`` breakpoint at the end of the longest prefix every
    call of a campaign shares, when that prefix is long enough to be cached:

    - the template's instructions before the rated content (the first user message up to
      ``<<<BEGIN RATED CONTENT>>>``): the cached prefix is tools + system prompt + those instructions;
    - else the system prompt: tools + system prompt.

    Everything after the breakpoint (the rated content, the question after it) is sent uncached."""
    if not enabled:
        return system, messages
    prefix = estimated_tokens(system) + sum(estimated_tokens(json.dumps(tool)) for tool in tools or [])
    first = messages[0] if messages else None
    if first is not None and first.get("role") == "user" and isinstance(first.get("content"), str):
        text = first["content"]
        cut = text.find(CONTENT_MARKER)
        head, tail = (text[:cut], text[cut:]) if cut > 0 else ("", text)
        if head.strip() and prefix + estimated_tokens(head) >= cache_min_tokens(model):
            blocks = [{"type": "text", "text": head, "cache_control": {"type": "ephemeral"}},
                      {"type": "text", "text": tail}]
            return system, [{"role": "user", "content": blocks}, *messages[1:]]
    return system_blocks(system, tools, model, enabled), messages


def system_blocks(system: str, tools: list[dict[str, Any]] | None, model: str,
                  enabled: bool = True) -> str | list[dict[str, Any]]:
    """``system=`` for the Messages API: the plain string, or, when the cacheable prefix (tools, then the
    system prompt) is long enough to be cached, one text block with ``cache_control`` so every call of a
    campaign after the first reads the shared instructions at the cache price (a tenth of the input
    price; the first write costs 1.25x)."""
    if not enabled or not system:
        return system
    prefix = estimated_tokens(system) + sum(estimated_tokens(json.dumps(tool)) for tool in tools or [])
    if prefix < cache_min_tokens(model):
        return system
    return [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]


def rating_tool(labels: Sequence[str], rationale: bool) -> dict[str, Any]:
    """The forced tool whose input is the answer: {"label": one of labels} (with "rationale" first)."""
    properties: dict[str, Any] = {}
    if rationale:
        properties["rationale"] = {"type": "string", "description": "One or two sentences of reasoning."}
    properties["label"] = {"type": "string", "enum": list(labels), "description": "The rating."}
    return {"name": TOOL_NAME, "description": "Record your rating of the item.",
            "input_schema": {"type": "object", "properties": properties, "required": list(properties)}}


def response_text(content: Sequence[Any], tool_name: str | None) -> str:
    """The answer text: the JSON of the forced tool's input, else the text blocks joined."""
    if tool_name is not None:
        for block in content:
            if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == tool_name:
                return json.dumps(block.input)
    return "".join(getattr(block, "text", "") or "" for block in content if getattr(block, "type", None) == "text")
