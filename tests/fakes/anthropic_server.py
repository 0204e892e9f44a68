"""A local HTTP server speaking the Anthropic Messages wire format: ``POST /v1/messages``, ``GET /v1/models``.

In process::

    with AnthropicFakeServer(latency_ms=20) as server:
        client = AsyncAnthropic(base_url=server.base_url, api_key="test")

As a subprocess: ``python -m tests.fakes.anthropic_server --port 8002 --rpm 50`` (prints
``LISTENING http://127.0.0.1:PORT``), or ``anthropic_subprocess(config)``.

Plain answers are text content blocks; a forced tool call (``tool_choice: {"type": "tool", ...}``)
answers one ``tool_use`` block whose input holds the label from the tool schema's enum. Errors use the
real shapes: 429 ``rate_limit_error``, 529 ``overloaded_error``, 500 ``api_error``, 400
``invalid_request_error``, 401 ``authentication_error``, 404 ``not_found_error``.

Message Batches (``/v1/messages/batches``): create, retrieve, list, results (JSONL at ``results_url``),
cancel, delete. ``processing_status`` goes in_progress -> ended (or in_progress -> canceling -> ended after a
cancel), one state per ``batch_polls_per_state`` retrieve calls or ``batch_state_seconds``; when it ends,
every request is answered like a realtime call, or comes back errored / expired as injected
(``batch_errored_next``, ``batch_expired_next``), or canceled; ``request_counts`` tally them.
A system block with ``cache_control`` is prompt-cached when long enough (usage reports
``cache_creation_input_tokens`` on the first call, ``cache_read_input_tokens`` after).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.answers import (
    choose_label,
    content_text,
    count_tokens,
    enum_from_schema,
    prompt_key,
    snapshot_name,
    structured_answer,
    tokenize,
)
from tests.fakes.server_core import (
    Decision,
    FakeBatch,
    FakeServer,
    RateFigures,
    ServerConfig,
    ServerState,
    SubprocessServer,
    main,
    read_json,
)

DEFAULT_SNAPSHOT_DATE = "20241022"
CACHE_MIN_TOKENS = 1024
CACHE_MIN_TOKENS_HAIKU = 2048
_STATUS_TYPES = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _rfc3339(seconds_from_now: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=max(0.0, seconds_from_now))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rate_headers(figures: RateFigures) -> dict[str, str]:
    headers: dict[str, str] = {}
    if figures.limit_requests is not None:
        headers["anthropic-ratelimit-requests-limit"] = str(figures.limit_requests)
        headers["anthropic-ratelimit-requests-remaining"] = str(figures.remaining_requests or 0)
        headers["anthropic-ratelimit-requests-reset"] = _rfc3339(figures.reset_requests_s)
    if figures.limit_tokens is not None:
        for prefix in ("anthropic-ratelimit-tokens", "anthropic-ratelimit-input-tokens"):
            headers[f"{prefix}-limit"] = str(figures.limit_tokens)
            headers[f"{prefix}-remaining"] = str(figures.remaining_tokens or 0)
            headers[f"{prefix}-reset"] = _rfc3339(figures.reset_tokens_s)
    return headers


class AnthropicFakeServer(FakeServer):
    base_path = ""          # the Anthropic SDK's base_url is the host; it appends /v1/messages
    name = "anthropic-fake"

    def build_routes(self, state: ServerState) -> list[Route]:
        async def messages(request: Request) -> Response:
            state.enter()
            try:
                return await _messages(state, request)
            finally:
                state.leave()

        async def models(request: Request) -> Response:
            names = state.config.known_models or ["claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"]
            return JSONResponse({"data": [{"type": "model", "id": name, "display_name": name,
                                           "created_at": "2024-10-22T00:00:00Z"} for name in names],
                                 "has_more": False, "first_id": names[0], "last_id": names[-1]})

        return [Route("/v1/messages", messages, methods=["POST"]), Route("/v1/models", models, methods=["GET"]),
                *batch_routes(state, self)]


def _error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error_body(type_, message), status_code=status,
                        headers={"request-id": f"req_{uuid.uuid4().hex[:24]}", **(headers or {})})


def _validate(body: Any, config: ServerConfig) -> tuple[int, str, str] | None:
    """(status, error type, message) for a request the real API rejects, else None."""
    if not isinstance(body, dict):
        return 400, "invalid_request_error", "The request body must be a JSON object."
    model = body.get("model")
    if not model:
        return 400, "invalid_request_error", "model: Field required"
    if config.known_models is not None and model not in config.known_models:
        return 404, "not_found_error", f"model: {model}"
    if "max_tokens" not in body:
        return 400, "invalid_request_error", "max_tokens: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return 400, "invalid_request_error", "max_tokens: Input should be greater than or equal to 1"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return 400, "invalid_request_error", "messages: Field required"
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            message = ('messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                       'parameter, not "system" as an input message role.')
            return 400, "invalid_request_error", message
        if role not in ("user", "assistant"):
            return 400, "invalid_request_error", f"messages.{i}.role: Input should be 'user' or 'assistant'"
    if messages[0].get("role") != "user":
        return 400, "invalid_request_error", "messages: first message must use the \"user\" role"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= float(temperature) <= 1:
        return 400, "invalid_request_error", "temperature: range: 0..1"
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        names = [tool.get("name") for tool in body.get("tools") or []]
        if choice.get("name") not in names:
            return (400, "invalid_request_error",
                    f"tool_choice.name: Tool '{choice.get('name')}' not found in provided tools")
    return None


async def _messages(state: ServerState, request: Request) -> Response:
    body, problem = await read_json(request)
    state.record("/v1/messages", body if problem is None else {"invalid_json": True})
    config = state.config
    sent = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if config.require_api_key is not None and sent != config.require_api_key:   # SDK 2.x sends a Bearer header
        state.count("auth_failures")
        return _error(401, "authentication_error", "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        state.count("bad_requests")
        return _error(400, "invalid_request_error", "anthropic-version: header is required")
    if problem is not None:
        state.count("bad_requests")
        return _error(400, "invalid_request_error", problem)
    invalid = _validate(body, config)
    if invalid is not None:
        status, type_, message = invalid
        state.count("bad_requests")
        return _error(status, type_, message)

    input_tokens = input_token_count(body)
    decision, figures = state.decide(input_tokens + int(body["max_tokens"]))
    headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}", **rate_headers(figures)}
    if decision.kind == "rate_limited":
        return _rate_limited(decision, headers)
    await state.sleep(decision.latency_s)
    if decision.kind == "error":
        type_, default = _STATUS_TYPES.get(config.fail_status, ("api_error", "Injected error."))
        return _error(config.fail_status, type_, config.fail_message or default, headers)
    if decision.kind == "malformed":
        return Response('{"id": "msg_broken", "type": "message", "content": [{"type": "te', status_code=200,
                        media_type="application/json", headers=headers)
    state.count("ok")
    return JSONResponse(answer(state, body, input_tokens), headers=headers)


def input_token_count(body: dict[str, Any]) -> int:
    return count_tokens(content_text(body.get("system"))) + sum(
        count_tokens(content_text(m.get("content"))) + 4 for m in body["messages"])


def answer(state: ServerState, body: dict[str, Any], input_tokens: int) -> dict[str, Any]:
    """The message for a valid request, with the scripted text (if any) and prompt caching applied."""
    return message_object(body, state.config, input_tokens, scripted=state.take_text(),
                          cache=cache_usage(state, body))


def cache_usage(state: ServerState, body: dict[str, Any]) -> tuple[int, int]:
    """(cache read, cache write) input tokens: the prefix up to the last ``cache_control`` breakpoint (tools,
    then system blocks, then message content blocks) is cached if it reaches the model's minimum length."""
    parts: list[str] = []
    marked_at: int | None = None
    system = body.get("system")
    for block in system if isinstance(system, list) else ([system] if system else []):
        parts.append(content_text([block]) if isinstance(block, dict) else str(block))
        if isinstance(block, dict) and block.get("cache_control"):
            marked_at = len(parts)
    for message in body.get("messages") or []:
        content = message.get("content")
        for block in content if isinstance(content, list) else [content]:
            parts.append(content_text([block]) if isinstance(block, dict) else content_text(block))
            if isinstance(block, dict) and block.get("cache_control"):
                marked_at = len(parts)
    if marked_at is None:
        return 0, 0
    prefix_text = "".join(parts[:marked_at])
    tools = json.dumps(body.get("tools") or [], sort_keys=True)
    tokens = count_tokens(prefix_text)
    minimum = CACHE_MIN_TOKENS_HAIKU if "haiku" in str(body["model"]).lower() else CACHE_MIN_TOKENS
    key = hashlib.sha256(f"{body['model']}\x00{tools}\x00{prefix_text}".encode()).hexdigest()
    return state.cached_prefix(key, tokens, minimum)


