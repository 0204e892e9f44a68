"""A local HTTP server speaking the OpenAI REST wire format: ``POST /v1/chat/completions``, ``GET /v1/models``,
the Files API (``/v1/files``: upload, retrieve, content, delete) and the Batch API (``/v1/batches``: create,
retrieve, list, cancel).

In process::

    with OpenAIFakeServer(latency_ms=20, rpm=600, window_s=1) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="test")

As a subprocess: ``python -m tests.fakes.openai_server --port 8001 --latency-ms 200 --rpm 6000``
(prints ``LISTENING http://127.0.0.1:PORT`` when ready), or ``openai_subprocess(config)``.

Answers are a label chosen from a hash of the prompt (labels from a json_schema ``enum``, else the
configured ``labels``), so they vary across items and repeat across runs; ``logprobs`` report the fake
model's label distribution (``answers.label_distribution``) in the real response shape.

Batches walk validating -> in_progress -> finalizing -> completed (or failed at validation, expired with
partial results, cancelling -> cancelled), one state per ``batch_polls_per_state`` retrieve calls or
``batch_state_seconds``. Validation enforces one model per batch, the endpoint, unique custom_ids and the
size limits; ``batch_errored_next`` / ``batch_expired_next`` / ``batch_fail_next`` inject partial results.
Every request is answered like a realtime call; the results go to an output file (status 200) and an
error file (errors, expired requests), matched by ``custom_id``.
"""

from __future__ import annotations

import hashlib
import json
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
    FakeBatch,
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
CACHE_MIN_TOKENS = 1024
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
                Route("/v1/models", models, methods=["GET"]), *batch_routes(state)]


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
    prompt_tokens = prompt_token_count(body)
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
    return JSONResponse(answer(state, body, prompt_tokens), headers=headers)


def answer(state: ServerState, body: dict[str, Any], prompt_tokens: int) -> dict[str, Any]:
    """The completion for a valid request, with the scripted text (if any) and prompt caching applied."""
    return completion(body, state.config, prompt_tokens, scripted=state.take_text(),
                      cached_tokens=cached_prompt_tokens(state, body))


def cached_prompt_tokens(state: ServerState, body: dict[str, Any]) -> int:
    """OpenAI's automatic prompt caching, simplified: a system/developer first message of at least
    ``CACHE_MIN_TOKENS`` tokens seen before (same model) is read from the cache in 128-token steps."""
    first = body["messages"][0]
    if first.get("role") not in ("system", "developer"):
        return 0
    text = content_text(first.get("content"))
    tokens = count_tokens(text) + 4
    key = hashlib.sha256(f"{body['model']}\x00{text}".encode()).hexdigest()
    read, _ = state.cached_prefix(key, tokens, CACHE_MIN_TOKENS)
    return (read // 128) * 128


def prompt_token_count(body: dict[str, Any]) -> int:
    return sum(count_tokens(content_text(m.get("content"))) + 4 for m in body["messages"]) + 3


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


def completion(body: dict[str, Any], config: ServerConfig, prompt_tokens: int, *, scripted: str | None = None,
               cached_tokens: int = 0) -> dict[str, Any]:
    """The chat.completion object the fake model answers for ``body`` (``scripted``: answer this text)."""
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
        if scripted is not None:
            text = scripted
        elif config.fixed_text is not None:
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
                                                             answer_is_label=config.fixed_text is None
                                                             and scripted is None),
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
                           "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
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


# --------------------------------------------------------------------------------------------- batch API
BATCH_ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions")
BATCH_MAX_REQUESTS = 50_000
BATCH_MAX_BYTES = 200 * 1024 * 1024
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_WINDOW_S = 24 * 3600
_PATH = ["validating", "in_progress", "finalizing", "completed"]
_STAMPS = {"in_progress": "in_progress_at", "finalizing": "finalizing_at", "completed": "completed_at",
           "failed": "failed_at", "expired": "expired_at", "cancelling": "cancelling_at", "cancelled": "cancelled_at"}


