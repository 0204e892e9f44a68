"""People's judgments of subject models' answers: import into a dataset, and load for a run's analysis.

A judgments file (CSV, TSV, JSONL, JSON or Parquet) has one row per person x answer: the annotator, the answer
— keyed to (item, subject model alias) or to a stored answer's id (``accord results --table answers``) — and a
rating, a rank (1 = ranked first among the answers to the item), or both. Ratings are numbers or labels mapped
by ``label_map`` (else the dataset's label map of the dimension). Ranks of one annotator on one item must be
1..k, each once. Any problem is one line naming the file, row and column, and nothing is stored: the import is
one transaction. Annotators not yet in the dataset are added (with no attributes)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from accord.models.import_formats import DatasetImportError, Table, one_line, read_table, show
from accord.models.import_spec import LabelMap, normalize_label, parse_label_map_string
from accord.models.projects import owner_id
from accord.models.schema import (
    Annotator,
    Answer,
    Campaign,
    Dataset,
    HumanAnswerJudgment,
    Item,
    ModelSpec,
    Run,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

KINDS = ("rating", "rank")


class AnswerJudgmentSpec(BaseModel):
    """Where people's judgments of answers are and which column holds what (``accord import --answer-judgments``
    or ``answer_judgments:`` in an import YAML)."""

    model_config = ConfigDict(extra="forbid")

    file: Path
    dataset: str = Field(min_length=1, max_length=200)
    project_id: int | None = None
    item_col: str | None = "item_id"
    subject_col: str | None = "subject"
    answer_col: str | None = Field(None, description="A stored answer's id (instead of item and subject).")
    annotator_col: str = "annotator_id"
    rating_col: str | None = None
    rank_col: str | None = None
    dimension: str = Field("harm", min_length=1, max_length=200)
    label_map: str | dict[str, Any] | None = None
    replace: bool = Field(False, description="Replace the dataset's judgments of this dimension.")

    @model_validator(mode="after")
    def _check(self) -> AnswerJudgmentSpec:
        if not self.rating_col and not self.rank_col:
            raise ValueError("give rating_col, rank_col, or both")
        if not self.answer_col and not (self.item_col and self.subject_col):
            raise ValueError("give answer_col, or item_col and subject_col")
        return self

    def label_map_values(self) -> LabelMap:
        if self.label_map is None:
            return {}
        if isinstance(self.label_map, str):
            return parse_label_map_string(self.label_map)
        return {str(k): (None if v is None else float(v)) for k, v in self.label_map.items()}


@dataclass
class AnswerJudgmentReport:
    dataset: str
    ratings: int = 0
    ranks: int = 0
    annotators_added: int = 0
    subjects: list[str] = field(default_factory=list)


def spec_from_options(data: dict[str, Any], base_dir: Path | None = None) -> AnswerJudgmentSpec:
    data = dict(data)
    if base_dir is not None and data.get("file") is not None and not Path(str(data["file"])).is_absolute():
        data["file"] = Path(base_dir) / str(data["file"])
    try:
        return AnswerJudgmentSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"{p}: " for p in first["loc"])
        raise DatasetImportError(one_line(f"answer judgments: {where}{first['msg'].removeprefix('Value error, ')}")
                                 ) from None


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(table: Table, i: int, column: str, raw: Any, labels: LabelMap) -> float | None:
    text = _text(raw)
    if text == "" or text.upper() == "NA":
        return None
    mapped = {normalize_label(k): v for k, v in labels.items()}
    if normalize_label(text) in mapped:
        return mapped[normalize_label(text)]
    try:
        return float(text)
    except ValueError:
        hint = f"; the label map has {', '.join(map(repr, labels))}" if labels else "; give --label-map"
        raise DatasetImportError(f"{table.where(i, column)}: {show(text)} is neither a number nor a label{hint}"
                                 ) from None


def _rank(table: Table, i: int, column: str, raw: Any) -> int | None:
    text = _text(raw)
    if text == "" or text.upper() == "NA":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if math.isnan(value) or not value.is_integer() or value < 1:
        raise DatasetImportError(f"{table.where(i, column)}: rank {show(text)} is not a whole number from 1 up")
    return int(value)


def import_answer_judgments(engine: Engine, spec: AnswerJudgmentSpec) -> AnswerJudgmentReport:
    """Read, check and store people's judgments of answers into the dataset (one transaction)."""
    table = read_table(spec.file)
    annotators = table.require(spec.annotator_col, "annotator id")
    ratings = table.require(spec.rating_col, "rating") if spec.rating_col else None
    ranks = table.require(spec.rank_col, "rank") if spec.rank_col else None
    answer_refs = table.require(spec.answer_col, "answer id") if spec.answer_col else None
    items_col = table.require(spec.item_col, "item id") if spec.item_col and answer_refs is None else None
    subjects_col = (table.require(spec.subject_col, "subject model")
                    if spec.subject_col and answer_refs is None else None)
    owner = owner_id(engine, spec.project_id)
    with Session(engine) as session, session.begin():
        ds = session.execute(select(Dataset).where(col(Dataset.name) == spec.dataset,
                                                   col(Dataset.project_id) == owner)).scalar_one_or_none()
        if ds is None:
            raise DatasetImportError(f"answer judgments: no dataset named {spec.dataset!r}; import it first")
        labels = spec.label_map_values() or dict((ds.label_map or {}).get(spec.dimension) or {})
        item_ids: dict[str, int] = dict(session.execute(select(col(Item.external_id), col(Item.id))
                                                        .where(col(Item.dataset_id) == ds.id)).all())
        known_answers: dict[int, tuple[str, str]] = {}
        if answer_refs is not None:
            known_answers = {int(a): (str(e), str(m)) for a, e, m in session.execute(
                select(col(Answer.id), col(Item.external_id), col(ModelSpec.name))
                .join(Item, col(Item.id) == Answer.item_id)
                .join(ModelSpec, col(ModelSpec.id) == Answer.model_spec_id)
                .where(col(Item.dataset_id) == ds.id)).all()}
        rows: list[dict[str, Any]] = []
        seen: dict[tuple[str, str, str, str], int] = {}
        rank_sets: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for i in range(len(table)):
            annotator = _text(annotators[i])
            if not annotator:
                raise DatasetImportError(f"{table.where(i, spec.annotator_col)}: no annotator id")
            answer_id: int | None = None
            if answer_refs is not None:
                ref = _text(answer_refs[i])
                if not ref.isdigit() or int(ref) not in known_answers:
                    raise DatasetImportError(f"{table.where(i, spec.answer_col)}: {show(ref)} is no answer to an "
                                             f"item of dataset {spec.dataset!r} (see accord results --table answers)")
                answer_id = int(ref)
                item, subject = known_answers[answer_id]
            else:
                assert items_col is not None and subjects_col is not None
                item, subject = _text(items_col[i]), _text(subjects_col[i])
                if item not in item_ids:
                    raise DatasetImportError(f"{table.where(i, spec.item_col)}: no item {show(item)} in dataset "
                                             f"{spec.dataset!r}")
                if not subject or len(subject) > 200:
                    raise DatasetImportError(f"{table.where(i, spec.subject_col)}: no subject model alias")
            for kind, column, values in (("rating", spec.rating_col, ratings), ("rank", spec.rank_col, ranks)):
                if values is None or column is None:
                    continue
                value: float | None
                if kind == "rating":
                    value = _number(table, i, column, values[i], labels)
                else:
                    r = _rank(table, i, column, values[i])
                    value = None if r is None else float(r)
                    if r is not None:
                        rank_sets.setdefault((item, annotator), []).append((r, i))
                if value is None:
                    continue
                key = (item, subject, annotator, kind)
                if key in seen:
                    raise DatasetImportError(f"{table.where(i, column)}: a second {kind} of {subject}'s answer to "
                                             f"item {item!r} by annotator {annotator!r} (first at "
                                             f"{table.unit} {table.row_numbers[seen[key]]})")
                seen[key] = i
                rows.append({"item": item, "subject": subject, "annotator": annotator, "kind": kind,
                             "value": value, "raw_label": _text(values[i])[:500], "answer_id": answer_id})
        for (item, annotator), ranked in rank_sets.items():
            got = sorted(r for r, _ in ranked)
            if got != list(range(1, len(got) + 1)):
                i = max(idx for _, idx in ranked)
                raise DatasetImportError(f"{table.where(i, spec.rank_col)}: annotator {annotator!r} ranks the "
                                         f"answers to item {item!r} as {got}; ranks must be 1 to {len(got)}, "
                                         "each once")
        if not rows:
            raise DatasetImportError(f"{table.name}: no rating or rank in any row")
        return _store(session, ds.id, spec, rows, item_ids)


