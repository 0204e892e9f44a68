"""Import a dataset of human ratings (``accord import``'s engine) and summarize a stored dataset.

``import_dataset`` reads and validates every file completely in memory first (``read_import``), then
writes the dataset, its items, annotators and ratings in ONE transaction with bulk inserts. Any problem
raises ``DatasetImportError`` whose message is one line naming file, row and column, and the database is
left exactly as it was.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from accord.models.import_formats import (
    DatasetImportError,
    Table,
    column_list,
    is_missing_scalar,
    parse_conversation,
    read_table,
    show,
)
from accord.models.projects import LOCAL_PROJECT, ProjectError, find_project, owner_id
from accord.models.import_spec import ImportSpec, LabelMap, match_columns, normalize_label
from accord.models.schema import (
    Annotator,
    Campaign,
    Dataset,
    HumanAnswerJudgment,
    HumanRating,
    ImportedRating,
    Item,
    Project,
    RatingRequest,
    Run,
    utcnow,
)
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy import Table as SqlTable
from sqlalchemy.engine import Engine

__all__ = [
    "DatasetImportError",
    "ImportReport",
    "ImportSpec",
    "ParsedDataset",
    "import_dataset",
    "read_import",
    "summarize_dataset",
]

MAX_ID_LENGTH = 200
MAX_RAW_LABEL_LENGTH = 500
INSERT_CHUNK = 20_000
NON_RESPONDER_SPEAKERS = {"USER", "SYSTEM", "HUMAN"}

RatingRow = tuple[str, str, str, float | None, str]  # item, annotator, dimension, value, raw label


@dataclass
class ImportReport:
    dataset_id: int
    name: str
    n_items: int
    n_annotators: int
    n_ratings: int
    dimensions: list[str]
    warnings: list[str] = field(default_factory=list)
    replaced: bool = False
    seconds: float = 0.0
    dropped: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedDataset:
    """A fully validated import, ready to write."""

    items: dict[str, dict[str, Any]]  # external id -> {"content": ..., "meta": ...}, in file order
    annotators: dict[str, dict[str, Any]]  # external id -> attributes
    ratings: list[RatingRow]
    dimensions: list[str]
    label_maps: dict[str, LabelMap]
    source: str
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, Any] = field(default_factory=dict)  # what the import policies left out or merged
    scales: dict[str, dict[str, Any]] = field(default_factory=dict)  # dimension -> its scale
    model_ratings: list[tuple[str, str, str, float | None, str]] = field(default_factory=list)  # item, rater, dim, value, raw


# --- cells -------------------------------------------------------------------------------------------


class _CellProblem(Exception):
    """A bad cell; the caller adds file, row and column."""


def _ident(value: Any) -> str:
    if is_missing_scalar(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _label_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _json_scalar(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


class _Missing:
    """Which cells mean 'no value': None, NaN, blank, and the spec's ``missing_labels``."""

    def __init__(self, missing_labels: list[str]) -> None:
        self.exact = {m.strip() for m in missing_labels} | {""}
        self.normalized = {normalize_label(m) for m in missing_labels}

    def __call__(self, value: Any) -> bool:
        if is_missing_scalar(value):
            return True
        if isinstance(value, str):
            text = value.strip()
            return text in self.exact or normalize_label(text) in self.normalized
        return False


def _blank(value: Any) -> bool:
    return is_missing_scalar(value) or (isinstance(value, str) and not value.strip())


_UNMAPPED = object()  # a cell that is not a label, under ``unmapped_label: missing``


