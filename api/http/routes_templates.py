"""/api/v1/templates (bundled and this project's custom prompt templates) and /api/v1/model-specs."""

from __future__ import annotations

from typing import Annotated, Any

from accord.api.http.auth import Principal
from accord.api.http.campaigns import parse_document
from accord.api.http.common import AUTHED, After, Limit, problem_responses, read_document_body
from accord.api.http.deps import api_principal, state_of
from accord.api.http.problems import conflict, invalid, not_found, validation_errors
from accord.api.http.schemas import ModelSpecOut, Page, TemplateDocument, TemplateOut
from accord.api.http.template_store import (
    NAME_RE,
    StoredVersion,
    TemplateStoreError,
    bundled_document,
    bundled_resolved,
)
from accord.models.schema import ModelSpec
from accord.worker.prompt_templates import ResolvedTemplate, bundled_template_names
from fastapi import APIRouter, Depends, Path, Request
from pydantic import ValidationError
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

router = APIRouter(prefix="/api/v1", tags=["templates"], responses=AUTHED)
TemplateName = Annotated[str, Path(min_length=1, max_length=100)]


def _version_out(resolved: ResolvedTemplate, document: dict[str, Any] | None, created_at: Any = None) -> dict[str, Any]:
    return {"version": resolved.version, "response_format": resolved.response_format, "labels": resolved.labels,
            "persona": resolved.persona, "params": resolved.params, "created_at": created_at, "document": document}


def _bundled_out(name: str, with_document: bool) -> dict[str, Any]:
    resolved = bundled_resolved(name)
    doc = bundled_document(name) if with_document else None
    return {"name": name, "source": "bundled", "latest_version": resolved.version,
            "versions": [_version_out(resolved, doc)]}


def _custom_out(name: str, versions: list[StoredVersion], with_document: bool) -> dict[str, Any]:
    return {"name": name, "source": "custom", "latest_version": versions[-1].version,
            "versions": [_version_out(v.resolved, v.document if with_document else None, v.created_at)
                         for v in versions]}


@router.get("/templates", response_model=list[TemplateOut], summary="List prompt templates")
def list_templates(request: Request, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    store = state_of(request).templates
    out = [_bundled_out(n, False) for n in bundled_template_names()]
    for name in store.names(principal.namespace):
        out.append(_custom_out(name, store.versions(principal.namespace, name), False))
    return out


@router.get("/templates/{name}", response_model=TemplateOut, responses=problem_responses(404),
            summary="Show a template with its documents")
def show_template(request: Request, name: TemplateName,
                  principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    if name in bundled_template_names():
        return _bundled_out(name, True)
    store = state_of(request).templates
    versions = store.versions(principal.namespace, name) if NAME_RE.match(name) else []
    if not versions:
        raise not_found("template", repr(name))
    return _custom_out(name, versions, True)


@router.post("/templates", status_code=201, response_model=TemplateOut, responses=problem_responses(409, 413, 415),
             summary="Create a custom template (or a new version of one)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"$ref": "#/components/schemas/TemplateDocument"}},
                 "application/yaml": {"schema": {"$ref": "#/components/schemas/TemplateDocument"}}}}})
async def create_template(request: Request, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    """The body is a template document (JSON, or YAML with Content-Type application/yaml). Versions are
    immutable: omit ``version`` to get the next number."""
    state = state_of(request)
    body = await read_document_body(request, state.settings.max_document_bytes)
    document = parse_document(body, request.headers.get("content-type", "application/json"))
    if not isinstance(document, dict):
        raise invalid("body: a template must be an object of fields", field="body")
    try:
        TemplateDocument.model_validate(document)
    except ValidationError as err:
        errors = validation_errors(list(err.errors()))
        first = errors[0]
        raise invalid(f"{first['field']}: {first['message']}", errors=errors) from None
    try:
        stored = await run_in_threadpool(state.templates.create, principal.namespace, document)
    except TemplateStoreError as err:
        if err.conflict:
            raise conflict(str(err), errors=[{"field": err.field, "message": str(err)}]) from None
        raise invalid(str(err), field=err.field) from None
    versions = state.templates.versions(principal.namespace, stored.document["name"])
    return _custom_out(stored.document["name"], versions, True)


@router.get("/model-specs", response_model=Page[ModelSpecOut], tags=["model specs"],
            summary="List the model specs used by this project's runs")
def list_model_specs(request: Request, principal: Annotated[Principal, Depends(api_principal)], limit: Limit = 100,
                     after: After = None) -> Any:
    q = select(ModelSpec).where(col(ModelSpec.project_id) == principal.project_id).order_by(col(ModelSpec.id)).limit(limit + 1)
    if after is not None:
        q = q.where(col(ModelSpec.id) > after)
    with Session(state_of(request).engine) as session:
        rows = session.execute(q).scalars().all()
    items = [{k: getattr(m, k) for k in ModelSpecOut.model_fields} for m in rows[:limit]]
    return {"items": items, "next_cursor": items[-1]["id"] if len(rows) > limit else None}

