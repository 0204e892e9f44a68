"""Every error of the HTTP API as an RFC 9457 problem document (``application/problem+json``).

A problem names what is at fault: ``errors`` lists ``{"field": ..., "message": ...}`` pairs (the field as a
dotted path into the request, e.g. ``models.0.api_key`` or ``query.limit``), and a dataset upload's problem
carries the ``file``, ``row`` and ``column`` when the import error names them. Input values are never
echoed back (a rejected campaign may hold a credential)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://accord.readthedocs.io/problems/"

log = logging.getLogger("accord.api")

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
_SLUGS = {
    400: "bad-request", 401: "unauthenticated", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
    406: "not-acceptable", 409: "conflict", 413: "too-large", 415: "unsupported-media-type", 422: "invalid",
    429: "rate-limited", 500: "internal", 503: "unavailable",
}


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field at fault, e.g. 'models.0.api_key' or 'query.limit'.")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, with accord's extensions."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="URI naming the kind of problem.")
    title: str
    status: int
    detail: str = ""
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldError] = Field(default_factory=list)
    file: str | None = Field(default=None, description="Uploaded file at fault (dataset uploads).")
    row: int | None = Field(default=None, description="Line (CSV/JSONL) or row (Parquet) at fault.")
    column: str | None = Field(default=None, description="Column at fault.")
    request_id: str | None = None


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, slug: str | None = None, title: str | None = None,
                 errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None,
                 **extensions: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _SLUGS.get(status, "error")
        self.title = title or _TITLES.get(status, "Error")
        self.errors = errors or []
        self.headers = headers or {}
        self.extensions = {k: v for k, v in extensions.items() if v is not None}


def not_found(kind: str, ident: object) -> ProblemError:
    """The same answer whether the thing does not exist or belongs to another project."""
    return ProblemError(404, f"no {kind} {ident!s} in this project", slug="not-found")


def conflict(detail: str, **extensions: Any) -> ProblemError:
    return ProblemError(409, detail, slug="conflict", **extensions)


def invalid(detail: str, field: str | None = None, errors: list[dict[str, str]] | None = None,
            **extensions: Any) -> ProblemError:
    errs = list(errors or [])
    if field is not None and not errs:
        errs = [{"field": field, "message": detail}]
    return ProblemError(422, detail, slug="invalid", errors=errs, **extensions)


def problem_response(request: Request | None, status: int, detail: str, *, slug: str | None = None,
                     title: str | None = None, errors: list[dict[str, str]] | None = None,
                     headers: dict[str, str] | None = None, **extensions: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _SLUGS.get(status, "error")),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": bounded(detail),
    }
    if request is not None:
        body["instance"] = request.url.path
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            body["request_id"] = request_id
    if errors:
        body["errors"] = [{"field": bounded(e.get("field") or "", MAX_FIELD_CHARS),
                           "message": bounded(e.get("message") or "", 500)} for e in errors[:MAX_ERRORS]]
    body.update({k: v for k, v in extensions.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


MAX_DETAIL_CHARS = 1000
MAX_FIELD_CHARS = 200
MAX_ERRORS = 20


def bounded(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """A message cut to ``limit`` characters: problems never echo unbounded input."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validation_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """FastAPI/pydantic errors as field/message pairs, without the offending input values (at most
    ``MAX_ERRORS``, each bounded: a field path may hold a key of the submitted document)."""
    out = []
    for e in errors[:MAX_ERRORS]:
        message = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"field": bounded(_loc_to_field(e.get("loc", ())), MAX_FIELD_CHARS),
                    "message": bounded(message, 500)})
    return out


_IMPORT_PLACE = re.compile(r"^(?P<file>[^:]+?): (?:(?:line|row) (?P<row>\d+))?(?:, )?(?:column '(?P<column>[^']*)')?")


def import_error_location(message: str) -> dict[str, Any]:
    """File, row and column named by a one-line ``DatasetImportError`` message, where it names them."""
    m = _IMPORT_PLACE.match(message)
    if not m or not (m.group("row") or m.group("column") or "." in m.group("file")):
        return {}
    out: dict[str, Any] = {}
    if "." in m.group("file") or m.group("row"):
        out["file"] = m.group("file")
    if m.group("row"):
        out["row"] = int(m.group("row"))
    if m.group("column") is not None:
        out["column"] = m.group("column")
    return out


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers at this path (Starlette names only the first route's)."""
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    scope = {k: v for k, v in request.scope.items() if k not in ("route", "endpoint", "path_params")}
    return [method for method in order
            if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in request.app.router.routes)]


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc.status, exc.detail, slug=exc.slug, title=exc.title,
                                errors=exc.errors, headers=exc.headers, **exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return problem_response(request, 422, f"{first['field']}: {first['message']}{more}", slug="invalid",
                                errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(request, exc.status_code, detail, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(request, 500, "an unexpected error occurred; the request id names it in the logs")