def _as_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class _RatingReader:
    """Turns one rating cell into (value, raw label), or None for a missing cell.

    Labels match exactly, then case- and space-insensitively, then (numeric labels) by value, so that
    ``1.0`` and ``01`` find the label ``1``. With ``unmapped="missing"`` a cell that is no label counts as
    missing and is tallied in ``dropped`` (label -> count)."""

    def __init__(
        self, dimension: str, label_map: LabelMap | None, missing: _Missing, unmapped: str = "error"
    ) -> None:
        self.dimension = dimension
        self.label_map = label_map
        self.normalized = {normalize_label(k): v for k, v in (label_map or {}).items()}
        self.numeric: dict[float, float | None] = {}
        for label, value in (label_map or {}).items():
            number = _as_number(label.strip())
            if number is not None:
                self.numeric.setdefault(number, value)
        self.missing = missing
        self.unmapped = unmapped
        self.dropped: Counter[str] = Counter()
        self.cache: dict[tuple[type, Any], Any] = {}

    def read(self, cell: Any) -> tuple[float | None, str] | None:
        try:
            key = (type(cell), cell)
            hit = self.cache.get(key, self)
        except TypeError:  # unhashable (a list from JSON)
            hit = self._resolve(cell)
        else:
            if hit is self:
                hit = self.cache[key] = self._resolve(cell)
        if hit is _UNMAPPED:
            self.dropped[_label_text(cell).strip()[:80]] += 1
            return None
        return hit  # type: ignore[no-any-return]  # the cache holds what _resolve returns

    def _not_a_label(self, message: str) -> Any:
        if self.unmapped == "missing":
            return _UNMAPPED
        raise _CellProblem(message)

    def _resolve(self, cell: Any) -> Any:
        if is_missing_scalar(cell):
            return None
        raw = _label_text(cell)
        text = raw.strip()
        label = text[:MAX_RAW_LABEL_LENGTH]
        if self.label_map is not None:
            if raw in self.label_map:
                return self.label_map[raw], label
            if text in self.label_map:
                return self.label_map[text], label
            if text in self.missing.exact:
                return None
            norm = normalize_label(text)
            if norm in self.normalized:
                return self.normalized[norm], label
            if norm in self.missing.normalized:
                return None
            number = _as_number(text)
            if number is not None and number in self.numeric:
                return self.numeric[number], label
            known = ", ".join(self.label_map) or "(none)"
            return self._not_a_label(
                f"unmapped label {show(text)} for dimension {self.dimension!r}; known labels: {known} "
                "(with unmapped_label missing such cells count as missing)"
            )
        if self.missing(cell):
            return None
        if isinstance(cell, bool):
            return float(cell), label
        if isinstance(cell, (int, float)):
            number = float(cell)
        else:
            try:
                number = float(text)
            except ValueError:
                return self._not_a_label(
                    f"unparseable number {show(text)} (dimension {self.dimension!r} has no label_map, "
                    "so its ratings must be numbers; with unmapped_label missing such cells count as missing)"
                )
        if math.isnan(number):
            return None
        if not math.isfinite(number):
            raise _CellProblem(f"rating {show(text)} is not a finite number")
        return number, label


# --- reading and validating ---------------------------------------------------------------------------


def _ids(table: Table, column: str, role: str, hint: str = "") -> list[str]:
    values = table.require(column, role, hint)
    ids = [_ident(v) for v in values]
    for index, eid in enumerate(ids):
        if not eid:
            raise DatasetImportError(f"{table.where(index, column)}: empty {role}")
        if len(eid) > MAX_ID_LENGTH:
            raise DatasetImportError(
                f"{table.where(index, column)}: {role} {show(eid)} is longer than {MAX_ID_LENGTH} characters"
            )
    return ids


def _unique_ids(table: Table, column: str, role: str, hint: str = "") -> tuple[list[str], dict[str, int]]:
    ids = _ids(table, column, role, hint)
    first: dict[str, int] = {}
    for index, eid in enumerate(ids):
        if eid in first:
            raise DatasetImportError(
                f"{table.where(index, column)}: {role} {eid!r} appears twice "
                f"(first on {table.unit} {table.row_numbers[first[eid]]})"
            )
        first[eid] = index
    return ids, first


def _first_rows(ids: list[str]) -> dict[str, int]:
    first: dict[str, int] = {}
    for index, eid in enumerate(ids):
        first.setdefault(eid, index)
    return first


def _collect(
    table: Table,
    ids: list[str],
    column: str,
    role: str,
    entity: str,
    is_missing: Callable[[Any], bool],
    convert: Callable[[Any], Any],
) -> dict[str, tuple[Any, int]]:
    """Per entity id, its value of ``column`` and the row it came from; two different values for the
    same entity is an error naming both rows."""
    values = table.require(column, role)
    found: dict[str, tuple[Any, int]] = {}
    for index, (eid, value) in enumerate(zip(ids, values)):
        if is_missing(value):
            continue
        value = convert(value)
        previous = found.get(eid)
        if previous is None:
            found[eid] = (value, index)
        elif previous[0] != value:
            raise DatasetImportError(
                f"{table.where(index, column)}: {entity} {eid!r} has {show(value)} here but {show(previous[0])} "
                f"on {table.unit} {table.row_numbers[previous[1]]}"
            )
    return found


@dataclass
class _Source:
    """A table that holds rows of some entity (items or annotators), with that entity's id per row."""

    table: Table
    ids: list[str]


def _pick_source(column: str, role: str, sources: list[_Source]) -> _Source:
    for source in sources:
        if source.table.has(column):
            return source
    sources[0].table.require(column, role)  # raises: names the first (preferred) file and its columns
    raise AssertionError("unreachable")


WIDE_LOOKING_COLUMNS = 10  # a long-layout file with more columns than this may be a wide one