def _store(session: Session, dataset_id: int, spec: AnswerJudgmentSpec, rows: list[dict[str, Any]],
           item_ids: dict[str, int]) -> AnswerJudgmentReport:
    existing = session.execute(select(col(HumanAnswerJudgment.id)).where(
        col(HumanAnswerJudgment.dataset_id) == dataset_id,
        col(HumanAnswerJudgment.dimension) == spec.dimension).limit(1)).first()
    if existing is not None:
        if not spec.replace:
            raise DatasetImportError(f"answer judgments: dataset {spec.dataset!r} already has people's judgments of "
                                     f"answers for {spec.dimension!r}; --replace to replace them")
        session.execute(delete(HumanAnswerJudgment).where(
            col(HumanAnswerJudgment.dataset_id) == dataset_id, col(HumanAnswerJudgment.dimension) == spec.dimension))
    annotator_ids: dict[str, int] = dict(session.execute(
        select(col(Annotator.external_id), col(Annotator.id)).where(col(Annotator.dataset_id) == dataset_id)).all())
    new = sorted({r["annotator"] for r in rows} - set(annotator_ids))
    for name in new:
        if len(name) > 200:
            raise DatasetImportError(f"{spec.file}: annotator id {show(name)} is longer than 200 characters")
        a = Annotator(dataset_id=dataset_id, external_id=name, attributes={})
        session.add(a)
        session.flush()
        annotator_ids[name] = a.id  # type: ignore[assignment]  # a stored row's id is set (flushed or loaded)
    session.execute(insert(HumanAnswerJudgment), [
        {"dataset_id": dataset_id, "item_id": item_ids[r["item"]], "subject": r["subject"],
         "answer_id": r["answer_id"], "annotator_id": annotator_ids[r["annotator"]], "dimension": spec.dimension,
         "kind": r["kind"], "value": r["value"], "raw_label": r["raw_label"]} for r in rows])
    return AnswerJudgmentReport(spec.dataset, sum(r["kind"] == "rating" for r in rows),
                                sum(r["kind"] == "rank" for r in rows), len(new),
                                sorted({r["subject"] for r in rows}))


