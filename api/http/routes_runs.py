"""/api/v1/runs: list, status, start / pause / resume / cancel, the progress event stream, and the run's
results: ratings (cursor pages, CSV / Parquet export), metrics, the report (HTML, or its data as JSON)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from accord.api.http.auth import Principal
from accord.api.http.common import AUTHED, After, Limit, RowId, problem_responses
from accord.api.http.deps import AppState, api_principal, state_of
from accord.api.http.live import live_detail
from accord.api.http.problems import ProblemError, conflict
from accord.api.http.progress_stream import progress_events
from accord.api.http.ratings import export_csv, export_parquet, ratings_page
from accord.api.http.schemas import MetricOut, Page, RatingOut, RunDetail, RunOut
from accord.api.http.store import TERMINAL, check_run, list_runs, run_detail
from accord.models.schema import Metric, RequestStatus, RunStatus
from accord.report.build import ReportData
from accord.scheduler import run_control
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], responses=AUTHED)
Text = Annotated[str | None, Query(max_length=500)]


@router.get("", response_model=Page[RunOut], summary="List runs (newest first)")
def runs(request: Request, principal: Annotated[Principal, Depends(api_principal)], limit: Limit = 50,
         after: After = None, status: RunStatus | None = None,
         campaign_id: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> Any:
    items, cursor = list_runs(state_of(request).engine, principal.project_id, after=after, limit=limit,
                              status=status.value if status else None, campaign_id=campaign_id)
    return {"items": items, "next_cursor": cursor}


@router.get("/{run_id}", response_model=RunDetail, responses=problem_responses(404), summary="A run's status")
def show_run(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    """Counts, rate, ETA, cost, failures by kind and answer outcomes; per model, progress, pace against its
    limit, the limiter's current pace, 429s, ETA, cost and failures."""
    return live_detail(state_of(request), principal.project_id, run_id)


def control(state: AppState, principal: Principal, run_id: int, action: str) -> dict[str, Any]:
    """Start / pause / resume / cancel a run of the caller's project (409 when its status forbids it)."""
    engine = state.engine
    run = check_run(engine, principal.project_id, run_id)
    try:
        if action == "start":
            if run.status != RunStatus.pending.value:
                raise conflict(f"run {run_id} is {run.status}; only a pending run can be started")
            state.backend.start(run_id)
        elif action == "pause":
            run_control.pause_run(engine, run_id)
        elif action == "resume":
            run_control.resume_run(engine, run_id)
            state.backend.start(run_id)
        elif action == "cancel":
            run_control.cancel_run(engine, run_id)
            run_control.finalize_if_done(engine, run_id)
    except run_control.RunStateError as err:
        raise conflict(str(err)) from None
    return run_detail(engine, principal.project_id, run_id)


def _action_route(action: str, summary: str) -> None:
    def handler(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
        return control(state_of(request), principal, run_id, action)

    handler.__name__ = f"{action}_run"
    router.add_api_route(f"/{{run_id}}/{action}", handler, methods=["POST"], response_model=RunDetail,
                         status_code=202 if action in ("start", "resume") else 200,
                         responses=problem_responses(404, 409), summary=summary)


_action_route("start", "Start a pending run")
_action_route("pause", "Pause a run (in-flight requests finish)")
_action_route("resume", "Resume a paused run")
_action_route("cancel", "Cancel a run (pending requests are dropped, in-flight ones finish)")


@router.get("/{run_id}/events", responses={**problem_responses(404), 200: {
    "description": "Server-sent events: progress, end, report", "content": {"text/event-stream": {}}}},
    response_class=StreamingResponse, summary="Stream a run's progress (SSE)")
def events(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    return progress_response(request, principal, run_id)


def progress_response(request: Request, principal: Principal, run_id: int) -> StreamingResponse:
    state = state_of(request)
    check_run(state.engine, principal.project_id, run_id)
    stream = progress_events(request, lambda: live_detail(state, principal.project_id, run_id),
                             interval_s=state.settings.sse_interval_s, max_s=state.settings.sse_max_s)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{run_id}/ratings", response_model=Page[RatingOut], responses=problem_responses(404),
            summary="A run's rating requests and ratings, by cursor")
def ratings(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)],
            limit: Limit = 100, after: After = None, model: Text = None, template: Text = None,
            status: RequestStatus | None = None) -> Any:
    """One row per rating request (rating fields null until it is rated), ordered by request id; filter by
    model alias, template name and request status."""
    engine = state_of(request).engine
    check_run(engine, principal.project_id, run_id)
    items, cursor = ratings_page(engine, run_id, after=after, limit=limit, model=model, template=template,
                                 status=status.value if status else None)
    return {"items": items, "next_cursor": cursor}