def _merge_duplicates(ratings: list[RatingRow], merged: dict[int, list[tuple[float | None, str]]]) -> None:
    """``on_duplicate: mean``: each repeated rating becomes the mean of its values (labels joined by |)."""
    for pos, values in merged.items():
        numbers = [v for v, _raw in values if v is not None]
        labels = "|".join(dict.fromkeys(raw for _v, raw in values))[:MAX_RAW_LABEL_LENGTH]
        item, annotator, dimension = ratings[pos][:3]
        value = sum(numbers) / len(numbers) if numbers else None
        ratings[pos] = (item, annotator, dimension, value, labels)


def _read_ratings(
    spec: ImportSpec,
    table: Table,
    readers: dict[str, _RatingReader],
    excluded: set[str],
    dropped: dict[str, Any],
) -> tuple[list[RatingRow], list[str], list[str] | None, list[str]]:
    """Ratings, the item id of every row, (long layout) the annotator id of every row, and every annotator
    the file names (even one whose cells are all empty), in order of appearance. Repeated ratings follow
    ``spec.on_duplicate``; how many were dropped or merged goes to ``dropped["duplicate_ratings"]``."""
    item_ids = _ids(table, spec.item_col, "item id")
    ratings: list[RatingRow] = []
    seen: dict[tuple[str, str, str], tuple[int, int]] = {}  # key -> (row index, position in ratings)
    merged: dict[int, list[tuple[float | None, str]]] = {}
    unit, numbers = table.unit, table.row_numbers
    policy = spec.on_duplicate
    n_duplicates = 0

    def add(index: int, item: str, annotator: str, dimension: str, column: str, cell: Any) -> None:
        nonlocal n_duplicates
        try:
            got = readers[dimension].read(cell)
        except _CellProblem as problem:
            raise DatasetImportError(f"{table.where(index, column)}: {problem}") from None
        if got is None:
            return
        key = (item, annotator, dimension)
        first = seen.get(key)
        if first is not None:
            if policy == "error":
                raise DatasetImportError(
                    f"{table.where(index, column)}: duplicate rating of item {item!r} by annotator "
                    f"{annotator!r} for dimension {dimension!r} (first on {unit} {numbers[first[0]]}); "
                    "use on_duplicate first, last or mean to keep one"
                )
            n_duplicates += 1
            pos = first[1]
            if policy == "last":
                ratings[pos] = (item, annotator, dimension, got[0], got[1])
            elif policy == "mean":
                merged.setdefault(pos, [(ratings[pos][3], ratings[pos][4])]).append(got)
            return
        seen[key] = (index, len(ratings))
        ratings.append((item, annotator, dimension, got[0], got[1]))

    def finish() -> None:
        _merge_duplicates(ratings, merged)
        if n_duplicates:
            dropped["duplicate_ratings"] = {"count": n_duplicates, "policy": policy}

    if spec.layout == "long":
        hint = ""
        if len(table.column_order) > WIDE_LOOKING_COLUMNS:
            hint = (
                "; if each column holds one annotator's ratings, the file is wide: use layout wide with "
                "annotator_columns"
            )
        annotator_ids = _ids(table, spec.annotator_col, "annotator id", hint)
        columns = [
            (column, dimension, table.require(column, f"ratings of dimension {dimension!r}"))
            for column, dimension in spec.rating_columns().items()
        ]
        for index in range(len(table)):
            for column, dimension, values in columns:
                add(index, item_ids[index], annotator_ids[index], dimension, column, values[index])
        finish()
        return ratings, item_ids, annotator_ids, list(_first_rows(annotator_ids))

    assert spec.annotator_columns is not None
    candidates = [c for c in table.column_order if c not in excluded]
    annotator_columns = match_columns(spec.annotator_columns, candidates)
    if not annotator_columns:
        raise DatasetImportError(
            f"{table.header_where()}: no column matches annotator_columns {show(spec.annotator_columns)}; "
            f"the columns are: {column_list(table.column_order)}"
        )
    for column in annotator_columns:
        table.require(column, "annotator ratings")
        if len(column.strip()) > MAX_ID_LENGTH:
            raise DatasetImportError(
                f"{table.header_where()}: annotator column name {show(column)} is too long"
            )
    dimension = spec.dimension
    for column in annotator_columns:
        values = table.columns[column]
        annotator = column.strip()
        for index in range(len(table)):
            add(index, item_ids[index], annotator, dimension, column, values[index])
    finish()
    return ratings, item_ids, None, list(dict.fromkeys(c.strip() for c in annotator_columns))


