"""A run's status as progress displays read it: the stored figures (`store.run_detail`) with, per model, what
only the running process knows: the rate limiter's current pace for the model and the 429s its provider
answered this server. The API's run status, the event stream and the dashboard's run page all use it."""

from __future__ import annotations

import threading
import time
from typing import Any

from accord.api.http.deps import AppState
from accord.api.http.store import run_detail
from accord.models.schema import ModelSpec
from sqlmodel import Session

RETRY_AFTER_S = 30.0   # a limiter store that did not answer is asked again after this


class _Specs:
    """Model specs by id (rows never change: identical specs share one row)."""

    def __init__(self) -> None:
        self._data: dict[tuple[int, int], ModelSpec] = {}
        self._lock = threading.Lock()

    def get(self, state: AppState, spec_id: int) -> ModelSpec | None:
        key = (id(state.engine), spec_id)
        with self._lock:
            spec = self._data.get(key)
        if spec is None:
            with Session(state.engine, expire_on_commit=False) as session:
                spec = session.get(ModelSpec, spec_id)
            if spec is not None:
                with self._lock:
                    self._data[key] = spec
        return spec


SPECS = _Specs()
_unavailable_until: dict[int, float] = {}


def add_live_figures(state: AppState, detail: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """``detail`` with each per-model row's limiter pace and provider 429s (None where not known)."""
    now = time.monotonic() if now is None else now
    limiter = getattr(state.backend, "limiter", None)
    if limiter is not None and _unavailable_until.get(id(state.backend), 0.0) > now:
        limiter = None
    seen = state.metrics.rate_limited_by_provider()
    for row in detail.get("per_model", []):
        row["provider_429s"] = seen.get(row["provider"], 0) if state.backend.name == "embedded" else None
        pace: dict[str, float | None] = {}
        spec = SPECS.get(state, int(row["model_spec_id"])) if limiter is not None else None
        if limiter is not None and spec is not None:
            try:
                pace = limiter.pace(spec)
            except (*getattr(limiter.store, "errors", ()), OSError):
                _unavailable_until[id(state.backend)] = now + RETRY_AFTER_S
                limiter = None
        row["limiter_rpm"] = pace.get("rpm")
        row["limiter_factor"] = pace.get("factor")
        row["blocked_for_s"] = pace.get("blocked_for_s")
    return detail


def live_detail(state: AppState, project_id: int, run_id: int) -> dict[str, Any]:
    return add_live_figures(state, run_detail(state.engine, project_id, run_id))
