"""Prometheus metrics (``/metrics``) and structured JSON logs with request and run ids.

Metrics, on a registry of the app's own:
- ``accord_http_requests_total{method,route,status}`` (method: one of the standard ones or ``other``; route: the
  route's template or ``unmatched``; status: its class, ``2xx`` ... ``5xx``), ``accord_http_request_duration_seconds{method,route}``,
  ``accord_api_rate_limited_total`` — the API itself;
- ``accord_provider_requests_total{provider,outcome}`` with outcome ``sent`` | ``cached`` | ``failed``,
  ``accord_provider_rate_limited_total{provider}`` (429s), ``accord_provider_latency_seconds{provider}``,
  ``accord_provider_tokens_total{provider,direction}``, ``accord_provider_cost_usd_total{provider}`` — the
  provider calls made by runs executing in this process (embedded mode);
- ``accord_queue_depth{status}`` (pending / queued rating requests of unfinished runs) and
  ``accord_runs{status}``, read from the database at scrape time.

Logs are one JSON object per line: time, level, logger, message, and the ``request_id`` / ``run_id`` /
``project_id`` of the request being served (contextvars), plus any ``extra`` fields. Request bodies and
headers are never logged."""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from accord.models.schema import TERMINAL_RUN_STATUSES, RatingRequest, Run
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from sqlmodel import col

request_id_var: ContextVar[str | None] = ContextVar("accord_request_id", default=None)
run_id_var: ContextVar[int | None] = ContextVar("accord_run_id", default=None)
project_id_var: ContextVar[int | None] = ContextVar("accord_project_id", default=None)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_STANDARD_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (("request_id", request_id_var), ("run_id", run_id_var), ("project_id", project_id_var)):
            value = var.get()
            if value is not None:
                doc[key] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD_RECORD_FIELDS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send accord's logs to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger("accord")
    if any(getattr(h, "_accord_json", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._accord_json = True  # type: ignore[attr-defined]  # a marker attribute on the handler function
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class _DatabaseCollector(Collector):
    """Queue depth and runs per status, read when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []   # no database query when the collector is registered

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily("accord_queue_depth", "Rating requests of unfinished runs waiting or in flight.",
                                  labels=["status"])
        runs = GaugeMetricFamily("accord_runs", "Runs per status.", labels=["status"])
        terminal = [s.value for s in TERMINAL_RUN_STATUSES]
        try:
            with self.engine.connect() as conn:
                run_counts = dict(conn.execute(select(col(Run.status), func.count()).group_by(col(Run.status))).all())
                active_runs = select(col(Run.id)).where(col(Run.status).not_in(terminal))
                queue = dict(conn.execute(
                    select(col(RatingRequest.status), func.count())
                    .where(col(RatingRequest.run_id).in_(active_runs),
                           col(RatingRequest.status).in_(("pending", "queued")))
                    .group_by(RatingRequest.status)).all())
        except Exception:  # a scrape must not fail because the database blinked
            logging.getLogger("accord.api").warning("metrics: database unavailable")
            return []
        for status in ("pending", "queued"):
            depth.add_metric([status], float(queue.get(status, 0)))
        for status, n in sorted(run_counts.items()):
            runs.add_metric([status], float(n))
        return [depth, runs]


class ApiMetrics:
    """The app's metrics. Provider metrics are fed by ``InstrumentedProviderPool`` (embedded runs)."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter("accord_http_requests", "HTTP requests served.", ["method", "route", "status"],
                                     registry=r)
        self.http_latency = Histogram("accord_http_request_duration_seconds", "HTTP request latency.",
                                      ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.api_rate_limited = Counter("accord_api_rate_limited", "API requests refused by the per-key limit.",
                                        registry=r)
        self.provider_requests = Counter("accord_provider_requests",
                                         "Rating requests per provider: sent to it, answered from cache, failed.",
                                         ["provider", "outcome"], registry=r)
        self.provider_429 = Counter("accord_provider_rate_limited", "429 (or 529) answers from providers.",
                                    ["provider"], registry=r)
        self.provider_latency = Histogram("accord_provider_latency_seconds", "Provider call latency.", ["provider"],
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.provider_tokens = Counter("accord_provider_tokens", "Tokens per provider.", ["provider", "direction"],
                                       registry=r)
        self.provider_cost = Counter("accord_provider_cost_usd", "Spend per provider in USD.", ["provider"], registry=r)
        if engine is not None:
            r.register(_DatabaseCollector(engine))

    def observe_call(self, provider: str, *, latency_s: float | None = None, failed: bool = False,
                     rate_limited: bool = False, input_tokens: int = 0, output_tokens: int = 0,
                     cost_usd: float = 0.0) -> None:
        self.provider_requests.labels(provider, "sent").inc()
        if failed:
            self.provider_requests.labels(provider, "failed").inc()
        if rate_limited:
            self.provider_429.labels(provider).inc()
        if latency_s is not None:
            self.provider_latency.labels(provider).observe(latency_s)
        if input_tokens:
            self.provider_tokens.labels(provider, "input").inc(input_tokens)
        if output_tokens:
            self.provider_tokens.labels(provider, "output").inc(output_tokens)
        if cost_usd:
            self.provider_cost.labels(provider).inc(cost_usd)

    def rate_limited_by_provider(self) -> dict[str, int]:
        """429 (or 529) answers this process's provider calls received, per provider, since it started."""
        out: dict[str, int] = {}
        for family in self.provider_429.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["provider"]] = int(sample.value)
        return out

    def observe_cached(self, provider: str, n: int) -> None:
        if n > 0:
            self.provider_requests.labels(provider, "cached").inc(n)


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def status_class(status: int) -> str:
    """``2xx``, ``4xx``, ...: the status label of the HTTP metrics."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class RequestContextMiddleware:
    """Request id (from ``X-Request-ID`` if sane, else new), access log line, HTTP metrics. Pure ASGI, so
    streamed responses (SSE, exports) pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.log = logging.getLogger("accord.api.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if incoming and len(incoming) <= 64 and incoming.replace("-", "").isalnum() \
            else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        run_token = run_id_var.set(None)
        project_token = project_id_var.set(None)
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            status = status_holder["status"]
            # Labels come from fixed sets (a client chooses the method and path it sends, not the series).
            metric_method = method if method in KNOWN_METHODS else "other"
            self.metrics.http_requests.labels(metric_method, route_path, status_class(status)).inc()
            self.metrics.http_latency.labels(metric_method, route_path).observe(elapsed)
            run_id = (scope.get("path_params") or {}).get("run_id")
            if run_id is not None and run_id_var.get() is None:
                try:
                    run_id_var.set(int(run_id))
                except (TypeError, ValueError):
                    pass
            self.log.info("request", extra={"method": method, "path": scope.get("path"), "route": route_path,
                                            "status": status, "duration_ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)
            run_id_var.reset(run_token)
            project_id_var.reset(project_token)