def _build_items(
    spec: ImportSpec,
    order: list[str],
    sources: list[_Source],
    missing: _Missing,
    warnings: list[str],
) -> dict[str, dict[str, Any]]:
    first_rows = {id(s): _first_rows(s.ids) for s in sources}

    def column_values(column: str, role: str, blank_only: bool) -> tuple[_Source, dict[str, tuple[Any, int]]]:
        source = _pick_source(column, role, sources)
        is_missing = _blank if blank_only else missing
        convert = (lambda v: v) if blank_only else _json_scalar
        return source, _collect(source.table, source.ids, column, role, "item", is_missing, convert)

    def where(source: _Source, eid: str, column: str) -> str:
        return source.table.where(first_rows[id(source)][eid], column)

    main_col = spec.text_col or spec.conversation_col
    assert main_col is not None
    main_source, main_values = column_values(main_col, "item content", blank_only=True)
    response_source: _Source | None = None
    response_values: dict[str, tuple[Any, int]] = {}
    if spec.response_col:
        response_source, response_values = column_values(spec.response_col, "final response", blank_only=True)
    meta_values = [(c, column_values(c, "item metadata", blank_only=False)[1]) for c in spec.item_meta_cols]
    meta_values += [
        (role, column_values(column, f"item metadata, role {role}", blank_only=False)[1])
        for role, column in spec.meta_roles.items()
    ]

    items: dict[str, dict[str, Any]] = {}
    pending_response: dict[str, str] = {}  # item -> its own last responder, if any
    responders: Counter[str] = Counter()
    leading_text = 0
    for eid in order:
        cell = main_values.get(eid)
        if spec.text_col:
            text = None if cell is None else str(cell[0]).strip()
            if spec.response_col:
                turns = [{"speaker": "USER", "text": text}] if text else []
                content: dict[str, Any] = {"kind": "conversation", "turns": turns}
            else:
                if not text:
                    raise DatasetImportError(
                        f"{where(main_source, eid, main_col)}: empty text for item {eid!r}"
                    )
                content = {"kind": "text", "text": text}
        else:
            turns = []
            if cell is not None:
                try:
                    turns, leading = parse_conversation(cell[0])
                except ValueError as exc:
                    raise DatasetImportError(
                        f"{main_source.table.where(cell[1], main_col)}: cannot read the conversation: {exc}"
                    ) from None
                leading_text += leading
            for turn in turns:
                if turn["speaker"] not in NON_RESPONDER_SPEAKERS:
                    responders[turn["speaker"]] += 1
                    pending_response[eid] = turn["speaker"]
            content = {"kind": "conversation", "turns": turns}
        if spec.response_col:
            assert response_source is not None
            response = response_values.get(eid)
            if response is None:
                raise DatasetImportError(
                    f"{where(response_source, eid, spec.response_col)}: empty response for item {eid!r}"
                )
            content["turns"].append({"speaker": "", "text": str(response[0]).strip()})
        if content["kind"] == "conversation" and not content["turns"]:
            raise DatasetImportError(
                f"{where(main_source, eid, main_col)}: empty conversation for item {eid!r}"
            )
        meta = {column: values[eid][0] for column, values in meta_values if eid in values}
        items[eid] = {"content": content, "meta": meta}

    if spec.response_col:
        fallback = spec.response_speaker.strip().upper() if spec.response_speaker else None
        common = responders.most_common(1)[0][0] if responders else "ASSISTANT"
        for eid, item in items.items():
            item["content"]["turns"][-1]["speaker"] = fallback or pending_response.get(eid, common)
    if leading_text:
        warnings.append(
            f"{leading_text} conversation(s) began with text before any 'SPEAKER:' line; it became a USER turn"
        )
    return items


def _build_annotators(
    spec: ImportSpec,
    order: list[str],
    sources: list[_Source],
    annotators_table: Table | None,
    missing: _Missing,
) -> dict[str, dict[str, Any]]:
    columns = list(spec.attribute_cols)
    if not columns and annotators_table is not None:
        columns = [c for c in annotators_table.column_order if c != spec.annotator_col]
    attributes: dict[str, dict[str, Any]] = {eid: {} for eid in order}
    for column in columns:
        source = _pick_source(column, "annotator attribute", sources)
        values = _collect(
            source.table, source.ids, column, "annotator attribute", "annotator", missing, _json_scalar
        )
        for eid, (value, _row) in values.items():
            if eid in attributes:
                attributes[eid][column] = value
    return attributes


# Column names that usually hold a metadata role; imported under their own name they drive nothing.
_ROLE_SYNONYMS = {
    "model": "subject_model", "subject": "subject_model", "generator": "subject_model", "system": "subject_model",
    "model_name": "subject_model", "category": "category", "harm_type": "category", "type": "category",
    "label": "expert_label", "gold": "expert_label", "gold_label": "expert_label", "expert": "expert_label",
}


