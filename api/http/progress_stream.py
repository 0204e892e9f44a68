"""A run's progress as server-sent events (``text/event-stream``).

Events: ``progress`` (the run's status document, sent when it changes), ``end`` (the run reached a terminal
status), ``report`` (its metrics are computed: the report can be fetched), then the stream closes. A comment
line every 15 s keeps proxies from closing an idle stream. The stream also closes when the client goes away
or after ``max_s`` seconds (EventSource clients reconnect by themselves)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from accord.api.http.store import TERMINAL
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

KEEPALIVE_S = 15.0
REPORT_WAIT_S = 600.0


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    payload = json.dumps(data, default=str, separators=(",", ":"))
    lines.append(f"data: {payload}")
    return ("\n".join(lines) + "\n\n").encode()


async def progress_events(request: Request, read: Callable[[], dict[str, Any]], *, interval_s: float,
                          max_s: float) -> AsyncIterator[bytes]:
    """``read`` returns the run's current status document (it raises if the run vanished)."""
    started = time.monotonic()
    last: str | None = None
    last_sent = started
    seq = 0
    ended_at: float | None = None
    yield b"retry: 2000\n\n"
    while time.monotonic() - started < max_s:
        if await request.is_disconnected():
            return
        doc = await run_in_threadpool(read)
        fingerprint = json.dumps({k: v for k, v in doc.items() if k not in ("rate_per_s", "eta_s")},
                                 default=str, sort_keys=True)
        now = time.monotonic()
        if fingerprint != last:
            seq += 1
            yield sse("progress", doc, seq)
            last, last_sent = fingerprint, now
        elif now - last_sent >= KEEPALIVE_S:
            yield b": keepalive\n\n"
            last_sent = now
        if doc["status"] in TERMINAL:
            if ended_at is None:
                ended_at = now
                seq += 1
                yield sse("end", {"id": doc["id"], "status": doc["status"]}, seq)
            if doc.get("report_ready") or doc.get("error") or now - ended_at > REPORT_WAIT_S:
                seq += 1
                yield sse("report", {"id": doc["id"], "ready": bool(doc.get("report_ready")),
                                     "error": doc.get("error")}, seq)
                return
        await asyncio.sleep(interval_s)