def _rate_limited(decision: Decision, headers: dict[str, str]) -> Response:
    wait = decision.retry_after_s
    what = "requests" if decision.limit_kind == "requests" else "input tokens"
    message = (f"This request would exceed the rate limit for your organization of {what} per minute. "
               "For details, refer to: https://docs.claude.com/en/api/rate-limits.")
    headers = {**headers, "retry-after": str(max(1, math.ceil(wait)))}
    return _error(429, "rate_limit_error", message, headers)


def message_object(body: dict[str, Any], config: ServerConfig, input_tokens: int, *, scripted: str | None = None,
                   cache: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """The Messages API response object the fake model answers for ``body`` (``scripted``: answer this text
    instead; ``cache``: input tokens read from / written to the prompt cache, out of ``input_tokens``)."""
    model = body["model"]
    snapshot = snapshot_name(model, config.snapshot_date or DEFAULT_SNAPSHOT_DATE)
    prompt = prompt_key(body["messages"], body.get("system"))
    max_tokens = int(body["max_tokens"])
    choice = body.get("tool_choice")
    seed = None                      # the Messages API has no seed: the same prompt gets the same answer
    if isinstance(choice, dict) and choice.get("type") == "tool":
        tool = next(t for t in body.get("tools") or [] if t.get("name") == choice.get("name"))
        labels, order = enum_from_schema(tool.get("input_schema"))
        label = choose_label(prompt, labels or config.labels, seed=seed)
        block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": tool["name"],
                 "input": structured_answer(label, order)}
        content: list[dict[str, Any]] = [block]
        stop_reason, output_tokens = "tool_use", count_tokens(str(block["input"])) + 10
    else:
        label = choose_label(prompt, config.labels, seed=seed)
        text = config.fixed_text if config.fixed_text is not None else config.answer_template.format(label=label)
        text = scripted if scripted is not None else text
        tokens = tokenize(text)
        stop_reason = "end_turn"
        if len(tokens) > max_tokens:
            tokens, stop_reason = tokens[:max_tokens], "max_tokens"
        content = [{"type": "text", "text": "".join(tokens)}]
        output_tokens = len(tokens)
    read, written = cache
    usage: dict[str, Any] = {"input_tokens": input_tokens - read - written, "output_tokens": output_tokens,
                             "cache_creation_input_tokens": written, "cache_read_input_tokens": read,
                             "service_tier": "standard"}
    result: dict[str, Any] = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                              "model": snapshot, "content": content, "stop_reason": stop_reason,
                              "stop_sequence": None, "usage": usage}
    if config.omit_usage:
        result["usage"] = {"input_tokens": 0, "output_tokens": 0}
    return result