def _role_hints(spec: ImportSpec) -> list[str]:
    hints = []
    for column in spec.item_meta_cols:
        role = _ROLE_SYNONYMS.get(column.strip().lower())
        if role and role != column and role not in spec.meta_roles:
            hints.append(
                f"metadata column {column!r} is stored as {column!r}, which no analysis reads; for the "
                f"{role} role use meta_roles {role}={column}"
            )
    return hints


def _source_text(spec: ImportSpec) -> str:
    parts = [
        f"{role}={path}"
        for role, path in (
            ("ratings", spec.ratings_file),
            ("items", spec.items_file),
            ("annotators", spec.annotators_file),
        )
        if path is not None
    ]
    text = "; ".join(parts)
    return text if len(text) <= 1000 else text[:999] + "…"


MAX_SCALE_VALUES = 20  # a scale with at most this many distinct values lists them


def dimension_scales(
    dimensions: list[str], label_maps: dict[str, LabelMap], ratings: list[RatingRow]
) -> dict[str, dict[str, Any]]:
    """Each dimension's scale: from its label map (every value it can take), else from the observed ratings."""
    observed: dict[str, set[float]] = {d: set() for d in dimensions}
    for _item, _annotator, dimension, value, _raw in ratings:
        if value is not None:
            observed[dimension].add(value)
    scales: dict[str, dict[str, Any]] = {}
    for dimension in dimensions:
        label_map = label_maps.get(dimension)
        if label_map:
            values = sorted({v for v in label_map.values() if v is not None})
            source = "label_map"
        else:
            values = sorted(observed[dimension])
            source = "observed"
        if not values:
            continue
        scale: dict[str, Any] = {"min": values[0], "max": values[-1], "source": source}
        if len(values) <= MAX_SCALE_VALUES:
            scale["values"] = values
        scales[dimension] = scale
    return scales


def _entity_source(table: Table, id_col: str | None, ratings_col: str, entity: str, file: str) -> _Source:
    """The items (or annotators) file as a source: its id column is ``id_col``, else the ratings file's."""
    hint = "" if id_col else f"; name the {file} file's id column with {file}_id_col"
    ids, _first = _unique_ids(table, id_col or ratings_col, f"{entity} id", hint)
    return _Source(table, ids)


def read_import(spec: ImportSpec) -> ParsedDataset:
    """Read and validate every file of ``spec`` without touching any database."""
    missing = _Missing(spec.missing_labels)
    dimensions = spec.dimensions()
    label_maps = spec.label_maps()
    warnings: list[str] = []

    key = spec.records_key
    ratings_table = read_table(spec.ratings_file, key) if spec.ratings_file is not None else None
    items_table = read_table(spec.items_file, key) if spec.items_file is not None else None
    annotators_table = read_table(spec.annotators_file, key) if spec.annotators_file is not None else None
    dropped: dict[str, Any] = {}

    item_side = {
        c
        for c in (spec.item_col, spec.items_id_col, spec.text_col, spec.conversation_col, spec.response_col)
        if c
    }
    excluded = (item_side | set(spec.item_meta_cols) | set(spec.attribute_cols) | set(spec.meta_roles.values())
                | set(spec.model_rating_cols.values()))
    warnings.extend(_role_hints(spec))

    ratings: list[RatingRow] = []
    item_sources: list[_Source] = []
    annotator_sources: list[_Source] = []
    item_order: list[str] = []
    annotator_order: list[str] = []

    if items_table is not None:
        source = _entity_source(items_table, spec.items_id_col, spec.item_col, "item", "items")
        item_sources.append(source)
        item_order = list(source.ids)
    if annotators_table is not None:
        source = _entity_source(annotators_table, spec.annotators_id_col, spec.annotator_col, "annotator",
                                "annotators")
        annotator_sources.append(source)
        annotator_order = list(source.ids)

    if ratings_table is not None:
        readers = {d: _RatingReader(d, label_maps.get(d), missing, spec.unmapped_label) for d in dimensions}
        ratings, row_items, row_annotators, named_annotators = _read_ratings(
            spec, ratings_table, readers, excluded, dropped
        )
        unmapped: Counter[str] = Counter()
        for reader in readers.values():
            unmapped.update(reader.dropped)
        if unmapped:
            dropped["unmapped_labels"] = {
                "count": sum(unmapped.values()),
                "policy": "missing",
                "examples": dict(unmapped.most_common(5)),
                "per_dimension": {d: sum(r.dropped.values()) for d, r in readers.items() if r.dropped},
            }
        item_sources.append(_Source(ratings_table, row_items))
        if row_annotators is not None:
            annotator_sources.append(_Source(ratings_table, row_annotators))
        if items_table is not None:
            known = set(item_order)
            for index, eid in enumerate(row_items):
                if eid not in known:
                    raise DatasetImportError(
                        f"{ratings_table.where(index, spec.item_col)}: item {eid!r} is not in the items file "
                        f"{items_table.name}"
                    )
        else:
            item_order = list(_first_rows(row_items))
        known_annotators = set(annotator_order)
        unlisted = [a for a in named_annotators if a not in known_annotators]
        if annotators_table is not None and unlisted:
            warnings.append(
                f"{len(unlisted)} annotator(s) of the ratings file are not in {annotators_table.name} "
                f"(e.g. {unlisted[0]!r}); they have no attributes"
            )
        annotator_order += unlisted
        rated_items = {r[0] for r in ratings}
        unrated = sum(1 for eid in item_order if eid not in rated_items)
        if unrated:
            warnings.append(f"{unrated} item(s) have no ratings")
        rated_set = {r[1] for r in ratings}
        idle = sum(1 for a in annotator_order if a not in rated_set)
        if idle:
            warnings.append(f"{idle} annotator(s) have no ratings")
        per_dimension = Counter(r[2] for r in ratings)
        for dimension in dimensions:
            if not per_dimension[dimension]:
                warnings.append(f"dimension {dimension!r} has no ratings (every cell is empty)")

    if spec.attribute_cols and not annotator_sources:
        raise DatasetImportError(
            "import spec: attribute_cols need an annotators_file (or a long-layout ratings file holding them)"
        )
    items = _build_items(spec, item_order, item_sources, missing, warnings)
    annotators = _build_annotators(spec, annotator_order, annotator_sources, annotators_table, missing)
    model_ratings = _read_model_ratings(spec, item_order, item_sources, dimensions, label_maps, missing, warnings)
    scales = dimension_scales(dimensions, label_maps, ratings)
    return ParsedDataset(model_ratings=model_ratings, items=items, annotators=annotators, ratings=ratings,
                         dimensions=dimensions, label_maps=label_maps, source=_source_text(spec),
                         warnings=warnings, dropped=dropped, scales=scales)


