"""What every route needs: the app's state, and the authenticated, rate-limited caller."""

from __future__ import annotations

from dataclasses import dataclass

from accord.api.http.auth import (
    COOKIE_NAME,
    Principal,
    SessionSigner,
    key_from_headers,
    lookup_key,
    lookup_key_id,
    unauthenticated,
)
from accord.api.http.backends import ExecutionBackend
from accord.api.http.config import ApiSettings
from accord.api.http.observability import ApiMetrics, project_id_var
from accord.api.http.problems import ProblemError
from accord.api.http.rate_limit import KeyRateLimiter
from accord.api.http.reports import ReportCache
from accord.api.http.template_store import TemplateStore
from fastapi import Request
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool


@dataclass
class AppState:
    engine: Engine
    settings: ApiSettings
    backend: ExecutionBackend
    metrics: ApiMetrics
    limiter: KeyRateLimiter
    templates: TemplateStore
    reports: ReportCache
    sessions: SessionSigner


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.accord
    return state


async def _authenticate(request: Request, key: str | None) -> Principal:
    state = state_of(request)
    if not key:
        raise unauthenticated("send your API key as 'Authorization: Bearer <key>'")
    principal = await run_in_threadpool(lookup_key, state.engine, key)
    if principal is None:
        raise unauthenticated("the API key is not valid (unknown or revoked)")
    return _admit(request, principal)


def _admit(request: Request, principal: Principal) -> Principal:
    state = state_of(request)
    decision = state.limiter.check(principal.key_id)
    if not decision.allowed:
        state.metrics.api_rate_limited.inc()
        raise ProblemError(429, f"rate limit of {state.settings.rate_limit_per_minute:g} requests per minute "
                                f"exceeded for this key; retry after {decision.retry_after_s:.1f} s",
                           headers={"Retry-After": KeyRateLimiter.retry_after_header(decision.retry_after_s)},
                           retry_after_s=round(decision.retry_after_s, 3))
    request.state.principal = principal
    project_id_var.set(principal.project_id)
    return principal


async def api_principal(request: Request) -> Principal:
    """The caller of an API route (key in the Authorization or X-API-Key header; never a cookie, so
    another site cannot make a logged-in browser call the API)."""
    return await _authenticate(request, key_from_headers(request))


async def dashboard_principal(request: Request) -> Principal:
    """The caller of a dashboard page (a signed session in the login cookie); a missing, forged, expired or
    revoked session sends the browser to the login page."""
    state = state_of(request)
    key_id = state.sessions.verify(request.cookies.get(COOKIE_NAME))
    principal = await run_in_threadpool(lookup_key_id, state.engine, key_id) if key_id is not None else None
    if principal is None:
        raise LoginRequired()
    return _admit(request, principal)


class LoginRequired(Exception):
    """Answered with a redirect to /login."""
