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
"""

from __future__ import annotations

import math
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
    FakeServer,
    RateFigures,
    ServerConfig,
    ServerState,
    SubprocessServer,
    main,
    read_json,
)

DEFAULT_SNAPSHOT_DATE = "20241022"
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

        return [Route("/v1/messages", messages, methods=["POST"]), Route("/v1/models", models, methods=["GET"])]


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

    input_tokens = count_tokens(content_text(body.get("system"))) + sum(
        count_tokens(content_text(m.get("content"))) + 4 for m in body["messages"])
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
    return JSONResponse(message_object(body, config, input_tokens), headers=headers)


def _rate_limited(decision: Decision, headers: dict[str, str]) -> Response:
    wait = decision.retry_after_s
    what = "requests" if decision.limit_kind == "requests" else "input tokens"
    message = (f"This request would exceed the rate limit for your organization of {what} per minute. "
               "For details, refer to: https://docs.claude.com/en/api/rate-limits.")
    headers = {**headers, "retry-after": str(max(1, math.ceil(wait)))}
    return _error(429, "rate_limit_error", message, headers)


def message_object(body: dict[str, Any], config: ServerConfig, input_tokens: int) -> dict[str, Any]:
    """The Messages API response object the fake model answers for ``body``."""
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
        tokens = tokenize(text)
        stop_reason = "end_turn"
        if len(tokens) > max_tokens:
            tokens, stop_reason = tokens[:max_tokens], "max_tokens"
        content = [{"type": "text", "text": "".join(tokens)}]
        output_tokens = len(tokens)
    usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                             "service_tier": "standard"}
    result: dict[str, Any] = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                              "model": snapshot, "content": content, "stop_reason": stop_reason,
                              "stop_sequence": None, "usage": usage}
    if config.omit_usage:
        result["usage"] = {"input_tokens": 0, "output_tokens": 0}
    return result


def anthropic_subprocess(config: dict[str, Any] | None = None, port: int = 0,
                       args: list[str] | None = None) -> SubprocessServer:
    """An Anthropic fake in a child process (not started: use ``with`` or ``.start()``)."""
    return SubprocessServer("tests.fakes.anthropic_server", "", config, port=port, args=args)


if __name__ == "__main__":
    main(AnthropicFakeServer)