def _read_model_ratings(spec: ImportSpec, order: list[str], sources: list[_Source], dimensions: list[str],
                        label_maps: dict[str, LabelMap], missing: _Missing,
                        warnings: list[str]) -> list[tuple[str, str, str, float | None, str]]:
    """An existing judge model's label per item (``model_rating_cols``), read like a human rating of the
    dataset's one dimension: the same label map, the same missing cells; one value per item."""
    out: list[tuple[str, str, str, float | None, str]] = []
    if not spec.model_rating_cols:
        return out
    dimension = dimensions[0]
    reader = _RatingReader(dimension, label_maps.get(dimension), missing)
    for rater, column in spec.model_rating_cols.items():
        source = _pick_source(column, f"model rating ({rater})", sources)
        values = _collect(source.table, source.ids, column, f"model rating ({rater})", "item", missing,
                          lambda v: v)
        for eid in order:
            if eid not in values:
                continue
            cell, row = values[eid]
            try:
                read = reader.read(cell)
            except _CellProblem as problem:
                raise DatasetImportError(f"{source.table.where(row, column)}: {problem}") from None
            if read is not None:
                out.append((eid, rater, dimension, read[0], read[1]))
        unrated = len(order) - sum(1 for r in out if r[1] == rater)
        if unrated:
            warnings.append(f"model rater {rater!r} ({column}) has no label for {unrated} item(s)")
    return out


# --- writing ------------------------------------------------------------------------------------------


def _table(model: Any) -> SqlTable:
    return model.__table__  # type: ignore[no-any-return]  # SQLModel sets __table__ on table classes


def _find_dataset(conn: Connection, name: str, project_id: int | None) -> int | None:
    datasets = _table(Dataset)
    owner = datasets.c.project_id.is_(None) if project_id is None else datasets.c.project_id == project_id
    return conn.execute(select(datasets.c.id).where(datasets.c.name == name, owner)).scalar()


def _check_preconditions(conn: Connection, spec: ImportSpec) -> int | None:
    if spec.project_id is not None:
        projects = _table(Project)
        if conn.execute(select(projects.c.id).where(projects.c.id == spec.project_id)).scalar() is None:
            raise DatasetImportError(f"import spec: project_id: no project with id {spec.project_id}")
    existing = _find_dataset(conn, spec.name, spec.project_id)
    if existing is None:
        return None
    if not spec.replace:
        raise DatasetImportError(
            f"a dataset named {spec.name!r} already exists (id {existing}); choose another name or replace it "
            "(replace: true)"
        )
    runs, campaigns, requests, items = _table(Run), _table(Campaign), _table(RatingRequest), _table(Item)
    n_runs = conn.execute(
        select(func.count())
        .select_from(runs.join(campaigns, runs.c.campaign_id == campaigns.c.id))
        .where(campaigns.c.dataset_id == existing)
    ).scalar_one()
    n_requests = conn.execute(
        select(func.count())
        .select_from(requests.join(items, requests.c.item_id == items.c.id))
        .where(items.c.dataset_id == existing)
    ).scalar_one()
    if n_runs or n_requests:
        raise DatasetImportError(
            f"dataset {spec.name!r} (id {existing}) has {n_runs} run(s) and cannot be replaced, since their "
            "results refer to its items; import it under another name"
        )
    return existing


