"""Short kinds for a failed request's last error, for failure counts in the report, the API and the dashboard
('openai: HTTP 400 invalid_request_error: ...' -> 'HTTP 400'; 'TimeoutError: ...' -> 'TimeoutError')."""

from __future__ import annotations

import re

_HTTP = re.compile(r"\bHTTP (\d{3})\b")
_EXCEPTION = re.compile(r"^(?:[a-z_]+: )?([A-Z][A-Za-z0-9_]*(?:Error|Exception|Timeout))\b")


def failure_kind(message: str | None) -> str:
    """A short kind for a failed request's last error ('openai: HTTP 400 ...' -> 'HTTP 400'; 'TimeoutError',
    'timeout', 'connection', ...)."""
    text = (message or "").strip()
    if not text:
        return "unknown"
    m = _HTTP.search(text)
    if m:
        return m.group(0)
    m = _EXCEPTION.match(text)
    if m:
        return m.group(1)
    lowered = text.lower()
    for word, kind in (("timed out", "timeout"), ("timeout", "timeout"), ("rate limit", "rate limit"),
                       ("connection", "connection"), ("budget", "budget exhausted")):
        if word in lowered:
            return kind
    return text.split(":", 1)[0][:60]
