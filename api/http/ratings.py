"""A run's rating requests with their ratings: cursor pages (by request id) and streamed CSV / Parquet exports.

The export reads the run in id-ordered batches and sends each as it is encoded, so memory stays flat
however large the run: CSV rows as text, Parquet as one row group per batch (the footer comes last)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from accord.report.csv_safe import neutralise
from accord.models.schema import Item, ModelSpec, PromptTemplate, Rating, RatingRequest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

COLUMNS = ["request_id", "item_id", "model", "template", "persona_key", "sample_index", "status", "attempts",
           "last_error", "label", "value", "weighted_value", "parse_status", "raw_text", "cache_hit",
           "input_tokens", "output_tokens", "latency_ms", "cost_usd", "model_snapshot"]
ARROW_SCHEMA = pa.schema([
    ("request_id", pa.int64()), ("item_id", pa.string()), ("model", pa.string()), ("template", pa.string()),
    ("persona_key", pa.string()), ("sample_index", pa.int64()), ("status", pa.string()), ("attempts", pa.int64()),
    ("last_error", pa.string()), ("label", pa.string()), ("value", pa.float64()), ("weighted_value", pa.float64()),
    ("parse_status", pa.string()), ("raw_text", pa.string()), ("cache_hit", pa.bool_()),
    ("input_tokens", pa.int64()), ("output_tokens", pa.int64()), ("latency_ms", pa.float64()),
    ("cost_usd", pa.float64()), ("model_snapshot", pa.string()),
])
EXPORT_BATCH = 5000


def _query(run_id: int, after: int | None, limit: int, model: str | None, template: str | None,
           status: str | None) -> Any:
    q = (select(col(RatingRequest.id), col(Item.external_id), col(ModelSpec.name), col(PromptTemplate.name), col(RatingRequest.persona_key),
                col(RatingRequest.sample_index), col(RatingRequest.status), col(RatingRequest.attempts), col(RatingRequest.last_error),
                col(Rating.label), col(Rating.value), col(Rating.weighted_value), col(Rating.parse_status), col(Rating.raw_text),
                col(Rating.cache_hit), col(Rating.input_tokens), col(Rating.output_tokens), col(Rating.latency_ms), col(Rating.cost_usd),
                col(Rating.model_snapshot))
         .join(Item, col(Item.id) == col(RatingRequest.item_id))
         .join(ModelSpec, col(ModelSpec.id) == col(RatingRequest.model_spec_id))
         .join(PromptTemplate, col(PromptTemplate.id) == col(RatingRequest.template_id))
         .outerjoin(Rating, col(Rating.request_id) == col(RatingRequest.id))
         .where(col(RatingRequest.run_id) == run_id)
         .order_by(col(RatingRequest.id)).limit(limit))
    if after is not None:
        q = q.where(col(RatingRequest.id) > after)
    if model is not None:
        q = q.where(col(ModelSpec.name) == model)
    if template is not None:
        q = q.where(col(PromptTemplate.name) == template)
    if status is not None:
        q = q.where(col(RatingRequest.status) == status)
    return q


def ratings_page(engine: Engine, run_id: int, *, after: int | None, limit: int, model: str | None = None,
                 template: str | None = None, status: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the run's rating requests after request id ``after``, and the cursor of the next page."""
    with engine.connect() as conn:
        rows = conn.execute(_query(run_id, after, limit + 1, model, template, status)).all()
    items = [dict(zip(COLUMNS, r)) for r in rows[:limit]]
    return items, (items[-1]["request_id"] if len(rows) > limit else None)


def _batches(engine: Engine, run_id: int, model: str | None, template: str | None,
             status: str | None) -> Iterator[list[dict[str, Any]]]:
    after: int | None = None
    while True:
        batch, after = ratings_page(engine, run_id, after=after, limit=EXPORT_BATCH, model=model, template=template,
                                    status=status)
        if batch:
            yield batch
        if after is None:
            return


def export_csv(engine: Engine, run_id: int, model: str | None = None, template: str | None = None,
               status: str | None = None) -> Iterator[bytes]:
    """The run's ratings as CSV; text that a spreadsheet would run as a formula is neutralised."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for batch in _batches(engine, run_id, model, template, status):
        for row in batch:
            writer.writerow(["" if row[c] is None else neutralise(row[c]) for c in COLUMNS])
        yield buf.getvalue().encode("utf-8")
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode("utf-8")


class _Sink(io.RawIOBase):
    """A write-only file that hands over what was written since the last ``take``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def export_parquet(engine: Engine, run_id: int, model: str | None = None, template: str | None = None,
                   status: str | None = None) -> Iterator[bytes]:
    sink = _Sink()
    writer = pq.ParquetWriter(sink, ARROW_SCHEMA, compression="zstd")
    wrote = False
    for batch in _batches(engine, run_id, model, template, status):
        columns = {c: [row[c] for row in batch] for c in COLUMNS}
        writer.write_table(pa.Table.from_pydict(columns, schema=ARROW_SCHEMA))
        wrote = True
        chunk = sink.take()
        if chunk:
            yield chunk
    if not wrote:
        writer.write_table(ARROW_SCHEMA.empty_table())
    writer.close()
    yield sink.take()