HUMAN_JUDGMENT_COLUMNS = ["item", "subject", "annotator", "kind", "value", "dimension"]


def load_human_judgments(engine: Engine, run_id: int) -> pd.DataFrame:
    """People's judgments of answers in the run's dataset (item external id, subject alias, annotator, kind,
    value), of the campaign's dimension when any judgment has it, else of every dimension."""
    with Session(engine) as session:
        found = session.execute(select(col(Campaign.dataset_id), col(Campaign.spec))
                                .join(Run, col(Run.campaign_id) == Campaign.id)
                                .where(col(Run.id) == run_id)).first()
        if found is None:
            return pd.DataFrame(columns=HUMAN_JUDGMENT_COLUMNS)
        dataset_id, doc = found
        rows = session.execute(
            select(col(Item.external_id), col(HumanAnswerJudgment.subject), col(Annotator.external_id),
                   col(HumanAnswerJudgment.kind), col(HumanAnswerJudgment.value),
                   col(HumanAnswerJudgment.dimension))
            .join(Item, col(Item.id) == HumanAnswerJudgment.item_id)
            .join(Annotator, col(Annotator.id) == HumanAnswerJudgment.annotator_id)
            .where(col(HumanAnswerJudgment.dataset_id) == dataset_id)
            .order_by(col(HumanAnswerJudgment.id))).all()
    df = pd.DataFrame.from_records([tuple(r) for r in rows], columns=HUMAN_JUDGMENT_COLUMNS)
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    dimension = (doc or {}).get("dimension")
    if dimension and (df["dimension"] == dimension).any():
        df = df[df["dimension"] == dimension]
    return df.reset_index(drop=True)
