"""The FastAPI application: the JSON API under /api/v1, health and metrics, and the dashboard.

``create_app(engine=None)`` builds it; without an engine it opens (and migrates) the database of the
settings (``ACCORD_DATABASE_URL``). The execution backend is pluggable (``backend=``, or
``ACCORD_API_EXECUTION=embedded|distributed``; default embedded: runs execute inside this process)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from accord.api.http import (
    dashboard,
    dashboard_datasets,
    dashboard_results,
    routes_campaigns,
    routes_datasets,
    routes_explore,
    routes_health,
    routes_runs,
    routes_templates,
)
from accord.api.http.auth import SessionSigner
from accord.api.http.backends import ExecutionBackend, make_backend
from accord.api.http.config import ApiSettings
from accord.api.http.deps import AppState, LoginRequired
from accord.api.http.observability import ApiMetrics, RequestContextMiddleware, configure_json_logging
from accord.api.http.problems import ProblemError, install_problem_handlers
from accord.api.http.rate_limit import KeyRateLimiter
from accord.api.http.reports import ReportCache
from accord.api.http.schemas import TemplateDocument
from accord.api.http.template_store import TemplateStore
from accord.models.migrate import init_db
from accord.models.settings import get_settings
from accord.scheduler.campaign_spec import CampaignSpec
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

import accord

log = logging.getLogger("accord.api")

DESCRIPTION = """Submit, follow and read LLM-annotation campaigns as a service.

Every route under `/api/v1` needs an API key of a project (`Authorization: Bearer <key>`) and sees only
that project's data; another project's ids answer 404. Errors are RFC 9457 problem documents
(`application/problem+json`) whose `errors` name the fields at fault. Provider credentials are never
accepted: campaigns name the server's environment variable in `api_key_env`."""


def _is_dashboard(request: Request) -> bool:
    path = request.url.path
    return path == "/" or path.startswith("/dashboard") or path in ("/login", "/logout")


def create_app(engine: Engine | None = None, *, settings: ApiSettings | None = None,
               backend: ExecutionBackend | None = None, metrics: ApiMetrics | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    if engine is None:
        engine = init_db(get_settings().resolved_database_url())
    if settings.json_logs:
        configure_json_logging()
    metrics = metrics or ApiMetrics(engine)
    backend = backend or make_backend(settings.execution, engine, metrics)
    state = AppState(
        engine=engine, settings=settings, backend=backend, metrics=metrics,
        limiter=KeyRateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
        templates=TemplateStore(settings.templates_dir or get_settings().home / "api-templates"), reports=ReportCache(),
        sessions=SessionSigner(settings.session_secret, settings.session_max_age_s),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("accord API started", extra={"execution": backend.name, "database": engine.dialect.name})
        recover = getattr(backend, "recover", None)
        if settings.resume_runs_on_start and recover is not None:
            await run_in_threadpool(recover)
        yield
        backend.shutdown()
        log.info("accord API stopped")

    app = FastAPI(title="accord", version=accord.__version__, description=DESCRIPTION, lifespan=lifespan,
                  openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None)
    app.state.accord = state
    install_problem_handlers(app)
    _install_dashboard_handlers(app)
    for module in (routes_health, routes_datasets, routes_templates, routes_campaigns, routes_runs, routes_explore,
                   dashboard, dashboard_datasets, dashboard_results):
        app.include_router(module.router)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    _add_document_schemas(app)
    return app


def _add_document_schemas(app: FastAPI) -> None:
    """Define the request bodies that routes read by hand (JSON or YAML): ``CampaignDocument`` and
    ``TemplateDocument``, so clients and fuzzers know their fields."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model in (("CampaignDocument", CampaignSpec), ("TemplateDocument", TemplateDocument)):
            doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for def_name, definition in doc.pop("$defs", {}).items():
                components.setdefault(def_name, definition)
            doc["title"] = name
            components[name] = doc
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


def _install_dashboard_handlers(app: FastAPI) -> None:
    """On dashboard pages, problems are HTML pages and a missing login is a redirect."""
    json_problem = app.exception_handlers[ProblemError]

    async def login_required(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/login", status_code=303)

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        if _is_dashboard(request) and not request.url.path.endswith("/events"):
            return dashboard.dashboard_problem(request, exc.status, exc.detail)
        response: Response = await json_problem(request, exc)  # type: ignore[misc]  # the ProblemError handler is async
        return response

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(ProblemError, problem)


def openapi_document(app: FastAPI | None = None) -> dict[str, Any]:
    """The API's OpenAPI document (what ``api/openapi.json`` holds)."""
    if app is None:
        app = create_app(create_engine("sqlite://"), settings=ApiSettings(json_logs=False),
                         backend=_NoBackend())
    return app.openapi()


class _NoBackend:
    name = "embedded"

    def start(self, run_id: int) -> None:
        raise RuntimeError("this app only serves its OpenAPI document")

    def shutdown(self) -> None:
        return None
