"""A local HTTP server speaking the OpenAI REST wire format: ``POST /v1/chat/completions``, ``GET /v1/models``.

In process::

    with OpenAIFakeServer(latency_ms=20, rpm=600, window_s=1) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="test")

As a subprocess: ``python -m tests.fakes.openai_server --port 8001 --latency-ms 200 --rpm 6000``
(prints ``LISTENING http://127.0.0.1:PORT`` when ready), or ``openai_subprocess(config)``.

Answers are a label chosen from a hash of the prompt (labels from a json_schema ``enum``, else the
configured ``labels``), so they vary across items and repeat across runs; ``logprobs`` report the fake
model's label distribution (``answers.label_distribution``) in the real response shape.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.answers import (
    choose_label,
    content_text,
    count_tokens,
    enum_from_schema,
    label_distribution,
    logprob,
    prompt_key,
    snapshot_name,
    structured_text,
    tokenize,
)
from tests.fakes.server_core import (
    Decision,
    FakeServer,
    RateFigures,
    ServerConfig,
    ServerState,
    SubprocessServer,
    format_duration,
    main,
    read_json,
)

DEFAULT_SNAPSHOT_DATE = "2024-07-18"
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_FILLER_TOKENS = ["The", " the", " I", " It", "\n", " a", " This", " Based", "**", " answer", " of", " is",
                  " rating", ":", " response", ".", " We", " To", " In", " On", " My", " Here"]
_STATUS_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    422: ("invalid_request_error", None, "Unprocessable request."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    529: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def rate_headers(figures: RateFigures) -> dict[str, str]:
    headers: dict[str, str] = {}
    if figures.limit_requests is not None:
        headers["x-ratelimit-limit-requests"] = str(figures.limit_requests)
        headers["x-ratelimit-remaining-requests"] = str(figures.remaining_requests or 0)
        headers["x-ratelimit-reset-requests"] = format_duration(figures.reset_requests_s)
    if figures.limit_tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(figures.limit_tokens)
        headers["x-ratelimit-remaining-tokens"] = str(figures.remaining_tokens or 0)
        headers["x-ratelimit-reset-tokens"] = format_duration(figures.reset_tokens_s)
    return headers


class OpenAIFakeServer(FakeServer):
    base_path = "/v1"
    name = "openai-fake"

    def build_routes(self, state: ServerState) -> list[Route]:
        async def chat_completions(request: Request) -> Response:
            state.enter()
            try:
                return await _chat_completions(state, request)
            finally:
                state.leave()

        async def models(request: Request) -> Response:
            names = state.config.known_models or ["gpt-4o-mini", "gpt-4o", "o3-mini"]
            return JSONResponse({"object": "list", "data": [
                {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "accord-fake"}
                for name in names]})

        return [Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                Route("/v1/models", models, methods=["GET"])]


def _error(state: ServerState, status: int, message: str, type_: str, code: str | None = None,
           param: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(error_body(message, type_, code, param), status_code=status,
                        headers={"x-request-id": f"req_{uuid.uuid4().hex}", **(headers or {})})


def _validate(body: Any, config: ServerConfig) -> tuple[int, str, str | None, str | None] | None:
    """(status, message, code, param) for a request the real API rejects, else None."""
    if not isinstance(body, dict):
        return 400, "The request body must be a JSON object.", None, None
    model = body.get("model")
    if not model:
        return 400, "you must provide a model parameter", None, None
    if config.known_models is not None and model not in config.known_models:
        return 404, f"The model `{model}` does not exist or you do not have access to it.", "model_not_found", None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return 400, "Missing required parameter: 'messages'.", "missing_required_parameter", "messages"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user",
                                                                        "assistant", "tool"):
            return 400, f"Invalid value for 'messages[{i}].role'.", "invalid_value", f"messages[{i}].role"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= float(temperature) <= 2:
        above = float(temperature) > 2
        message = (f"Invalid 'temperature': decimal {'above maximum' if above else 'below minimum'} value. "
                   f"Expected a value {'<= 2' if above else '>= 0'}, but got {temperature} instead.")
        return 400, message, "decimal_above_max_value" if above else "decimal_below_min_value", "temperature"
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not 0 <= int(top_logprobs) <= 20:
        message = (f"Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got "
                   f"{top_logprobs} instead.")
        return 400, message, "integer_above_max_value", "top_logprobs"
    if top_logprobs is not None and not body.get("logprobs"):
        return 400, "'logprobs' must be set to true in order to use 'top_logprobs'.", None, "top_logprobs"
    if str(model).startswith(REASONING_PREFIXES):
        if "max_tokens" in body:
            message = ("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                       "'max_completion_tokens' instead.")
            return 400, message, "unsupported_parameter", "max_tokens"
        for name in ("temperature", "top_p"):
            if name in body and body[name] != 1:
                message = (f"Unsupported value: '{name}' does not support {body[name]} with this model. Only the "
                           "default (1) value is supported.")
                return 400, message, "unsupported_value", name
    return None


async def _chat_completions(state: ServerState, request: Request) -> Response:
    body, problem = await read_json(request)
    state.record("/v1/chat/completions", body if problem is None else {"invalid_json": True})
    config = state.config
    if config.require_api_key is not None:
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if sent != config.require_api_key:
            state.count("auth_failures")
            masked = (sent[:3] + "*" * max(0, len(sent) - 7) + sent[-4:]) if len(sent) > 7 else "****"
            return _error(state, 401, f"Incorrect API key provided: {masked}. You can find your API key at "
                          "https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")
    if problem is not None:
        state.count("bad_requests")
        return _error(state, 400, problem, "invalid_request_error")
    invalid = _validate(body, config)
    if invalid is not None:
        status, message, code, param = invalid
        state.count("bad_requests")
        return _error(state, status, message, "invalid_request_error", code, param)

    max_out = body.get("max_completion_tokens") or body.get("max_tokens") or 16
    prompt_tokens = sum(count_tokens(content_text(m.get("content"))) + 4 for m in body["messages"]) + 3
    decision, figures = state.decide(prompt_tokens + int(max_out))
    headers = {"x-request-id": f"req_{uuid.uuid4().hex}", "openai-processing-ms": "0", **rate_headers(figures)}
    if decision.kind == "rate_limited":
        return _rate_limited(body, decision, headers)
    started = time.monotonic()
    await state.sleep(decision.latency_s)
    headers["openai-processing-ms"] = str(round((time.monotonic() - started) * 1000))
    if decision.kind == "error":
        type_, code, default = _STATUS_ERRORS.get(config.fail_status, ("server_error", None, "Injected error."))
        return _error(state, config.fail_status, config.fail_message or default, type_, code, headers=headers)
    if decision.kind == "malformed":
        return Response('{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess',
                        status_code=200, media_type="application/json", headers=headers)
    state.count("ok")
    return JSONResponse(completion(body, config, prompt_tokens), headers=headers)


def _rate_limited(body: dict[str, Any], decision: Decision, headers: dict[str, str]) -> Response:
    wait = decision.retry_after_s
    what = "requests per min (RPM)" if decision.limit_kind == "requests" else "tokens per min (TPM)"
    message = (f"Rate limit reached for {body.get('model')} in organization org-accordfake on {what}. "
               f"Please try again in {format_duration(wait)}. Visit https://platform.openai.com/account/rate-limits "
               "to learn more.")
    headers = {**headers, "retry-after": str(max(1, math.ceil(wait))),
               "retry-after-ms": str(max(1, round(wait * 1000)))}
    return JSONResponse(error_body(message, decision.limit_kind, "rate_limit_exceeded"), status_code=429,
                        headers=headers)


def completion(body: dict[str, Any], config: ServerConfig, prompt_tokens: int) -> dict[str, Any]:
    """The chat.completion object the fake model answers for ``body``."""
    model = body["model"]
    snapshot = snapshot_name(model, config.snapshot_date or DEFAULT_SNAPSHOT_DATE)
    prompt = prompt_key(body["messages"])
    labels, order = config.labels, ["label"]
    response_format = body.get("response_format") or {}
    structured = response_format.get("type") in ("json_schema", "json_object")
    if response_format.get("type") == "json_schema":
        schema_labels, order = enum_from_schema((response_format.get("json_schema") or {}).get("schema"))
        labels = schema_labels or labels
    max_out = int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096)
    want_logprobs = bool(body.get("logprobs")) and not config.omit_logprobs
    top_k = int(body.get("top_logprobs") or 0)
    choices = []
    completion_tokens = 0
    for index in range(int(body.get("n") or 1)):
        label = choose_label(prompt, labels, seed=body.get("seed"), index=index)
        if config.fixed_text is not None:
            text = config.fixed_text
        elif structured:
            text = structured_text(label, order)
        else:
            text = config.answer_template.format(label=label)
        tokens = tokenize(text)
        finish = "stop"
        if len(tokens) > max_out:
            tokens, finish = tokens[:max_out], "length"
        completion_tokens += len(tokens)
        choice: dict[str, Any] = {"index": index, "message": {"role": "assistant", "content": "".join(tokens),
                                                              "refusal": None},
                                  "logprobs": None, "finish_reason": finish}
        if want_logprobs:
            distribution = label_distribution(prompt, labels, seed=body.get("seed"), index=index)
            choice["logprobs"] = {"content": _token_logprobs(tokens, label, distribution, top_k,
                                                             answer_is_label=config.fixed_text is None),
                                  "refusal": None}
        choices.append(choice)
    result: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": snapshot, "system_fingerprint": "fp_" + hashlib.sha256(snapshot.encode()).hexdigest()[:10],
        "service_tier": "default", "choices": choices,
    }
    if not config.omit_usage:
        result["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                           "total_tokens": prompt_tokens + completion_tokens,
                           "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                           "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                         "accepted_prediction_tokens": 0,
                                                         "rejected_prediction_tokens": 0}}
    return result


def _entry(token: str, lp: float) -> dict[str, Any]:
    return {"token": token, "logprob": lp, "bytes": list(token.encode())}


def _token_logprobs(tokens: list[str], label: str, distribution: dict[str, float], top_k: int,
                    answer_is_label: bool) -> list[dict[str, Any]]:
    """Per-token logprobs; at the label's token the alternatives are the labels themselves (and a
    whitespace variant of the chosen one), elsewhere the sampled token is near-certain."""
    label_first = tokenize(label)[0].strip() if tokenize(label) else label
    matches = [i for i, tok in enumerate(tokens) if answer_is_label and tok.strip().strip('"') == label_first]
    # in a JSON answer the label is the value of the last key; in plain text it comes first
    label_at = (matches[-1] if "".join(tokens).lstrip().startswith("{") else matches[0]) if matches else None
    content = []
    for i, token in enumerate(tokens):
        if i == label_at:
            alternatives = []
            for other, p in distribution.items():
                first = tokenize(other)[0].strip() if tokenize(other) else other
                if other == label:
                    alternatives.append((token, p * 0.9))
                    alternatives.append((" " + first if not token.startswith(" ") else first, p * 0.1))
                else:
                    alternatives.append((first, p))
            alternatives.append(("The", 1e-4))
            alternatives.sort(key=lambda pair: -pair[1])
            sampled = next(p for tok, p in alternatives if tok == token)
            entry = _entry(token, logprob(sampled))
            entry["top_logprobs"] = [_entry(tok, logprob(p)) for tok, p in alternatives[:top_k]]
        else:
            entry = _entry(token, -1e-4)
            fillers = [tok for tok in _FILLER_TOKENS if tok != token]
            entry["top_logprobs"] = ([_entry(token, -1e-4)] + [_entry(tok, -10.0 - j) for j, tok in
                                                                enumerate(fillers[: max(0, top_k - 1)])])[:top_k]
        content.append(entry)
    return content


def openai_subprocess(config: dict[str, Any] | None = None, port: int = 0,
                       args: list[str] | None = None) -> SubprocessServer:
    """An OpenAI fake in a child process (not started: use ``with`` or ``.start()``)."""
    return SubprocessServer("tests.fakes.openai_server", "/v1", config, port=port, args=args)


if __name__ == "__main__":
    main(OpenAIFakeServer)