def batch_routes(state: ServerState) -> list[Route]:
    """The Files API (upload, retrieve, content, delete) and the Batch API (create, retrieve, list, cancel)."""

    def authorized(handler):  # type: ignore[no-untyped-def]
        async def wrapped(request: Request) -> Response:
            expected = state.config.require_api_key
            sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if expected is not None and sent != expected:
                state.count("auth_failures")
                return _error(state, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            return await handler(request)
        return wrapped

    async def upload(request: Request) -> Response:
        form = await request.form()
        state.record("/v1/files", {"purpose": form.get("purpose")})
        upload_file, purpose = form.get("file"), form.get("purpose")
        if upload_file is None or isinstance(upload_file, str):
            return _error(state, 400, "Missing required parameter: 'file'.", "invalid_request_error",
                          "missing_required_parameter", "file")
        if purpose not in FILE_PURPOSES:
            return _error(state, 400, f"Invalid value for 'purpose': {purpose!r}.", "invalid_request_error",
                          "invalid_value", "purpose")
        content = await upload_file.read()
        state.count("files_uploaded")
        record = state.batches.add_file(content, str(purpose), upload_file.filename or "upload.jsonl")
        return JSONResponse(_file_object(record))

    async def get_file(request: Request) -> Response:
        record = state.batches.get_file(request.path_params["file_id"])
        if record is None:
            return _no_such("file", request.path_params["file_id"])
        return JSONResponse(_file_object(record))

    async def file_content(request: Request) -> Response:
        record = state.batches.get_file(request.path_params["file_id"])
        if record is None:
            return _no_such("file", request.path_params["file_id"])
        return Response(record["content"], media_type="application/octet-stream")

    async def delete_file(request: Request) -> Response:
        file_id = request.path_params["file_id"]
        with state.batches.lock:
            found = state.batches.files.pop(file_id, None)
        if found is None:
            return _no_such("file", file_id)
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    async def create_batch(request: Request) -> Response:
        body, problem = await read_json(request)
        state.record("/v1/batches", body if problem is None else {"invalid_json": True})
        if problem is not None or not isinstance(body, dict):
            return _error(state, 400, problem or "The request body must be a JSON object.", "invalid_request_error")
        record = state.batches.get_file(str(body.get("input_file_id") or ""))
        if record is None:
            return _error(state, 400, f"Invalid 'input_file_id': '{body.get('input_file_id')}'. File not found.",
                          "invalid_request_error", "invalid_value", "input_file_id")
        if record["purpose"] != "batch":
            return _error(state, 400, "The input file must be uploaded with purpose 'batch'.",
                          "invalid_request_error", "invalid_value", "input_file_id")
        if body.get("endpoint") not in BATCH_ENDPOINTS:
            return _error(state, 400, f"Invalid value for 'endpoint': {body.get('endpoint')!r}.",
                          "invalid_request_error", "invalid_value", "endpoint")
        if body.get("completion_window") != "24h":
            return _error(state, 400, "Invalid value for 'completion_window': only '24h' is supported.",
                          "invalid_request_error", "invalid_value", "completion_window")
        batch = FakeBatch(id="batch_" + uuid.uuid4().hex[:24], lines=[], states=list(_PATH))
        batch.meta.update(input_file_id=record["id"], endpoint=body["endpoint"], metadata=body.get("metadata"),
                          errors=None, output_file_id=None, error_file_id=None, model=None)
        state.batches.add(batch)
        state.count("batches_created")
        return JSONResponse(batch_object(batch))

    async def get_batch(request: Request) -> Response:
        batch = state.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _no_such("batch", request.path_params["batch_id"])
        state.count("batch_polls")
        state.batches.advance(batch, state.config, lambda b: _on_enter(state, b))
        return JSONResponse(batch_object(batch))

    async def list_batches(request: Request) -> Response:
        after = request.query_params.get("after")
        limit = min(max(int(request.query_params.get("limit") or 20), 1), 100)
        ordered = state.batches.ordered()
        if after:
            ids = [b.id for b in ordered]
            ordered = ordered[ids.index(after) + 1:] if after in ids else []
        page = ordered[:limit]
        return JSONResponse({"object": "list", "data": [batch_object(b) for b in page],
                             "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None,
                             "has_more": len(ordered) > limit})

    async def cancel_batch(request: Request) -> Response:
        batch = state.batches.get(request.path_params["batch_id"])
        if batch is None:
            return _no_such("batch", request.path_params["batch_id"])
        state.record(f"/v1/batches/{batch.id}/cancel", {})
        with state.batches.lock:
            if batch.status not in ("validating", "in_progress"):
                return _error(state, 409, f"Cannot cancel a batch with status '{batch.status}'.",
                              "invalid_request_error")
            batch.cancel_requested = True
            batch.enter([*batch.states[:batch.index + 1], "cancelling", "cancelled"], batch.index + 1)
        return JSONResponse(batch_object(batch))

    return [Route("/v1/files", authorized(upload), methods=["POST"]),
            Route("/v1/files/{file_id}", authorized(get_file), methods=["GET"]),
            Route("/v1/files/{file_id}", authorized(delete_file), methods=["DELETE"]),
            Route("/v1/files/{file_id}/content", authorized(file_content), methods=["GET"]),
            Route("/v1/batches", authorized(create_batch), methods=["POST"]),
            Route("/v1/batches", authorized(list_batches), methods=["GET"]),
            Route("/v1/batches/{batch_id}", authorized(get_batch), methods=["GET"]),
            Route("/v1/batches/{batch_id}/cancel", authorized(cancel_batch), methods=["POST"])]


def _no_such(kind: str, ident: str) -> Response:
    return JSONResponse(error_body(f"No such {kind}: {ident}", "invalid_request_error"), status_code=404)


def _file_object(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "content"}


def batch_object(batch: FakeBatch) -> dict[str, Any]:
    """The Batch object as the API returns it."""
    meta = batch.meta
    results = batch.results or {}
    completed = sum(1 for kind, _ in results.values() if kind == "succeeded")
    counts = {"total": len(batch.lines), "completed": completed, "failed": len(results) - completed}
    obj: dict[str, Any] = {
        "id": batch.id, "object": "batch", "endpoint": meta["endpoint"], "errors": meta["errors"],
        "input_file_id": meta["input_file_id"], "completion_window": "24h", "status": batch.status,
        "output_file_id": meta["output_file_id"], "error_file_id": meta["error_file_id"],
        "created_at": int(batch.created_at), "expires_at": int(batch.created_at + BATCH_WINDOW_S),
        "request_counts": counts, "metadata": meta["metadata"], "model": meta["model"],
    }
    for state_name, key in _STAMPS.items():
        obj[key] = int(batch.times[state_name]) if state_name in batch.times else None
    return obj


def _batch_failure(batch: FakeBatch, code: str, message: str, line: int | None = None) -> None:
    batch.meta["errors"] = {"object": "list", "data": [{"code": code, "message": message, "param": None,
                                                         "line": line}]}
    batch.times.pop("in_progress", None)
    batch.enter(["validating", "failed"], 1)


def _on_enter(state: ServerState, batch: FakeBatch) -> None:
    """Validate the input file when the batch leaves ``validating``; process every request when it enters
    ``finalizing`` (results to an output file and an error file)."""
    config = state.config
    if batch.status == "in_progress":
        record = state.batches.get_file(batch.meta["input_file_id"]) or {"content": b""}
        content: bytes = record["content"]
        if state.take_batch_failure():
            _batch_failure(batch, "invalid_request", "The batch could not be validated (injected failure).")
            return
        if len(content) > (config.batch_max_bytes or BATCH_MAX_BYTES):
            _batch_failure(batch, "file_too_large", f"The input file is larger than the {BATCH_MAX_BYTES} byte limit.")
            return
        lines, models, seen = [], set(), set()
        for number, raw in enumerate(content.decode("utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                _batch_failure(batch, "invalid_json_line", f"Line {number} is not valid JSON.", number)
                return
            if not isinstance(line, dict) or not line.get("custom_id") or not isinstance(line.get("body"), dict):
                _batch_failure(batch, "invalid_request", f"Line {number} needs custom_id and body.", number)
                return
            if line.get("method") != "POST" or line.get("url") != batch.meta["endpoint"]:
                _batch_failure(batch, "mismatched_endpoint", f"Line {number}: the url must be the batch's "
                               f"endpoint {batch.meta['endpoint']} with method POST.", number)
                return
            if line["custom_id"] in seen:
                _batch_failure(batch, "duplicate_custom_id", f"Line {number}: duplicate custom_id "
                               f"{line['custom_id']!r}.", number)
                return
            seen.add(line["custom_id"])
            models.add(line["body"].get("model"))
            lines.append(line)
        if not lines:
            _batch_failure(batch, "empty_file", "The input file has no requests.")
            return
        if len(models) > 1:
            _batch_failure(batch, "mismatched_model", "All requests in a batch must use the same model; "
                           f"found {', '.join(sorted(map(str, models)))}.")
            return
        if len(lines) > (config.batch_max_requests or BATCH_MAX_REQUESTS):
            _batch_failure(batch, "too_many_requests", f"A batch may hold at most "
                           f"{config.batch_max_requests or BATCH_MAX_REQUESTS} requests; got {len(lines)}.")
            return
        batch.lines = lines
        batch.meta["model"] = next(iter(models))
    elif batch.status == "finalizing":
        batch.results = {}
        output, errors = [], []
        for line in batch.lines:
            kind, payload = _process_line(state, line)
            batch.results[line["custom_id"]] = (kind, payload)
            (output if kind == "succeeded" else errors).append(json.dumps(payload))
        with state.lock:
            state.counts["batch_requests"] += len(batch.lines)
        if output:
            batch.meta["output_file_id"] = state.batches.add_file(("\n".join(output) + "\n").encode(), "batch_output",
                                                                  "batch_output.jsonl")["id"]
        if errors:
            batch.meta["error_file_id"] = state.batches.add_file(("\n".join(errors) + "\n").encode(), "batch_output",
                                                                 "batch_errors.jsonl")["id"]
        if any(kind == "expired" for kind, _ in batch.results.values()):
            batch.states[-1] = "expired"


def _process_line(state: ServerState, line: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(result type, output-file line) for one batch request."""
    custom_id, body = line["custom_id"], line["body"]
    ident = "batch_req_" + uuid.uuid4().hex[:24]
    outcome, status = state.take_batch_outcome()
    if outcome == "expired":
        return "expired", {"id": ident, "custom_id": custom_id, "response": None,
                           "error": {"code": "batch_expired", "message": "This request could not be executed "
                                     "before the completion window expired."}}
    invalid = _validate(body, state.config)
    if invalid is None and outcome == "errored":
        type_, code, default = _STATUS_ERRORS.get(status or 500, ("server_error", None, "Injected error."))
        invalid = (status or 500, default, code, None)
    if invalid is not None:
        code_status, message, code, param = invalid
        type_ = "server_error" if code_status >= 500 else "invalid_request_error"
        return "errored", {"id": ident, "custom_id": custom_id, "error": None,
                           "response": {"status_code": code_status, "request_id": f"req_{uuid.uuid4().hex}",
                                        "body": error_body(message, type_, code, param)}}
    result = answer(state, body, prompt_token_count(body))
    return "succeeded", {"id": ident, "custom_id": custom_id, "error": None,
                         "response": {"status_code": 200, "request_id": f"req_{uuid.uuid4().hex}", "body": result}}


def openai_subprocess(config: dict[str, Any] | None = None, port: int = 0,
                       args: list[str] | None = None) -> SubprocessServer:
    """An OpenAI fake in a child process (not started: use ``with`` or ``.start()``)."""
    return SubprocessServer("tests.fakes.openai_server", "/v1", config, port=port, args=args)


if __name__ == "__main__":
    main(OpenAIFakeServer)