def _delete_contents(conn: Connection, dataset_id: int) -> None:
    items, annotators, ratings = _table(Item), _table(Annotator), _table(HumanRating)
    item_ids = select(items.c.id).where(items.c.dataset_id == dataset_id).scalar_subquery()
    conn.execute(delete(ratings).where(ratings.c.item_id.in_(item_ids)))
    imported = _table(ImportedRating)
    conn.execute(delete(imported).where(imported.c.item_id.in_(item_ids)))
    judged = _table(HumanAnswerJudgment)
    conn.execute(delete(judged).where(judged.c.item_id.in_(item_ids)))
    annotator_ids = select(annotators.c.id).where(annotators.c.dataset_id == dataset_id).scalar_subquery()
    conn.execute(delete(ratings).where(ratings.c.annotator_id.in_(annotator_ids)))
    conn.execute(delete(items).where(items.c.dataset_id == dataset_id))
    conn.execute(delete(annotators).where(annotators.c.dataset_id == dataset_id))


def _insert_many(conn: Connection, table: SqlTable, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        if chunk:  # an empty parameter list would insert one row of defaults
            conn.execute(insert(table), chunk)


def _id_map(conn: Connection, table: SqlTable, dataset_id: int) -> dict[str, int]:
    rows = conn.execute(select(table.c.external_id, table.c.id).where(table.c.dataset_id == dataset_id))
    return {external: internal for external, internal in rows}


def write_dataset(engine: Engine, spec: ImportSpec, parsed: ParsedDataset) -> tuple[int, bool]:
    """Write a validated import in one transaction; the dataset id and whether an old one was replaced."""
    datasets = _table(Dataset)
    fields = {
        "description": spec.description,
        "source": parsed.source,
        "label_map": parsed.label_maps,
        "dimensions": parsed.dimensions,
        "import_info": {"dropped": parsed.dropped, "scales": parsed.scales,
                        **({"meaning": spec.meaning} if spec.meaning else {})},
        "created_at": utcnow(),
    }
    with engine.begin() as conn:
        existing = _check_preconditions(conn, spec)
        if existing is not None:
            _delete_contents(conn, existing)
            conn.execute(update(datasets).where(datasets.c.id == existing).values(**fields))
            dataset_id = existing
        else:
            result = conn.execute(
                insert(datasets).values(name=spec.name, project_id=spec.project_id, **fields)
            )
            inserted = result.inserted_primary_key
            assert inserted is not None                 # an INSERT of one row
            dataset_id = int(inserted[0])
        items_table, annotators_table = _table(Item), _table(Annotator)
        _insert_many(
            conn,
            items_table,
            [
                {
                    "dataset_id": dataset_id,
                    "external_id": eid,
                    "content": item["content"],
                    "metadata": item["meta"],
                }
                for eid, item in parsed.items.items()
            ],
        )
        _insert_many(
            conn,
            annotators_table,
            [
                {"dataset_id": dataset_id, "external_id": eid, "attributes": attributes}
                for eid, attributes in parsed.annotators.items()
            ],
        )
        item_ids = _id_map(conn, items_table, dataset_id)
        annotator_ids = _id_map(conn, annotators_table, dataset_id)
        _insert_ratings(conn, parsed.ratings, item_ids, annotator_ids)
        _insert_many(conn, _table(ImportedRating), [
            {"item_id": item_ids[eid], "rater": rater, "dimension": dim, "value": value, "raw_label": raw}
            for eid, rater, dim, value, raw in parsed.model_ratings])
    return dataset_id, existing is not None


def _insert_ratings(
    conn: Connection, ratings: list[RatingRow], item_ids: dict[str, int], annotator_ids: dict[str, int]
) -> None:
    """Human ratings in bulk: PostgreSQL's COPY (in the same transaction), else executemany."""
    table = _table(HumanRating)
    columns = ("item_id", "annotator_id", "dimension", "value", "raw_label")
    rows = [(item_ids[i], annotator_ids[a], dim, value, raw) for i, a, dim, value, raw in ratings]
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg" and rows:
        with driver.cursor() as cursor:  # type: ignore[union-attr]  # psycopg's own connection on this PostgreSQL branch
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    _insert_many(conn, table, [dict(zip(columns, row)) for row in rows])


def import_dataset(engine: Engine, spec: ImportSpec) -> ImportReport:
    """Import the files of ``spec`` as a new dataset (or replace one, with ``spec.replace``).

    Raises ``DatasetImportError`` (one line naming file/row/column) and leaves the database untouched on
    any problem."""
    started = time.perf_counter()
    if spec.project_id is None:  # the local project's; until it exists, no dataset name of it is taken
        try:
            spec = spec.model_copy(update={"project_id": find_project(engine, LOCAL_PROJECT).id})
        except ProjectError:
            pass
    with engine.connect() as conn:  # fail fast on a taken name, before reading large files
        _check_preconditions(conn, spec)
    parsed = read_import(spec)
    if spec.project_id is None:  # the files are good: the local project comes into being for them
        spec = spec.model_copy(update={"project_id": owner_id(engine, None)})
    dataset_id, replaced = write_dataset(engine, spec, parsed)
    return ImportReport(
        dataset_id=dataset_id,
        name=spec.name,
        n_items=len(parsed.items),
        n_annotators=len(parsed.annotators),
        n_ratings=len(parsed.ratings),
        dimensions=list(parsed.dimensions),
        warnings=list(parsed.warnings),
        replaced=replaced,
        seconds=round(time.perf_counter() - started, 3),
        dropped=dict(parsed.dropped),
    )


# --- summary ------------------------------------------------------------------------------------------


def _spread(counts: list[int]) -> dict[str, float]:
    if not counts:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(counts), "median": float(statistics.median(counts)), "max": max(counts)}


