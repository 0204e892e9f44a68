"""The dashboard: server-rendered pages (Jinja2, autoescape always on) served by the API process.

Pages: login (an API key, exchanged for a signed session in a Secure, HttpOnly, SameSite=Strict cookie), the project's runs, campaigns and
datasets, a run page with live progress (server-sent events and a few lines of JavaScript served from
this app, no inline script), failures by kind, cost, the report's plots and tables, and a dataset page with
annotator counts per attribute. Forms are small URL-encoded bodies read by hand (never spooled to disk), refused when their Origin is another
site; forms that change something carry a token derived from the session (CSRF).
Rated texts are adversarial: they are only ever rendered as escaped text."""

from __future__ import annotations

import hmac
import math
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, quote

from accord.api.http.auth import COOKIE_NAME, Principal, csrf_token, lookup_key
from accord.api.http.campaigns import parse_document, store_campaign, validate_campaign
from accord.api.http.common import RowId, read_document_body
from accord.api.http.deps import AppState, dashboard_principal, state_of
from accord.api.http.live import live_detail
from accord.api.http.problems import ProblemError
from accord.api.http.ratings import ratings_page
from accord.api.http.reports import report_sections
from accord.api.http.routes_campaigns import start_campaign_run
from accord.api.http.routes_runs import (
    REPORT_CSP,
    control,
    export_response,
    progress_response,
    report_response,
)
from accord.api.http.store import TERMINAL, list_runs
from accord.models.schema import Campaign, Dataset, Run
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

TEMPLATES_DIR = FsPath(__file__).resolve().parents[1] / "templates" / "dashboard"
LOGIN_FORM_BYTES = 1024          # api_key=acc_... and nothing else
SMALL_FORM_BYTES = 4096          # a CSRF token and an action
DASHBOARD_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")

router = APIRouter(include_in_schema=False)


def make_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["money"] = lambda x: f"${(x or 0):.4f}"
    env.filters["seconds"] = _seconds
    env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S") if d else "–"
    env.filters["fmt"] = _fmt
    env.filters["signed"] = lambda x: "–" if x is None else f"{x:+.3f}"
    env.filters["interval"] = lambda low, high: "" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"
    env.filters["pathpart"] = lambda s: quote(str(s), safe="")
    return env


def _fmt(value: float | None, digits: int = 3) -> str:
    """A number as the dashboard shows it (the API gives it unrounded): 3 decimals, '–' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value < 60:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{value // 60:.0f} min {value % 60:.0f} s"
    return f"{value // 3600:.0f} h {(value % 3600) // 60:.0f} min"


_ENV = make_environment()


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    principal: Principal | None = getattr(request.state, "principal", None)
    session = request.cookies.get(COOKIE_NAME)
    html = _ENV.get_template(name).render(principal=principal, csrf=csrf_token(session) if session else "",
                                          **context)
    return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": DASHBOARD_CSP,
                                                           "X-Content-Type-Options": "nosniff",
                                                           "Referrer-Policy": "same-origin"})


def check_csrf(request: Request, token: str) -> None:
    session = request.cookies.get(COOKIE_NAME) or ""
    if not session or not hmac.compare_digest(token, csrf_token(session)):
        raise ProblemError(403, "the form's token does not match this session; reload the page", slug="forbidden")


def check_origin(request: Request) -> None:
    """A form posted from another site is refused: browsers name the page's origin in ``Origin``."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin != own:
        raise ProblemError(403, "this form was posted from another site", slug="forbidden")


async def read_form(request: Request, limit: int = SMALL_FORM_BYTES) -> dict[str, str]:
    """A dashboard form: URL-encoded, from this site, at most ``limit`` bytes; read before anything else, and
    never spooled to disk (a multipart body is refused before it is read)."""
    check_origin(request)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise ProblemError(415, "send the form URL-encoded (application/x-www-form-urlencoded)",
                           errors=[{"field": "body", "message": "unsupported media type"}])
    body = await read_document_body(request, limit)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise ProblemError(400, "the form is not valid URL-encoded UTF-8") from None
    return dict(pairs)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- login ----------------------------------------------------------------------------------------------
