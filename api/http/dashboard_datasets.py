"""Dashboard pages of datasets: the upload form (the options of ``accord import``, validated by the API's
upload path with its one-line errors) and a dataset's page (counts, label distribution, ratings per item,
per-group means with intervals, the human baseline: tables with server-drawn SVG charts)."""

from __future__ import annotations

from typing import Annotated, Any

from accord.api.http.auth import Principal
from accord.api.http.common import RowId
from accord.api.http.dashboard import check_csrf, check_origin, render
from accord.api.http.deps import AppState, dashboard_principal, state_of
from accord.api.http.explore import DESCRIPTIONS
from accord.api.http.problems import ProblemError
from accord.api.http.routes_datasets import import_upload
from accord.api.http.store import dataset_of, item_out, ratings_per_item, runs_of_dataset
from accord.api.http.svg import Interval, bar_chart, interval_chart
from accord.api.http.upload_form import CSRF_FIELD, FIELDS, TEXT_FIELDS, mapping_from_form
from accord.api.http.uploads import receive_upload
from accord.models.dataset_import import summarize_dataset
from accord.models.schema import Item
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

router = APIRouter(include_in_schema=False)


@router.get("/dashboard/datasets/new", response_class=HTMLResponse)
def upload_page(request: Request, principal: Annotated[Principal, Depends(dashboard_principal)]) -> HTMLResponse:
    return render(request, "dataset_new.html", fields=FIELDS, values={"layout": "long"}, error=None)


@router.post("/dashboard/datasets")
async def upload(request: Request, principal: Annotated[Principal, Depends(dashboard_principal)]) -> Response:
    """The form, multipart: streamed to disk under the upload limit, the token checked before anything is
    read from the files, then imported exactly as ``POST /api/v1/datasets``."""
    state = state_of(request)
    check_origin(request)
    sent: dict[str, str] = {}

    def mapping_of(fields: dict[str, str]) -> dict[str, Any]:
        sent.update(fields)
        check_csrf(request, fields.get(CSRF_FIELD, ""))
        return mapping_from_form(fields)

    try:
        upload_ = await receive_upload(request.headers, request.stream(), max_bytes=state.settings.max_upload_bytes,
                                       max_field_bytes=state.settings.max_document_bytes, text_fields=TEXT_FIELDS,
                                       mapping_of=mapping_of)
        try:
            created = await run_in_threadpool(import_upload, state, principal, upload_)
        finally:
            upload_.cleanup()
    except ProblemError as err:
        if err.status == 403:
            raise
        values = {k: v for k, v in sent.items() if k != CSRF_FIELD}
        return render(request, "dataset_new.html", status=err.status, fields=FIELDS, values=values,
                      error=err.detail)
    return RedirectResponse(f"/dashboard/datasets/{created['id']}", status_code=303)


def _charts(description: dict[str, Any]) -> dict[str, Any]:
    labels = description.get("label_distribution") or description.get("value_distribution") or {}
    charts: dict[str, Any] = {"labels": bar_chart(labels, "ratings per label") if labels else None, "groups": {}}
    scale = description.get("scale") or {}
    for attribute, entry in (description.get("groups") or {}).items():
        rows = [Interval(g["group"].split("=", 1)[-1], g.get("mean"), g.get("ci_low"), g.get("ci_high"))
                for g in entry.get("groups", []) if "mean" in g]
        if rows:
            charts["groups"][attribute] = interval_chart(rows, f"mean rating per {attribute} group",
                                                         lo=scale.get("min"), hi=scale.get("max"))
    return charts


def _dataset_page(state: AppState, principal: Principal, dataset_id: int, dimension: str | None) -> dict[str, Any]:
    with Session(state.engine) as session:
        ds = dataset_of(session, principal.project_id, dataset_id)
        items = session.execute(select(Item).where(col(Item.dataset_id) == dataset_id)
                                .order_by(col(Item.id)).limit(25)).scalars().all()
        n_runs = runs_of_dataset(session, dataset_id)
        sample = [item_out(i) for i in items]
    summary = summarize_dataset(state.engine, dataset_id)
    dims = list(ds.dimensions or [])
    chosen = dimension or (dims[0] if dims else None)
    description, error = None, None
    try:
        description = DESCRIPTIONS.get(state.engine, principal.project_id, dataset_id, chosen)
    except ProblemError as err:
        error = err.detail
    per_item = ratings_per_item(state.engine, dataset_id, chosen)
    return {"dataset": ds, "summary": summary, "items": sample, "n_runs": n_runs, "dimension": chosen,
            "dimensions": dims, "description": description, "description_error": error,
            "charts": _charts(description) if description else {"labels": None, "groups": {}},
            "per_item": per_item,
            "per_item_chart": bar_chart({str(k): v for k, v in per_item.items()}, "items per number of ratings")}


@router.get("/dashboard/datasets/{dataset_id}", response_class=HTMLResponse)
async def dataset_page(request: Request, dataset_id: RowId,
                       principal: Annotated[Principal, Depends(dashboard_principal)],
                       dimension: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
    context = await run_in_threadpool(_dataset_page, state_of(request), principal, dataset_id, dimension)
    return render(request, "dataset.html", **context)
