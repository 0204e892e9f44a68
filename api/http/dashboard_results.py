"""Dashboard pages of a run's results: the item explorer (filters, sort and page in the URL), one item in full,
the models x templates comparison across runs of a campaign, and what changed between two runs. Each page
renders the document of the matching JSON route (accord.api.http.explore), so the numbers are the API's."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from accord.api.http.auth import Principal
from accord.api.http.common import RowId
from accord.api.http.dashboard import render
from accord.api.http.deps import AppState, dashboard_principal, state_of
from accord.api.http.explore import (
    SORT_KEYS,
    ItemQuery,
    compare_two,
    parse_item_query,
    run_comparison,
    run_item,
    run_items,
)
from accord.api.http.problems import invalid
from accord.api.http.store import list_runs, run_header
from accord.api.http.svg import bar_chart
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

router = APIRouter(include_in_schema=False)
COLUMNS = [("item_id", "item"), ("human_mean", "people"), ("llm_mean", "LLMs"), ("disagreement", "LLM − people"),
           ("group_gap", "group gap"), ("n_human", "ratings"), ("n_llm", "LLM ratings")]
assert {c for c, _ in COLUMNS} <= set(SORT_KEYS)


def _url(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def _items_page(state: AppState, principal: Principal, run_id: int, query: ItemQuery) -> dict[str, Any]:
    run = run_header(state.engine, principal.project_id, run_id)
    table = run_items(state.engine, principal.project_id, run_id, query)
    base = f"/dashboard/runs/{run_id}/items"

    def sort_link(column: str) -> str:
        order = "asc" if query.sort == column and query.order == "desc" else "desc"
        return _url(base, query.params(sort=column, order=order, page=1))

    pages = {"prev": _url(base, query.params(page=query.page - 1)) if query.page > 1 else None,
             "next": _url(base, query.params(page=query.page + 1)) if query.page < table["pages"] else None}
    columns = [(c, label, sort_link(c)) for c, label in COLUMNS]
    meta_links = {c: sort_link(f"meta.{c}") for c in table["meta_columns"]}
    item_suffix = urlencode({"back": _url(base, query.params())})
    return {"run": run, "table": table, "query": query, "columns": columns, "meta_links": meta_links,
            "pages": pages, "item_suffix": item_suffix, "api_url": _url(f"/api/v1/runs/{run_id}/items", query.params())}


@router.get("/dashboard/runs/{run_id}/items", response_class=HTMLResponse)
async def items_page(request: Request, run_id: RowId,
                     principal: Annotated[Principal, Depends(dashboard_principal)]) -> HTMLResponse:
    query = parse_item_query(request.query_params)
    context = await run_in_threadpool(_items_page, state_of(request), principal, run_id, query)
    return render(request, "items.html", **context)


def _safe_back(back: str | None, run_id: int) -> str:
    """Only a link back into this run's item list (never another site)."""
    prefix = f"/dashboard/runs/{run_id}/items"
    if back and (back == prefix or back.startswith(prefix + "?")) and "\n" not in back and len(back) < 2000:
        return back
    return prefix


def _item_page(state: AppState, principal: Principal, run_id: int, item_id: str, back: str | None) -> dict[str, Any]:
    run = run_header(state.engine, principal.project_id, run_id)
    item = run_item(state.engine, principal.project_id, run_id, item_id)
    human = item["human"]
    charts: dict[str, Any] = {
        "overall": bar_chart(human["overall"], "all annotators") if human["n"] else None, "groups": {}}
    for attribute, groups in human["groups"].items():
        charts["groups"][attribute] = [(g, bar_chart(g["counts"], f"{attribute} = {g['group']}", width=200,
                                                     height=110, css="bars small")) for g in groups]
    probs = [sorted((r["label_probs"] or {}).items(), key=lambda kv: -float(kv[1] or 0)) for r in item["ratings"]]
    return {"run": run, "item": item, "charts": charts, "probs": probs, "back": _safe_back(back, run_id),
            "api_url": f"/api/v1/runs/{run_id}/items/{item_id}"}


@router.get("/dashboard/runs/{run_id}/items/{item_id:path}", response_class=HTMLResponse)
async def item_page(request: Request, run_id: RowId, item_id: Annotated[str, Path(max_length=200)],
                    principal: Annotated[Principal, Depends(dashboard_principal)],
                    back: Annotated[str | None, Query(max_length=2000)] = None) -> HTMLResponse:
    context = await run_in_threadpool(_item_page, state_of(request), principal, run_id, item_id, back)
    return render(request, "item.html", **context)


def _compare_page(state: AppState, principal: Principal, run_id: int, runs: str | None,
                  other: int | None) -> dict[str, Any]:
    run = run_header(state.engine, principal.project_id, run_id)
    matrix = run_comparison(state.engine, principal.project_id, run_id, runs)
    siblings, _ = list_runs(state.engine, principal.project_id, campaign_id=run["campaign_id"], limit=50)
    diff = None
    if other is not None:
        if other == run_id:
            raise invalid("other: pick a run other than this one", field="other")
        diff = compare_two(state.engine, principal.project_id, run_id, other)
    api = f"/api/v1/runs/{run_id}/comparison" + (f"?{urlencode({'runs': runs})}" if runs else "")
    return {"run": run, "matrix": matrix, "siblings": siblings, "diff": diff, "other": other, "runs_param": runs or "",
            "api_url": api, "diff_api_url": f"/api/v1/runs/{run_id}/diff/{other}" if other else None}


@router.get("/dashboard/runs/{run_id}/compare", response_class=HTMLResponse)
async def compare_page(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(dashboard_principal)],
                       runs: Annotated[str | None, Query(max_length=300)] = None,
                       other: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> HTMLResponse:
    picked = ",".join(request.query_params.getlist("run")[:50])
    context = await run_in_threadpool(_compare_page, state_of(request), principal, run_id, runs or picked or None,
                                      other)
    return render(request, "compare.html", **context)