@router.get("/", response_class=RedirectResponse)
def root() -> RedirectResponse:
    return _see_other("/dashboard")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return render(request, "login.html", error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    state = state_of(request)
    form = await read_form(request, LOGIN_FORM_BYTES)
    api_key = form.get("api_key", "").strip()
    principal = await run_in_threadpool(lookup_key, state.engine, api_key) if api_key else None
    if principal is None:
        return render(request, "login.html", status=401, error="That API key is not valid (unknown or revoked).")
    response = _see_other("/dashboard")
    response.set_cookie(COOKIE_NAME, state.sessions.issue(principal.key_id), max_age=state.settings.session_max_age_s,
                        httponly=True, samesite="strict", secure=state.settings.cookie_secure, path="/")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    form = await read_form(request)
    check_csrf(request, form.get("csrf", ""))
    response = _see_other("/login")
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


# -- pages ----------------------------------------------------------------------------------------------
def _overview(state: AppState, principal: Principal) -> dict[str, Any]:
    runs, _ = list_runs(state.engine, principal.project_id, limit=50)
    with Session(state.engine) as session:
        campaigns = session.execute(select(Campaign).where(col(Campaign.project_id) == principal.project_id)
                                    .order_by(col(Campaign.id).desc()).limit(50)).scalars().all()
        datasets = session.execute(select(Dataset).where(col(Dataset.project_id) == principal.project_id)
                                   .order_by(col(Dataset.id))).scalars().all()
        names = {d.id: d.name for d in datasets}
        campaign_rows = [{"id": c.id, "name": c.name, "dataset": names.get(c.dataset_id, ""),
                          "models": [m.get("name") for m in (c.spec or {}).get("models", [])],
                          "created_at": c.created_at} for c in campaigns]
    return {"runs": runs, "campaigns": campaign_rows, "datasets": datasets}


@router.get("/dashboard", response_class=HTMLResponse)
async def overview(request: Request, principal: Annotated[Principal, Depends(dashboard_principal)]) -> HTMLResponse:
    data = await run_in_threadpool(_overview, state_of(request), principal)
    return render(request, "runs.html", campaign_text="", error=None, **data)


@router.post("/dashboard/campaigns")
async def new_campaign(request: Request, principal: Annotated[Principal, Depends(dashboard_principal)]) -> Response:
    """Create a campaign from the pasted YAML/JSON document and start its first run."""
    state = state_of(request)
    form = await read_form(request, state.settings.max_document_bytes * 3 + 1024)
    check_csrf(request, form.get("csrf", ""))
    campaign = form.get("campaign", "")
    if len(campaign.encode("utf-8")) > state.settings.max_document_bytes:
        raise ProblemError(413, f"the campaign exceeds the limit of {state.settings.max_document_bytes} bytes",
                           slug="too-large", errors=[{"field": "campaign", "message": "too large"}])

    def create_and_start() -> int:
        document = parse_document(campaign.encode("utf-8"), "application/yaml")
        v = validate_campaign(state.engine, state.settings, state.templates, principal, document)
        row = store_campaign(state.engine, principal.project_id, v)
        return int(start_campaign_run(state, principal, row.id, None, True)["id"])  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)

    try:
        run_id = await run_in_threadpool(create_and_start)
    except ProblemError as err:
        data = await run_in_threadpool(_overview, state, principal)
        problems = [f"{e['field']}: {e['message']}" for e in err.errors] or [err.detail]
        return render(request, "runs.html", status=err.status, campaign_text=campaign, error=err.detail,
                      problems=problems, **data)
    return _see_other(f"/dashboard/runs/{run_id}")


@router.post("/dashboard/campaigns/{campaign_id}/runs")
async def start_run(request: Request, campaign_id: RowId,
                    principal: Annotated[Principal, Depends(dashboard_principal)]) -> Response:
    check_csrf(request, (await read_form(request)).get("csrf", ""))
    out = await run_in_threadpool(start_campaign_run, state_of(request), principal, campaign_id, None, True)
    return _see_other(f"/dashboard/runs/{out['id']}")


def _run_page(state: AppState, principal: Principal, run_id: int) -> dict[str, Any]:
    detail = live_detail(state, principal.project_id, run_id)
    sample, _ = ratings_page(state.engine, run_id, after=None, limit=20)
    context: dict[str, Any] = {"run": detail, "ratings": sample, "plots": {}, "sections": None, "report_error": None}
    with Session(state.engine) as session:
        ds = session.get(Dataset, detail["dataset_id"])
        context["dataset"] = ds
        run = session.get(Run, run_id)
    if detail["report_ready"] and run is not None:
        try:
            data, _html = state.reports.get(state.engine, run)
            context["plots"] = data.plots
            context["sections"] = report_sections(data)
        except Exception as err:  # the page still shows progress and ratings
            context["report_error"] = f"{type(err).__name__}: {err}"
    return context


@router.get("/dashboard/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: RowId,
                   principal: Annotated[Principal, Depends(dashboard_principal)]) -> HTMLResponse:
    context = await run_in_threadpool(_run_page, state_of(request), principal, run_id)
    return render(request, "run.html", terminal=context["run"]["status"] in TERMINAL, **context)


@router.get("/dashboard/runs/{run_id}/events")
def run_events(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(dashboard_principal)]) -> Any:
    return progress_response(request, principal, run_id)


@router.get("/dashboard/runs/{run_id}/report", response_class=HTMLResponse)
async def run_report(request: Request, run_id: RowId,
                     principal: Annotated[Principal, Depends(dashboard_principal)]) -> HTMLResponse:
    response = await report_response(request, principal, run_id)
    response.headers["Content-Security-Policy"] = REPORT_CSP
    return response


@router.get("/dashboard/runs/{run_id}/export")
def run_export(request: Request, run_id: RowId, principal: Annotated[Principal, Depends(dashboard_principal)],
               format: Literal["csv", "parquet"] = "csv") -> Any:
    return export_response(request, principal, run_id, format, None, None, None)


@router.post("/dashboard/runs/{run_id}/{action}")
async def run_action(request: Request, run_id: RowId, action: str,
                     principal: Annotated[Principal, Depends(dashboard_principal)]) -> Response:
    check_csrf(request, (await read_form(request)).get("csrf", ""))
    if action not in ("pause", "resume", "cancel"):
        raise ProblemError(404, f"no action {action[:40]!r}")
    await run_in_threadpool(control, state_of(request), principal, run_id, action)
    return _see_other(f"/dashboard/runs/{run_id}")


STATIC_TYPES = {"run.js": "text/javascript", "keys.js": "text/javascript", "dashboard.css": "text/css"}


@router.get("/dashboard/static/{name}")
def static_file(name: str) -> Response:
    """The dashboard's own script and style files (the only ones its pages load)."""
    media = STATIC_TYPES.get(name)
    if media is None:
        raise ProblemError(404, "no such file", slug="not-found")
    return Response((TEMPLATES_DIR / name).read_text(encoding="utf-8"), media_type=media,
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def dashboard_problem(request: Request, status: int, detail: str) -> HTMLResponse:
    return render(request, "error.html", status=status, status_code=status, detail=detail)
