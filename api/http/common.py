"""Bits shared by the route modules: documented problem responses, paging parameters and the id of a stored row
in a URL path."""

from __future__ import annotations

from typing import Annotated, Any

from accord.api.http.problems import PROBLEM_JSON, Problem, ProblemError
from fastapi import Path, Query, Request


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {400: "Bad request", 401: "Missing, unknown or revoked API key", 404: "Not found in this project",
                    409: "Conflicts with the current state", 413: "Upload too large",
                    415: "Unsupported media type", 422: "Invalid request; 'errors' names the fields",
                    429: "Rate limit of the key exceeded", 503: "Not ready"}
    return {code: {"model": Problem, "description": descriptions.get(code, "Problem"),
                   "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for code in codes}


AUTHED = problem_responses(401, 422, 429)

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
After = Annotated[int | None, Query(ge=0, le=2**62, description="Cursor: the next_cursor of the previous page.")]
RowId = Annotated[int, Path(ge=1, le=2**62)]    # a run, dataset or campaign id in a URL path


async def read_document_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    def too_large() -> ProblemError:
        return ProblemError(413, f"the body exceeds the limit of {limit} bytes", slug="too-large",
                            errors=[{"field": "body", "message": "too large"}])

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)