# ------------------------------------------------------------------------------------------ message batches
BATCH_MAX_REQUESTS = 100_000
BATCH_MAX_BYTES = 256 * 1024 * 1024
BATCH_WINDOW_S = 24 * 3600
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def batch_routes(state: ServerState, server: AnthropicFakeServer) -> list[Route]:
    """Message Batches: create, retrieve, list, results (JSONL), cancel, delete."""

    def check_headers(request: Request) -> Response | None:
        sent = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if state.config.require_api_key is not None and sent != state.config.require_api_key:
            state.count("auth_failures")
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    async def create(request: Request) -> Response:
        problem_response = check_headers(request)
        if problem_response is not None:
            return problem_response
        raw = await request.body()
        body, problem = await read_json(request)
        state.record("/v1/messages/batches", {"requests": len(body.get("requests") or [])}
                     if isinstance(body, dict) else {"invalid_json": True})
        if problem is not None or not isinstance(body, dict):
            return _error(400, "invalid_request_error", problem or "The request body must be a JSON object.")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _error(400, "invalid_request_error", "requests: Field required (at least one request)")
        limit = state.config.batch_max_requests or BATCH_MAX_REQUESTS
        if len(requests) > limit:
            return _error(400, "invalid_request_error", f"requests: a batch may hold at most {limit} requests")
        if len(raw) > (state.config.batch_max_bytes or BATCH_MAX_BYTES):
            return _error(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
        seen: set[str] = set()
        for index, entry in enumerate(requests):
            custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                return _error(400, "invalid_request_error", f"requests.{index}.custom_id: String should match "
                              "pattern '^[a-zA-Z0-9_-]{1,64}$'")
            if custom_id in seen:
                return _error(400, "invalid_request_error", f"requests.{index}.custom_id: duplicate custom_id "
                              f"{custom_id!r}; custom_id values must be unique within a batch")
            if not isinstance(entry.get("params"), dict):
                return _error(400, "invalid_request_error", f"requests.{index}.params: Field required")
            seen.add(custom_id)
        if state.take_batch_failure():
            return _error(500, "api_error", "Internal server error")
        batch = FakeBatch(id="msgbatch_" + uuid.uuid4().hex[:24], lines=list(requests),
                          states=["in_progress", "ended"])
        state.batches.add(batch)
        state.count("batches_created")
        return JSONResponse(batch_object(batch, server.url))

    async def retrieve(request: Request) -> Response:
        problem_response = check_headers(request)
        if problem_response is not None:
            return problem_response
        batch = state.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _error(404, "not_found_error", f"message_batch_id: {request.path_params['batch_id']}")
        state.count("batch_polls")
        state.batches.advance(batch, state.config, lambda b: _on_enter(state, b))
        return JSONResponse(batch_object(batch, server.url))

    async def list_batches(request: Request) -> Response:
        problem_response = check_headers(request)
        if problem_response is not None:
            return problem_response
        ordered = state.batches.ordered()
        limit = min(max(int(request.query_params.get("limit") or 20), 1), 1000)
        ids = [b.id for b in ordered]
        after, before = request.query_params.get("after_id"), request.query_params.get("before_id")
        if after:
            ordered = ordered[ids.index(after) + 1:] if after in ids else []
        elif before:
            ordered = ordered[:ids.index(before)] if before in ids else []
        page = ordered[:limit]
        return JSONResponse({"data": [batch_object(b, server.url) for b in page], "has_more": len(ordered) > limit,
                             "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None})

    async def results(request: Request) -> Response:
        problem_response = check_headers(request)
        if problem_response is not None:
            return problem_response
        batch = state.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _error(404, "not_found_error", f"message_batch_id: {request.path_params['batch_id']}")
        if batch.status != "ended" or batch.results is None:
            return _error(400, "invalid_request_error", f"Message Batch {batch.id} has not yet ended processing.")
        lines = [json.dumps({"custom_id": custom_id, "result": payload}) for custom_id, (_, payload) in
                 batch.results.items()]
        return Response(("\n".join(lines) + "\n").encode(), media_type="application/binary")

    async def cancel(request: Request) -> Response:
        problem_response = check_headers(request)
        if problem_response is not None:
            return problem_response
        batch = state.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _error(404, "not_found_error", f"message_batch_id: {request.path_params['batch_id']}")
        state.record(f"/v1/messages/batches/{batch.id}/cancel", {})
        with state.batches.lock:
            if batch.status == "in_progress":
                batch.cancel_requested = True
                batch.meta["cancel_initiated_at"] = time.time()
                batch.enter(["in_progress", "canceling", "ended"], 1)
        return JSONResponse(batch_object(batch, server.url))

    async def delete(request: Request) -> Response:
        problem_response = check_headers(request)
        if problem_response is not None:
            return problem_response
        batch = state.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _error(404, "not_found_error", f"message_batch_id: {request.path_params['batch_id']}")
        if batch.status != "ended":
            return _error(400, "invalid_request_error", "Message Batch must be ended before it can be deleted.")
        with state.batches.lock:
            state.batches.batches.pop(batch.id, None)
        return JSONResponse({"id": batch.id, "type": "message_batch_deleted"})

    return [Route("/v1/messages/batches", create, methods=["POST"]),
            Route("/v1/messages/batches", list_batches, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", retrieve, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}", delete, methods=["DELETE"]),
            Route("/v1/messages/batches/{batch_id}/results", results, methods=["GET"]),
            Route("/v1/messages/batches/{batch_id}/cancel", cancel, methods=["POST"])]


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def batch_object(batch: FakeBatch, base_url: str) -> dict[str, Any]:
    """The MessageBatch object: processing_status and request_counts (tallies appear once it has ended)."""
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if batch.results is None:
        counts["processing"] = len(batch.lines)
    else:
        for kind, _ in batch.results.values():
            counts[kind] += 1
    ended = batch.status == "ended"
    return {"id": batch.id, "type": "message_batch", "processing_status": batch.status, "request_counts": counts,
            "created_at": _iso(batch.created_at), "expires_at": _iso(batch.created_at + BATCH_WINDOW_S),
            "ended_at": _iso(batch.times.get("ended")), "archived_at": None,
            "cancel_initiated_at": _iso(batch.meta.get("cancel_initiated_at")),
            "results_url": f"{base_url}/v1/messages/batches/{batch.id}/results" if ended else None}


def _on_enter(state: ServerState, batch: FakeBatch) -> None:
    """Process the requests when the batch ends: canceled if cancellation was asked for, else answered like
    realtime calls (or errored / expired as injected)."""
    if batch.status != "ended":
        return
    batch.results = {}
    for entry in batch.lines:
        custom_id = entry["custom_id"]
        if batch.cancel_requested:
            batch.results[custom_id] = ("canceled", {"type": "canceled"})
            continue
        batch.results[custom_id] = _process_request(state, entry["params"])
    with state.lock:
        state.counts["batch_requests"] += len(batch.lines)


def _process_request(state: ServerState, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    outcome, status = state.take_batch_outcome()
    if outcome == "expired":
        return "expired", {"type": "expired"}
    invalid = _validate(params, state.config)
    if invalid is None and outcome == "errored":
        type_, default = _STATUS_TYPES.get(status or 500, ("api_error", "Injected error."))
        invalid = (status or 500, type_, default)
    if invalid is not None:
        _, type_, message = invalid
        return "errored", {"type": "errored", "error": {"type": "error", "error": {"type": type_,
                                                                                   "message": message}}}
    message = answer(state, params, input_token_count(params))
    return "succeeded", {"type": "succeeded", "message": message}


def anthropic_subprocess(config: dict[str, Any] | None = None, port: int = 0,
                       args: list[str] | None = None) -> SubprocessServer:
    """An Anthropic fake in a child process (not started: use ``with`` or ``.start()``)."""
    return SubprocessServer("tests.fakes.anthropic_server", "", config, port=port, args=args)


if __name__ == "__main__":
    main(AnthropicFakeServer)
