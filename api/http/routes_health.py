"""/healthz (the process answers), /readyz (the database answers and is migrated) — both without auth —
and /metrics (Prometheus; the operator's bearer token, since the figures span all projects)."""

from __future__ import annotations

import hmac
from typing import Any

from accord.api.http.common import problem_responses
from accord.api.http.deps import state_of
from accord.api.http.problems import ProblemError
from accord.api.http.schemas import Health
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Any:
    return {"status": "ok"}


def _database_ready(engine: Any) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        conn.execute(text("SELECT version_num FROM alembic_version")).first()


@router.get("/readyz", response_model=Health, responses=problem_responses(503), summary="Readiness (database)")
async def readyz(request: Request) -> Any:
    try:
        await run_in_threadpool(_database_ready, state_of(request).engine)
    except Exception as err:
        raise ProblemError(503, f"the database is not ready ({type(err).__name__})", slug="unavailable") from None
    return {"status": "ready"}


@router.get("/metrics", responses={**problem_responses(401, 404), 200: {
    "description": "Prometheus text format", "content": {"text/plain": {}}}}, summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    state = state_of(request)
    token = state.settings.metrics_token
    if not token:
        raise ProblemError(404, "metrics are off on this server (set ACCORD_API_METRICS_TOKEN)")
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise ProblemError(401, "send the metrics token as 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": 'Bearer realm="accord-metrics"'})
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