@router.get("/{run_id}/ratings/export", responses={**problem_responses(404), 200: {
    "description": "CSV or Parquet file", "content": {"text/csv": {}, "application/vnd.apache.parquet": {}}}},
    response_class=StreamingResponse, summary="Export a run's ratings (streamed CSV or Parquet)")
def export(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)],
           format: Literal["csv", "parquet"] = "csv", model: Text = None, template: Text = None,
           status: RequestStatus | None = None) -> Any:
    return export_response(request, principal, run_id, format, model, template, status.value if status else None)


def export_response(request: Request, principal: Principal, run_id: int, format: str, model: str | None,
                    template: str | None, st: str | None) -> StreamingResponse:
    engine = state_of(request).engine
    check_run(engine, principal.project_id, run_id)
    if format == "parquet":
        body = export_parquet(engine, run_id, model, template, st)
        media, name = "application/vnd.apache.parquet", f"run-{run_id}-ratings.parquet"
    else:
        body = export_csv(engine, run_id, model, template, st)
        media, name = "text/csv; charset=utf-8", f"run-{run_id}-ratings.csv"
    return StreamingResponse(iterate_in_threadpool(body), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/{run_id}/metrics", response_model=list[MetricOut], responses=problem_responses(404),
            summary="A run's metrics")
def metrics(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)],
            name: Text = None, model: Text = None, template: Text = None,
            slice: Annotated[str | None, Query(max_length=500, description="e.g. 'all' or 'gender=Woman'")] = None,
            ) -> Any:
    engine = state_of(request).engine
    check_run(engine, principal.project_id, run_id)
    q = select(Metric).where(col(Metric.run_id) == run_id).order_by(col(Metric.id))
    for column, value in ((col(Metric.name), name), (col(Metric.model), model), (col(Metric.template), template),
                          (col(Metric.slice), slice)):
        if value is not None:
            q = q.where(column == value)
    with Session(engine) as session:
        rows = session.execute(q).scalars().all()
    return [{k: getattr(m, k) for k in MetricOut.model_fields} for m in rows]


@router.get("/{run_id}/report", response_class=HTMLResponse, responses={
    **problem_responses(404, 409), 200: {"description": "The HTML report", "content": {"text/html": {}}}},
    summary="A finished run's HTML report")
async def report(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    return await report_response(request, principal, run_id)


async def finished_report(request: Request, principal: Principal, run_id: int) -> tuple[ReportData, str]:
    """The report data and HTML of a finished run of the caller's project (409 while it runs)."""
    state = state_of(request)
    run = await run_in_threadpool(check_run, state.engine, principal.project_id, run_id)
    if run.status not in TERMINAL:
        raise ProblemError(409, f"run {run_id} is {run.status}; its report is made when it finishes",
                           slug="conflict", run_status=run.status)
    return await run_in_threadpool(state.reports.get, state.engine, run)


async def report_response(request: Request, principal: Principal, run_id: int) -> HTMLResponse:
    _data, html = await finished_report(request, principal, run_id)
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})


@router.get("/{run_id}/report.json", responses={
    **problem_responses(404, 409), 200: {"description": "The report's data: run summary, every metric, readings",
                                         "content": {"application/json": {}}}},
    response_class=Response, summary="A finished run's report as JSON")
async def report_json(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    """What ``accord report RUN --format json`` writes."""
    data, _html = await finished_report(request, principal, run_id)
    return Response(json.dumps(data.to_json(), indent=2, default=str), media_type="application/json")


REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
