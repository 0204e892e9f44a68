"""/api/v1/campaigns: validate, create, list, show, plan preview, and start runs."""

from __future__ import annotations

from typing import Annotated, Any

from accord.api.http.auth import Principal
from accord.api.http.campaigns import (
    ValidatedCampaign,
    create_campaign_run,
    parse_document,
    plan_campaign,
    revalidate,
    store_campaign,
    validate_campaign,
)
from accord.api.http.common import AUTHED, After, Limit, RowId, problem_responses, read_document_body
from accord.api.http.deps import AppState, api_principal, state_of
from accord.api.http.problems import invalid
from accord.api.http.schemas import CampaignOut, CampaignValidation, Page, PlanOut, RunOut, RunStart
from accord.api.http.store import campaign_of, run_out
from accord.models.schema import Campaign, Dataset, Run
from accord.scheduler.expand import CampaignError
from accord.worker.prompt_templates import TemplateSpecError
from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"], responses=AUTHED)

DOCUMENT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/CampaignDocument"}},
    "application/yaml": {"schema": {"$ref": "#/components/schemas/CampaignDocument"}}}}}


async def _document(request: Request, state: AppState) -> Any:
    body = await read_document_body(request, state.settings.max_document_bytes)
    return parse_document(body, request.headers.get("content-type", "application/json"))


async def _validated(request: Request, principal: Principal) -> tuple[AppState, ValidatedCampaign]:
    state = state_of(request)
    document = await _document(request, state)
    v = await run_in_threadpool(validate_campaign, state.engine, state.settings, state.templates, principal,
                                document)
    return state, v


def campaign_out(session: Session, c: Campaign) -> dict[str, Any]:
    ds = session.get(Dataset, c.dataset_id)
    run_ids = session.execute(select(col(Run.id)).where(col(Run.campaign_id) == c.id).order_by(col(Run.id))).scalars().all()
    return {"id": c.id, "name": c.name, "dataset_id": c.dataset_id, "dataset": ds.name if ds else "",
            "spec": c.spec, "spec_hash": c.spec_hash, "created_at": c.created_at, "run_ids": list(run_ids)}


@router.post("/validate", response_model=CampaignValidation, openapi_extra=DOCUMENT_BODY,
             responses=problem_responses(413, 415), summary="Validate a campaign document")
async def validate(request: Request, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    """Checks the document, the server's policy, the dataset, dimension, items, templates and personas;
    creates nothing. A problem's ``errors`` name every field at fault."""
    _state, v = await _validated(request, principal)
    return {"valid": True, "campaign": v.stored_document(), "dataset_id": v.dataset_id, "dimension": v.dimension,
            "n_items": v.n_items}


@router.post("/plan", response_model=PlanOut, openapi_extra=DOCUMENT_BODY, responses=problem_responses(413, 415),
             summary="Plan preview of a campaign document")
async def plan_document(request: Request, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    """How many rating requests a run would make and how many the response cache would answer."""
    state, v = await _validated(request, principal)
    return await run_in_threadpool(_plan, state, principal, v)


def _plan(state: AppState, principal: Principal, v: ValidatedCampaign) -> dict[str, Any]:
    try:
        return plan_campaign(state.engine, principal.project_id, v)
    except (CampaignError, TemplateSpecError) as err:
        raise invalid(str(err), field=str(err).split(":", 1)[0]) from None


@router.post("", status_code=201, response_model=CampaignOut, openapi_extra=DOCUMENT_BODY,
             responses=problem_responses(413, 415), summary="Create a campaign")
async def create_campaign(request: Request, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    state, v = await _validated(request, principal)

    def create() -> dict[str, Any]:
        row = store_campaign(state.engine, principal.project_id, v)
        with Session(state.engine) as session:
            return campaign_out(session, row)

    return await run_in_threadpool(create)


@router.get("", response_model=Page[CampaignOut], summary="List campaigns")
def list_campaigns(request: Request, principal: Annotated[Principal, Depends(api_principal)], limit: Limit = 50,
                   after: After = None) -> Any:
    q = (select(Campaign).where(col(Campaign.project_id) == principal.project_id)
         .order_by(col(Campaign.id).desc()).limit(limit + 1))
    if after is not None:
        q = q.where(col(Campaign.id) < after)
    with Session(state_of(request).engine) as session:
        rows = session.execute(q).scalars().all()
        items = [campaign_out(session, c) for c in rows[:limit]]
    return {"items": items, "next_cursor": items[-1]["id"] if len(rows) > limit else None}


@router.get("/{campaign_id}", response_model=CampaignOut, responses=problem_responses(404), summary="Show a campaign")
def show_campaign(request: Request, campaign_id: RowId,
                  principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    with Session(state_of(request).engine) as session:
        return campaign_out(session, campaign_of(session, principal.project_id, campaign_id))


@router.post("/{campaign_id}/plan", response_model=PlanOut, responses=problem_responses(404),
             summary="Plan preview of a stored campaign")
def plan_stored(request: Request, campaign_id: RowId,
                principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    state = state_of(request)
    with Session(state.engine, expire_on_commit=False) as session:
        campaign = campaign_of(session, principal.project_id, campaign_id)
    v = revalidate(state.engine, state.settings, state.templates, principal, campaign)
    return _plan(state, principal, v)


def start_campaign_run(state: AppState, principal: Principal, campaign_id: int, budget_usd: float | None,
                       start: bool) -> dict[str, Any]:
    """Create a run of a stored campaign (and hand it to the execution backend unless ``start`` is false)."""
    with Session(state.engine, expire_on_commit=False) as session:
        campaign = campaign_of(session, principal.project_id, campaign_id)
    v = revalidate(state.engine, state.settings, state.templates, principal, campaign)
    try:
        plan = create_campaign_run(state.engine, principal.project_id, campaign, v, state.backend.name, budget_usd)
    except (CampaignError, TemplateSpecError) as err:
        raise invalid(str(err), field=str(err).split(":", 1)[0]) from None
    if start:
        state.backend.start(plan.run_id)
    with Session(state.engine) as session:
        run = session.get(Run, plan.run_id)
        assert run is not None
        return run_out(run, campaign)


@router.post("/{campaign_id}/runs", status_code=202, response_model=RunOut, responses=problem_responses(400, 404),
             summary="Start a run of a campaign")
def start_run(request: Request, campaign_id: RowId, principal: Annotated[Principal, Depends(api_principal)],
              options: Annotated[RunStart | None, Body()] = None) -> Any:
    """Expands the campaign into its rating requests (answering cached ones at once) and starts executing
    them (embedded in the server, or on the workers in distributed mode). Follow it at
    ``/api/v1/runs/{id}`` or its event stream."""
    opts = options or RunStart()
    return start_campaign_run(state_of(request), principal, campaign_id, opts.budget_usd, opts.start)
