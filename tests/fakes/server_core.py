"""What the OpenAI and Anthropic fakes share: behaviour config, fault and rate-limit decisions, stats,
running the app in a background thread or as a subprocess, and the command line.

Each fake is a Starlette app served by uvicorn. Its behaviour (``ServerConfig``) is set at start and can
be changed at runtime, in process (``server.configure(...)``) or over HTTP (``POST /_admin/config``);
``GET /_admin/stats`` (or ``server.stats()``) reports what the server saw and did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Self

import httpx
import uvicorn
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.answers import DEFAULT_LABELS

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServerConfig(BaseModel):
    """How a fake server behaves. Every field can be changed at runtime."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_ms: float = Field(default=0.0, ge=0, description="Added to every non-429 response.")
    jitter_ms: float = Field(default=0.0, ge=0, description="Latency varies uniformly by +/- this much.")
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute (hard limit, sliding window).")
    tpm: int | None = Field(default=None, ge=1, description="Tokens (prompt + max output) per minute.")
    window_s: float = Field(default=60.0, gt=0, description="Sliding window; the limit is rpm * window_s / 60, "
                                                            "so window_s=1 enforces rpm/60 per second.")
    limit_mode: Literal["window", "bucket"] = Field(
        default="window", description="window: at most rpm * window_s / 60 requests in any sliding window; bucket: "
        "a token bucket of rpm * window_s / 60 requests' capacity refilled at rpm / 60 per second (how most "
        "providers enforce short windows).")
    error_rate: float = Field(default=0.0, ge=0, le=1, description="Probability of an injected error.")
    fail_next: int = Field(default=0, ge=0, description="The next N requests get an injected error.")
    fail_status: int = Field(default=500, ge=400, le=599, description="Status of injected errors (500, 503, 529, 400...).")
    fail_message: str | None = Field(default=None, description="Message of injected errors (default per status).")
    timeout_rate: float = Field(default=0.0, ge=0, le=1, description="Probability of hanging for hang_s.")
    timeout_next: int = Field(default=0, ge=0, description="The next N requests hang for hang_s.")
    hang_s: float = Field(default=30.0, ge=0, description="How long a 'timeout' request sleeps before answering.")
    malformed_rate: float = Field(default=0.0, ge=0, le=1, description="Probability of an invalid JSON body (200).")
    malformed_next: int = Field(default=0, ge=0, description="The next N requests get an invalid JSON body (200).")
    fixed_text: str | None = Field(default=None, description="Answer this text instead of a label.")
    answer_template: str = Field(default="{label}", description="Plain-text answer around the chosen label.")
    labels: list[str] = Field(default_factory=lambda: list(DEFAULT_LABELS),
                              description="Labels to answer from when the request names none (schema enum).")
    omit_usage: bool = Field(default=False, description="Leave 'usage' out (like some compatible servers).")
    omit_logprobs: bool = Field(default=False, description="Ignore logprobs requests (like some compatible servers).")
    snapshot_date: str | None = Field(default=None, description="Date suffix of the served model snapshot.")
    require_api_key: str | None = Field(default=None, description="Answer 401 unless this key is sent.")
    known_models: list[str] | None = Field(default=None, description="Answer 404 for any other model.")
    seed: int = Field(default=0, description="Seed of the fault and latency random draws.")
    max_log: int = Field(default=500, ge=0, description="How many request bodies the stats keep.")
    next_texts: list[str] = Field(default_factory=list, description="The next answers' texts, in order (one per "
                                  "answered request, realtime or batch); then the usual answers.")
    prompt_cache: bool = Field(default=True, description="Simulate prompt caching of long shared prefixes.")
    # --- batch APIs (OpenAI /v1/batches, Anthropic /v1/messages/batches) ---
    batch_polls_per_state: int = Field(default=1, ge=0, description="Each non-final batch state lasts this many "
                                       "retrieve calls of that batch (0: straight through).")
    batch_state_seconds: float | None = Field(default=None, ge=0, description="Instead: each state lasts this long.")
    batch_errored_next: int = Field(default=0, ge=0, description="The next N batch requests come back errored.")
    batch_error_status: int = Field(default=500, ge=400, le=599, description="HTTP status of errored batch requests.")
    batch_expired_next: int = Field(default=0, ge=0, description="The next N batch requests expire (partial results).")
    batch_fail_next: int = Field(default=0, ge=0, description="The next N batches fail validation as a whole.")
    batch_max_requests: int | None = Field(default=None, ge=1, description="Requests per batch (default: the API's).")
    batch_max_bytes: int | None = Field(default=None, ge=1, description="Bytes per batch (default: the API's).")