def _ratings_per(conn: Any, entity: Any, rating_fk: Any, ratings: Any, dataset_id: int) -> list[int]:
    """How many ratings each item (or annotator) of the dataset has, zeros included."""
    counts = conn.execute(
        select(func.count(ratings.c.id))
        .select_from(entity.outerjoin(ratings, rating_fk == entity.c.id))
        .where(entity.c.dataset_id == dataset_id)
        .group_by(entity.c.id)
    )
    return [int(n) for (n,) in counts]


def summarize_dataset(engine: Engine, dataset_id: int) -> dict[str, Any]:
    """Counts of a stored dataset: items, annotators, ratings (per dimension), annotators per attribute
    value (and how many lack each attribute), ratings per item and per annotator (min/median/max)."""
    datasets, items, annotators, ratings = (
        _table(Dataset),
        _table(Item),
        _table(Annotator),
        _table(HumanRating),
    )
    with engine.connect() as conn:
        row = conn.execute(select(datasets).where(datasets.c.id == dataset_id)).mappings().first()
        if row is None:
            raise LookupError(f"no dataset with id {dataset_id}")
        per_item = _ratings_per(conn, items, ratings.c.item_id, ratings, dataset_id)
        per_annotator = _ratings_per(conn, annotators, ratings.c.annotator_id, ratings, dataset_id)
        per_dimension = {
            dimension: int(n)
            for dimension, n in conn.execute(
                select(ratings.c.dimension, func.count(ratings.c.id))
                .select_from(ratings.join(items, ratings.c.item_id == items.c.id))
                .where(items.c.dataset_id == dataset_id)
                .group_by(ratings.c.dimension)
            )
        }
        attribute_rows = [
            attrs or {}
            for (attrs,) in conn.execute(
                select(annotators.c.attributes).where(annotators.c.dataset_id == dataset_id)
            )
        ]
    names = sorted({name for attrs in attribute_rows for name in attrs})
    value_counts: dict[str, dict[str, int]] = {}
    lacking: dict[str, int] = {}
    for name in names:
        counter: Counter[str] = Counter(
            attrs[name] if isinstance(attrs[name], str) else json.dumps(attrs[name])
            for attrs in attribute_rows
            if name in attrs
        )
        value_counts[name] = dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
        lacking[name] = sum(1 for attrs in attribute_rows if name not in attrs)
    return {
        "dataset_id": dataset_id,
        "name": row["name"],
        "project_id": row["project_id"],
        "description": row["description"],
        "source": row["source"],
        "dimensions": list(row["dimensions"] or []),
        "label_map": dict(row["label_map"] or {}),
        "dropped": dict((row["import_info"] or {}).get("dropped") or {}),
        "scales": dict((row["import_info"] or {}).get("scales") or {}),
        "n_items": len(per_item),
        "n_annotators": len(per_annotator),
        "n_ratings": sum(per_item),
        "ratings_per_dimension": per_dimension,
        "ratings_per_item": _spread(per_item),
        "ratings_per_annotator": _spread(per_annotator),
        "items_without_ratings": sum(1 for n in per_item if n == 0),
        "attributes": value_counts,
        "annotators_missing_attribute": lacking,
    }
