"""/api/v1/datasets: upload (multipart, streamed, size-limited, validated before anything is written), list,
show with counts, items, delete (refused while runs use the dataset)."""

from __future__ import annotations

from typing import Annotated, Any

from accord.api.http.auth import Principal
from accord.api.http.common import AUTHED, After, Limit, RowId, problem_responses
from accord.api.http.deps import api_principal, state_of
from accord.api.http.problems import ProblemError, conflict, import_error_location, invalid
from accord.api.http.schemas import DatasetCreated, DatasetDetail, DatasetOut, ItemOut, Page
from accord.api.http.store import dataset_of, dataset_out, item_out, project_page, runs_of_dataset
from accord.api.http.uploads import FILE_FIELDS, Upload, receive_upload
from accord.models.dataset_import import DatasetImportError, import_dataset, summarize_dataset
from accord.models.import_spec import spec_from_mapping
from accord.models.schema import (
    Annotator, Campaign, Dataset, HumanAnswerJudgment, HumanRating, ImportedRating, Item,
)
from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"], responses=AUTHED)

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["mapping"],
            "properties": {
                "mapping": {"type": "string", "description":
                            "JSON object of ImportSpec fields (name, layout, item_col, annotator_col, rating_cols, "
                            "text_col or conversation_col, attribute_cols, label_map, ...); no file paths."},
                **{f: {"type": "string", "format": "binary", "description": "CSV, TSV, JSONL, JSON or Parquet "
                       "(text formats may be .gz)"} for f in FILE_FIELDS},
            },
        }}},
    }
}


def import_upload(state: Any, principal: Principal, upload: Upload) -> dict[str, Any]:
    """Import an upload into the principal's project (the API's upload and the dashboard's form): validated
    completely, written in one transaction; problems name the form field, file, row and column."""
    mapping = dict(upload.mapping)
    for field, path in upload.files.items():
        mapping[field] = str(path)
    mapping["project_id"] = principal.project_id
    prefix = str(upload.folder) + "/"
    try:
        spec = spec_from_mapping(mapping)
        report = import_dataset(state.engine, spec)
    except DatasetImportError as err:
        message = str(err).replace(prefix, "")
        if "already exists" in message or "cannot be replaced" in message:
            raise conflict(message, errors=[{"field": "mapping.name", "message": message}]) from None
        place = import_error_location(message)
        if message.startswith("import spec: "):
            rest = message.removeprefix("import spec: ")
            head = rest.split(":", 1)[0].strip() if ":" in rest else ""
            where = f"mapping.{head}" if head and " " not in head else "mapping"
            raise invalid(message, errors=[{"field": where, "message": rest}]) from None
        file_field: str | None = None
        if place.get("file"):
            stem = place["file"].split(".", 1)[0]
            place["file"] = stem if stem in FILE_FIELDS else place["file"]
            file_field = place["file"]
        errors = [{"field": file_field or "mapping", "message": message}]
        raise invalid(message, errors=errors, **place) from None
    source = "; ".join(f"{f.removesuffix('_file')}={upload.filenames.get(f, '')}" for f in FILE_FIELDS
                       if f in upload.files)
    with Session(state.engine, expire_on_commit=False) as session:
        ds = session.get(Dataset, report.dataset_id)
        assert ds is not None
        ds.source = ("upload: " + source)[:1000]
        session.add(ds)
        session.commit()
        out = dataset_out(ds)
    out.update(n_items=report.n_items, n_annotators=report.n_annotators, n_ratings=report.n_ratings,
               warnings=report.warnings)
    return out


@router.post("", status_code=201, response_model=DatasetCreated, openapi_extra=UPLOAD_BODY,
             responses=problem_responses(409, 413, 415), summary="Upload a dataset")
