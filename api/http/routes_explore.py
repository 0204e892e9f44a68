"""Read-only routes behind the dashboard's result pages: a dataset's description, a run's items (filtered,
sorted, paged) and one item in full, the metrics matrix of runs, and what changed between two runs. The
dashboard renders the same documents (accord.api.http.explore)."""

from __future__ import annotations

from typing import Annotated, Any

from accord.api.http.auth import Principal
from accord.api.http.common import AUTHED, RowId, problem_responses
from accord.api.http.deps import api_principal, state_of
from accord.api.http.explore import (
    DESCRIPTIONS,
    SORT_KEYS,
    compare_two,
    parse_item_query,
    run_comparison,
    run_item,
    run_items,
)
from accord.api.http.schemas import Comparison, ItemDetail, ItemTable, RunDiff
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

router = APIRouter(prefix="/api/v1", tags=["results"], responses=AUTHED)
Text = Annotated[str | None, Query(max_length=500)]


@router.get("/datasets/{dataset_id}/description", responses=problem_responses(404), summary="Describe a dataset",
            response_model=dict[str, Any])
async def describe(request: Request, dataset_id: RowId, principal: Annotated[Principal, Depends(api_principal)],
                   dimension: Text = None) -> Any:
    """What ``accord describe`` prints: counts, label distribution, the human baseline (median annotator r,
    Krippendorff's alpha) and per annotator group the mean rating with a 95% interval and the item-matched
    differences between groups."""
    state = state_of(request)
    return await run_in_threadpool(DESCRIPTIONS.get, state.engine, principal.project_id, dataset_id, dimension)


@router.get("/runs/{run_id}/items", response_model=ItemTable, responses=problem_responses(404),
            summary="A run's items with LLM-human disagreement and group gaps")
async def items(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)],
                sort: Annotated[str, Query(max_length=200, description=f"{', '.join(SORT_KEYS)} or meta.<column>")]
                = "abs_disagreement", order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
                model: Text = None, template: Text = None,
                attribute: Annotated[str | None, Query(max_length=500, description="Group gap over this annotator "
                                                       "attribute (default: the largest over all).")] = None,
                min_disagreement: Annotated[float | None, Query(ge=0)] = None,
                min_gap: Annotated[float | None, Query(ge=0, description="Minimum group gap.")] = None,
                page: Annotated[int, Query(ge=1, le=10**9)] = 1,
                per_page: Annotated[int, Query(ge=1, le=200)] = 50) -> Any:
    """Filter by model, template, any item metadata column (``meta.<column>=value``), a minimum absolute
    disagreement and a minimum group gap; sort by disagreement, group gap, means, counts or a metadata column."""
    query = parse_item_query(request.query_params)
    return await run_in_threadpool(run_items, state_of(request).engine, principal.project_id, run_id, query)


@router.get("/runs/{run_id}/items/{item_id:path}", response_model=ItemDetail, responses=problem_responses(404),
            summary="One item of a run in full")
async def item(request: Request, run_id: RowId, item_id: Annotated[str, Path(max_length=200)],
               principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    """Content, metadata, the people's ratings (counts per value overall and per group), every model x template x
    sample answer (raw text, label, label probabilities, rationale, parse status, cost, latency, cache hit), and
    the subjects' answers with their judgments."""
    return await run_in_threadpool(run_item, state_of(request).engine, principal.project_id, run_id, item_id)


@router.get("/runs/{run_id}/comparison", response_model=Comparison, responses=problem_responses(404),
            summary="Headline metrics as a models x templates matrix")
async def compare(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(api_principal)],
                  runs: Annotated[str | None, Query(max_length=300, description="Run ids, comma-separated "
                                                    "(default: every run of this run's campaign).")] = None) -> Any:
    return await run_in_threadpool(run_comparison, state_of(request).engine, principal.project_id, run_id, runs)


@router.get("/runs/{run_id}/diff/{other_id}", response_model=RunDiff, responses=problem_responses(404),
            summary="What changed from one run to another")
async def diff(request: Request, run_id: RowId, other_id: RowId,
               principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    """Metric deltas (other minus this) and the items whose mean LLM rating moved most."""
    return await run_in_threadpool(compare_two, state_of(request).engine, principal.project_id, run_id, other_id)