@dataclass
class Decision:
    """What to do with one request, decided at arrival."""

    kind: Literal["ok", "rate_limited", "error", "timeout", "malformed"]
    latency_s: float = 0.0
    retry_after_s: float = 0.0
    limit_kind: str = "requests"            # for 429: "requests" or "tokens"
    headers: dict[str, Any] = field(default_factory=dict)   # rate-limit figures for the response headers


@dataclass
class RateFigures:
    """The limiter's view after a decision, for the rate-limit headers."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float = 0.0
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float = 0.0


class ServerState:
    """Config, limiter windows, fault counters and stats, shared by the handlers (guarded by a lock)."""

    def __init__(self, config: ServerConfig) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._wall_offset = time.time() - time.monotonic()   # accepted_times on the limiter's own clock
        self.config = config
        self.rng = random.Random(config.seed)
        self._request_window: deque[float] = deque()
        self._bucket: tuple[float, float] | None = None    # (requests available, at monotonic time)
        self._token_window: deque[tuple[float, int]] = deque()
        self.prompt_cache: dict[str, float] = {}      # cached prefix key -> expiry (monotonic)
        self.batches = BatchStore()
        self.reset_stats()

    def reset_stats(self) -> None:
        with self.lock:
            self.counts = {"requests": 0, "accepted": 0, "rate_limited": 0, "errors_injected": 0,
                           "timeouts_injected": 0, "malformed_injected": 0, "auth_failures": 0,
                           "bad_requests": 0, "ok": 0, "batches_created": 0, "batch_requests": 0,
                           "batch_polls": 0, "files_uploaded": 0}
            self.accepted_times: deque[float] = deque(maxlen=200_000)
            self.request_log: deque[dict[str, Any]] = deque(maxlen=self.config.max_log)
            self.in_flight = 0
            self.max_in_flight = 0

    def reset_config(self, **settings: Any) -> ServerConfig:
        """Back to the defaults (plus ``settings``), with fresh limiter windows and random draws."""
        with self.lock:
            self.config = ServerConfig(**settings)
            self.rng = random.Random(self.config.seed)
            self._request_window.clear()
            self._bucket = None
            self._token_window.clear()
            self.prompt_cache.clear()
            self.batches = BatchStore()
            self.request_log = deque(self.request_log, maxlen=self.config.max_log)
            return self.config

    def configure(self, **changes: Any) -> ServerConfig:
        with self.lock:
            merged = self.config.model_dump()
            merged.update(changes)
            self.config = ServerConfig.model_validate(merged)
            if "seed" in changes:
                self.rng = random.Random(self.config.seed)
            if "max_log" in changes:
                self.request_log = deque(self.request_log, maxlen=self.config.max_log)
            if "rpm" in changes or "window_s" in changes:
                self._request_window.clear()
                self._bucket = None
            if "tpm" in changes or "window_s" in changes:
                self._token_window.clear()
            return self.config

    def take_text(self) -> str | None:
        """The next scripted answer text (``next_texts``), consumed; None when the script is empty."""
        with self.lock:
            texts = self.config.next_texts
            if not texts:
                return None
            self.config = self.config.model_copy(update={"next_texts": texts[1:]})
            return texts[0]

    def take_batch_outcome(self) -> tuple[str, int | None]:
        """("errored", status) / ("expired", None) / ("ok", None) for the next request a batch processes."""
        with self.lock:
            cfg = self.config
            if cfg.batch_errored_next > 0:
                self.config = cfg.model_copy(update={"batch_errored_next": cfg.batch_errored_next - 1})
                return "errored", cfg.batch_error_status
            if cfg.batch_expired_next > 0:
                self.config = cfg.model_copy(update={"batch_expired_next": cfg.batch_expired_next - 1})
                return "expired", None
            return "ok", None

    def take_batch_failure(self) -> bool:
        with self.lock:
            if self.config.batch_fail_next > 0:
                self.config = self.config.model_copy(update={"batch_fail_next": self.config.batch_fail_next - 1})
                return True
            return False

    def cached_prefix(self, key: str, tokens: int, minimum: int, ttl_s: float = 300.0) -> tuple[int, int]:
        """Prompt caching of a shared prefix of ``tokens`` tokens: (read, written). The first call with a
        prefix long enough writes it; calls within ``ttl_s`` read it (and refresh it)."""
        if not self.config.prompt_cache or tokens < minimum:
            return 0, 0
        now = time.monotonic()
        with self.lock:
            expiry = self.prompt_cache.get(key)
            self.prompt_cache[key] = now + ttl_s
            if expiry is not None and expiry > now:
                return tokens, 0
            return 0, tokens

    def record(self, path: str, body: Any) -> None:
        with self.lock:
            self.counts["requests"] += 1
            if self.config.max_log:
                self.request_log.append({"t": time.time(), "path": path, "body": body})

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def decide(self, tokens: int) -> tuple[Decision, RateFigures]:
        """Admit or refuse one request costing ``tokens`` (prompt + max output), then pick its fault."""
        with self.lock:
            cfg = self.config
            now = time.monotonic()
            figures = RateFigures()
            window = cfg.window_s
            while self._request_window and self._request_window[0] <= now - window:
                self._request_window.popleft()
            while self._token_window and self._token_window[0][0] <= now - window:
                self._token_window.popleft()
            if cfg.rpm is not None and cfg.limit_mode == "bucket":
                capacity, rate = max(1.0, cfg.rpm * window / 60.0), cfg.rpm / 60.0
                level, at = self._bucket if self._bucket is not None else (capacity, now)
                level = min(capacity, level + (now - at) * rate)
                figures.limit_requests = cfg.rpm
                if level < 1.0:
                    self._bucket = (level, now)
                    wait = (1.0 - level) / rate
                    figures.remaining_requests = 0
                    figures.reset_requests_s = wait
                    self.counts["rate_limited"] += 1
                    return Decision("rate_limited", retry_after_s=wait, limit_kind="requests"), figures
                self._bucket = (level - 1.0, now)
            elif cfg.rpm is not None:
                limit = max(1, math.floor(cfg.rpm * window / 60.0))
                figures.limit_requests = cfg.rpm
                if len(self._request_window) >= limit:
                    wait = self._request_window[0] + window - now
                    figures.remaining_requests = 0
                    figures.reset_requests_s = wait
                    self.counts["rate_limited"] += 1
                    return Decision("rate_limited", retry_after_s=wait, limit_kind="requests"), figures
            if cfg.tpm is not None:
                limit_tokens = max(1, math.floor(cfg.tpm * window / 60.0))
                used = sum(t for _, t in self._token_window)
                figures.limit_tokens = cfg.tpm
                if used + tokens > limit_tokens:
                    freed, wait = used, 0.0
                    for stamp, spent in self._token_window:   # wait until enough tokens leave the window
                        freed -= spent
                        wait = stamp + window - now
                        if freed + tokens <= limit_tokens:
                            break
                    figures.remaining_tokens = max(0, limit_tokens - used)
                    figures.reset_tokens_s = max(wait, 0.0)
                    self.counts["rate_limited"] += 1
                    return Decision("rate_limited", retry_after_s=max(wait, 0.001), limit_kind="tokens"), figures
                self._token_window.append((now, tokens))
                figures.remaining_tokens = max(0, limit_tokens - used - tokens)
                figures.reset_tokens_s = (self._token_window[0][0] + window - now)
            if cfg.rpm is not None and cfg.limit_mode == "bucket":
                figures.remaining_requests = int(self._bucket[0]) if self._bucket else None
            elif cfg.rpm is not None:
                self._request_window.append(now)
                limit = max(1, math.floor(cfg.rpm * window / 60.0))
                figures.remaining_requests = max(0, limit - len(self._request_window))
                figures.reset_requests_s = self._request_window[0] + window - now
            self.counts["accepted"] += 1
            self.accepted_times.append(now + self._wall_offset)
            latency = max(0.0, (cfg.latency_ms + self.rng.uniform(-cfg.jitter_ms, cfg.jitter_ms)) / 1000.0)
            kind: Literal["ok", "error", "timeout", "malformed"] = "ok"
            if cfg.fail_next > 0:
                self.config = cfg.model_copy(update={"fail_next": cfg.fail_next - 1})
                kind = "error"
            elif cfg.timeout_next > 0:
                self.config = cfg.model_copy(update={"timeout_next": cfg.timeout_next - 1})
                kind = "timeout"
            elif cfg.malformed_next > 0:
                self.config = cfg.model_copy(update={"malformed_next": cfg.malformed_next - 1})
                kind = "malformed"
            else:
                draw = self.rng.random()
                if draw < cfg.error_rate:
                    kind = "error"
                elif draw < cfg.error_rate + cfg.timeout_rate:
                    kind = "timeout"
                elif draw < cfg.error_rate + cfg.timeout_rate + cfg.malformed_rate:
                    kind = "malformed"
            key = {"error": "errors_injected", "timeout": "timeouts_injected",
                   "malformed": "malformed_injected"}.get(kind)
            if key:
                self.counts[key] += 1
            if kind == "timeout":
                latency = cfg.hang_s
            return Decision(kind, latency_s=latency), figures

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up early when the server stops (so hanging requests never block shutdown)."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.05))

    def stats(self) -> dict[str, Any]:
        with self.lock:
            times = list(self.accepted_times)
            per_second: dict[str, int] = {}
            for stamp in times:
                key = str(int(stamp))
                per_second[key] = per_second.get(key, 0) + 1
            return {**self.counts, "accepted_times": times, "accepted_per_second": per_second,
                    "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                    "request_log": list(self.request_log), "config": self.config.model_dump()}


@dataclass
class FakeBatch:
    """A batch inside a fake server: its lines ({"custom_id", "body"}), its lifecycle and its results.

    ``states`` is the path it walks (e.g. validating -> in_progress -> finalizing -> completed); it moves one
    state on after ``batch_polls_per_state`` retrieve calls (or ``batch_state_seconds``). ``results`` maps
    custom_id -> (result type, payload) once processed."""

    id: str
    lines: list[dict[str, Any]]
    states: list[str]
    created_at: float = field(default_factory=time.time)
    index: int = 0
    polls: int = 0
    entered: float = field(default_factory=time.monotonic)
    results: dict[str, tuple[str, Any]] | None = None
    cancel_requested: bool = False
    times: dict[str, float] = field(default_factory=dict)     # state -> wall time it was entered
    meta: dict[str, Any] = field(default_factory=dict)         # provider-specific fields

    @property
    def status(self) -> str:
        return self.states[self.index]

    @property
    def final(self) -> bool:
        return self.index == len(self.states) - 1

    def enter(self, states: list[str], index: int) -> None:
        self.states, self.index, self.polls, self.entered = states, index, 0, time.monotonic()
        self.times[self.status] = time.time()


class BatchStore:
    """Batches and files of a fake server (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()          # state hooks run under it and may add files
        self.batches: dict[str, FakeBatch] = {}
        self.files: dict[str, dict[str, Any]] = {}

    def add_file(self, content: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = "file-" + uuid.uuid4().hex[:24]
        record = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                  "filename": filename, "purpose": purpose, "status": "processed", "content": content}
        with self.lock:
            self.files[file_id] = record
        return record

    def get_file(self, file_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.files.get(file_id)

    def add(self, batch: FakeBatch) -> FakeBatch:
        batch.times[batch.status] = time.time()
        with self.lock:
            self.batches[batch.id] = batch
        return batch

    def get(self, batch_id: str) -> FakeBatch | None:
        with self.lock:
            return self.batches.get(batch_id)

    def ordered(self) -> list[FakeBatch]:
        """Newest first, as both APIs list them."""
        with self.lock:
            return sorted(self.batches.values(), key=lambda b: (b.created_at, b.id), reverse=True)

    def advance(self, batch: FakeBatch, config: ServerConfig, on_enter: Callable[[FakeBatch], None]) -> None:
        """One retrieve call of ``batch``: move it on per the configured timing, calling ``on_enter`` for
        each state it enters (the provider module processes requests on the right transition)."""
        with self.lock:
            while not batch.final:
                entered = batch.entered
                if config.batch_state_seconds is not None:
                    if time.monotonic() - entered < config.batch_state_seconds:
                        break
                elif batch.polls < config.batch_polls_per_state:
                    batch.polls += 1
                    break
                batch.enter(batch.states, batch.index + 1)
                if config.batch_state_seconds is not None:     # states follow each other on the clock
                    batch.entered = entered + config.batch_state_seconds
                on_enter(batch)

    def submitted_custom_ids(self) -> list[tuple[str, str, str]]:
        """(batch id, custom_id, final-or-current status) of every request ever submitted."""
        with self.lock:
            return [(b.id, line["custom_id"], b.status) for b in self.batches.values() for line in b.lines]


def max_in_window(times: list[float], window_s: float) -> int:
    """The largest number of ``times`` inside any half-open window [t, t + window_s)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, stamp in enumerate(ordered):
        while ordered[start] <= stamp - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def format_duration(seconds: float) -> str:
    """OpenAI's reset-header style: "120ms", "1.5s", "6m0s"."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{round(rest, 3):g}s"


async def read_json(request: Request) -> tuple[Any, str | None]:
    """(body, None) or (None, a message saying why the body is not JSON)."""
    raw = await request.body()
    try:
        return json.loads(raw), None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"We could not parse the JSON body of your request. ({exc})"


def admin_routes(state: ServerState) -> list[Route]:
    async def get_config(request: Request) -> Response:
        return JSONResponse(state.config.model_dump())

    async def post_config(request: Request) -> Response:
        body, problem = await read_json(request)
        if problem or not isinstance(body, dict):
            return JSONResponse({"error": problem or "expected a JSON object"}, status_code=400)
        try:
            config = state.configure(**body)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse(config.model_dump())

    async def get_stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def post_reset(request: Request) -> Response:
        """Empty the stats; with a JSON body, also reset the config to the defaults plus that body."""
        body, problem = await read_json(request) if await request.body() else ({}, None)
        if problem or not isinstance(body, dict):
            return JSONResponse({"error": problem or "expected a JSON object"}, status_code=400)
        state.reset_stats()
        config = state.config
        if body or request.query_params.get("config") == "1":
            try:
                config = state.reset_config(**body)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=422)
        return JSONResponse({"reset": True, "config": config.model_dump()})

    return [Route("/_admin/config", get_config, methods=["GET"]),
            Route("/_admin/config", post_config, methods=["POST"]),
            Route("/_admin/stats", get_stats, methods=["GET"]),
            Route("/_admin/reset", post_reset, methods=["POST"])]


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:   # older uvicorn: never touch signals off the main thread
        pass


class FakeServer:
    """A fake API server in a background thread of this process: ``start()``, ``base_url``, ``stop()``.

    Subclasses provide ``build_routes(state)`` and ``base_path`` ("/v1" for the OpenAI SDK's base_url)."""

    base_path = ""
    name = "fake"

    def __init__(self, config: ServerConfig | None = None, **settings: Any) -> None:
        self.state = ServerState(config or ServerConfig(**settings))
        if config is not None and settings:
            self.state.configure(**settings)
        self.app = Starlette(routes=self.build_routes(self.state) + admin_routes(self.state))
        self.host = "127.0.0.1"
        self.port: int | None = None
        self._server: _ThreadServer | None = None
        self._thread: threading.Thread | None = None

    def build_routes(self, state: ServerState) -> list[Route]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.name} server is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.base_path

    def start(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0) -> FakeServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
        self.host, self.port = host, sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2, backlog=2048, timeout_keep_alive=30)
        self._server = _ThreadServer(config)
        self.state.stopping.clear()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"{self.name}-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} server did not start on {host}:{self.port}")
            time.sleep(0.01)
        self._socket = sock
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self.state.stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()
        self._server = None
        self._thread = None

    def configure(self, **changes: Any) -> ServerConfig:
        return self.state.configure(**changes)

    def reset(self, **settings: Any) -> ServerConfig:
        """Default behaviour (plus ``settings``) and empty stats: a clean server for the next test."""
        self.state.reset_stats()
        return self.state.reset_config(**settings)

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset_stats(self) -> None:
        self.state.reset_stats()

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SubprocessServer:
    """A fake server in a child process (``python -m tests.fakes.<module> --port 0 ...``), controlled
    over its admin endpoints. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, module: str, base_path: str, config: dict[str, Any] | None = None,
                 host: str = "127.0.0.1", port: int = 0, args: list[str] | None = None) -> None:
        self.module = module
        self.base_path = base_path
        self.config = dict(config or {})
        self.args = list(args or [])
        self.host = host
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def base_url(self) -> str:
        return self.url + self.base_path

    def start(self, timeout: float = 20.0) -> SubprocessServer:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", self.module, "--host", self.host, "--port", str(self.port),
                   "--config-json", json.dumps(self.config), *self.args]
        # stderr goes to a file, never an unread pipe: a chatty long-running server must not block on it
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=self._stderr, text=True)
        line = _readline(self.process, self._stderr, timeout)
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"{self.module} did not start: {line!r}")
        self.url = line.split(" ", 1)[1].strip()
        return self

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = httpx.post(self.url + "/_admin/config", json=changes, timeout=10)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        response = httpx.get(self.url + "/_admin/stats", timeout=10)
        response.raise_for_status()
        return response.json()

    def reset_stats(self) -> None:
        httpx.post(self.url + "/_admin/reset", timeout=10).raise_for_status()

    def reset(self, **settings: Any) -> dict[str, Any]:
        """Default behaviour (plus ``settings``) and empty stats."""
        response = httpx.post(self.url + "/_admin/reset?config=1", json=settings, timeout=10)
        response.raise_for_status()
        return response.json()["config"]

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _readline(process: subprocess.Popen[str], stderr: IO[str], timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline() if process.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        return f"<no output after {timeout}s>"
    if not result[0]:
        process.wait(5)
        stderr.seek(0)
        return f"<exited {process.returncode}: {stderr.read().strip()[-2000:]}>"
    return result[0]


def main(server_factory: Callable[[ServerConfig], FakeServer], argv: list[str] | None = None) -> None:
    """Command line: every ServerConfig field is an option (``--latency-ms 200 --rpm 6000``)."""
    parser = argparse.ArgumentParser(description=f"Run a fake API server ({server_factory.__name__}).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout).")
    parser.add_argument("--config-json", default="{}", help="ServerConfig fields as a JSON object.")
    for name, info in ServerConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if info.annotation is bool:
            parser.add_argument(flag, dest=name, action="store_true", default=None, help=info.description)
        else:
            parser.add_argument(flag, dest=name, default=None, help=info.description)
    args = parser.parse_args(argv)
    settings: dict[str, Any] = json.loads(args.config_json)
    for name, info in ServerConfig.model_fields.items():
        value = getattr(args, name)
        if value is None:
            continue
        if isinstance(value, str) and "list" in str(info.annotation):
            value = [part for part in value.split(",") if part]
        settings[name] = value
    server = server_factory(ServerConfig.model_validate(settings))
    server.start(args.host, args.port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"LISTENING {server.url}", flush=True)
    while not done.wait(0.5):
        pass
    server.stop()