async def upload_dataset(request: Request, principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    """Multipart upload: ``mapping`` (JSON import fields) and ``ratings_file`` / ``items_file`` /
    ``annotators_file``. Files are streamed to disk under the size limit, then read and validated completely;
    only a valid dataset is written, in one transaction. Problems name the file, row and column."""
    state = state_of(request)
    upload = await receive_upload(request.headers, request.stream(), max_bytes=state.settings.max_upload_bytes,
                                  max_field_bytes=state.settings.max_document_bytes)
    try:
        return await run_in_threadpool(import_upload, state, principal, upload)
    finally:
        upload.cleanup()


@router.get("", response_model=Page[DatasetOut], summary="List datasets")
def list_datasets(request: Request, principal: Annotated[Principal, Depends(api_principal)], limit: Limit = 100,
                  after: After = None) -> Any:
    return project_page(state_of(request).engine, Dataset, principal.project_id, after, limit, dataset_out)


@router.get("/{dataset_id}", response_model=DatasetDetail, responses=problem_responses(404), summary="Show a dataset")
def show_dataset(request: Request, dataset_id: RowId,
                 principal: Annotated[Principal, Depends(api_principal)]) -> Any:
    engine = state_of(request).engine
    with Session(engine) as session:
        ds = dataset_of(session, principal.project_id, dataset_id)
        n_runs = runs_of_dataset(session, dataset_id)
        out = dataset_out(ds)
    summary = summarize_dataset(engine, dataset_id)
    out.update({k: summary[k] for k in ("label_map", "n_items", "n_annotators", "n_ratings", "ratings_per_dimension",
                                        "ratings_per_item", "ratings_per_annotator", "items_without_ratings",
                                        "attributes", "annotators_missing_attribute")})
    out["n_runs"] = n_runs
    return out


@router.get("/{dataset_id}/items", response_model=Page[ItemOut], responses=problem_responses(404),
            summary="List a dataset's items")
def list_items(request: Request, dataset_id: RowId, principal: Annotated[Principal, Depends(api_principal)],
               limit: Limit = 100, after: After = None) -> Any:
    with Session(state_of(request).engine) as session:
        dataset_of(session, principal.project_id, dataset_id)
        q = select(Item).where(col(Item.dataset_id) == dataset_id).order_by(col(Item.id)).limit(limit + 1)
        if after is not None:
            q = q.where(col(Item.id) > after)
        rows = session.execute(q).scalars().all()
    items = [item_out(i) for i in rows[:limit]]
    return {"items": items, "next_cursor": items[-1]["id"] if len(rows) > limit else None}


def delete_dataset_rows(session: Session, dataset_id: int) -> None:
    items = select(col(Item.id)).where(col(Item.dataset_id) == dataset_id).scalar_subquery()
    session.execute(delete(HumanRating).where(col(HumanRating.item_id).in_(items)))
    session.execute(delete(ImportedRating).where(col(ImportedRating.item_id).in_(items)))
    session.execute(delete(HumanAnswerJudgment).where(col(HumanAnswerJudgment.item_id).in_(items)))
    session.execute(delete(Campaign).where(col(Campaign.dataset_id) == dataset_id))
    session.execute(delete(Item).where(col(Item.dataset_id) == dataset_id))
    session.execute(delete(Annotator).where(col(Annotator.dataset_id) == dataset_id))
    session.execute(delete(Dataset).where(col(Dataset.id) == dataset_id))


@router.delete("/{dataset_id}", status_code=204, responses=problem_responses(404, 409), summary="Delete a dataset")
def delete_dataset(request: Request, dataset_id: RowId,
                   principal: Annotated[Principal, Depends(api_principal)]) -> Response:
    """Deletes the dataset with its items, annotators, ratings and run-less campaigns; refused (409) while
    any run refers to it, since its results point at the items."""
    with Session(state_of(request).engine) as session:
        dataset_of(session, principal.project_id, dataset_id)
        n_runs = runs_of_dataset(session, dataset_id)
        if n_runs:
            raise ProblemError(409, f"dataset {dataset_id} has {n_runs} run(s) whose results refer to its items; "
                                    "it cannot be deleted", slug="conflict", n_runs=n_runs)
        try:
            delete_dataset_rows(session, dataset_id)
            session.commit()
        except IntegrityError:
            session.rollback()
            raise ProblemError(409, f"dataset {dataset_id} gained a run while being deleted; it was kept",
                               slug="conflict") from None
    return Response(status_code=204)
