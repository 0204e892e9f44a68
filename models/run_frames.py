"""Load a run and its dataset into the pandas frames the analysis functions take (the only I/O side of
the analysis: ``accord.analysis`` itself never touches the database)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from accord.models.projects import owner_id
from accord.models.schema import (
    Dataset,
    Annotator, Campaign, HumanRating, ImportedRating, Item, ModelSpec, PromptTemplate, Rating, RatingRequest, Run,
)

LLM_COLUMNS = ["request_id", "item_id", "model", "template", "template_family", "option_order", "response_format",
               "persona_key", "sample_index", "status", "label", "value", "weighted_value", "parse_status",
               "raw_text", "cache_hit", "input_tokens", "output_tokens", "latency_ms", "cost_usd", "model_snapshot",
               "attempts", "last_error", "label_probs"]


def value_probs(label_probs: dict[str, float] | None, labels: dict[str, float]) -> dict[float, float] | None:
    """Label probabilities keyed by the labels' numeric values (labels sharing a value add up)."""
    if not label_probs:
        return None
    out: dict[float, float] = {}
    for label, p in label_probs.items():
        if label in labels and p is not None:
            out[float(labels[label])] = out.get(float(labels[label]), 0.0) + float(p)
    return out or None


@dataclass
class RunFrames:
    run_id: int
    dimension: str | None
    human: pd.DataFrame        # item_id, annotator_id, value, raw_label
    annotators: pd.DataFrame   # annotator_id, <attribute columns>
    llm: pd.DataFrame          # LLM_COLUMNS: one row per rating request (rating fields NaN where none)
    items: pd.DataFrame        # item_id, <metadata columns>


def load_llm_frame(engine: Engine, run_id: int, *, with_value_probs: bool = False,
                   stages: tuple[str, ...] = ("rate",)) -> pd.DataFrame:
    """One row per rating request of the run with its rating's fields (NaN/None where it has none): by default
    the ratings of items (stage ``rate``); subjects' answers and their judgments load with ``answer_frames``.

    ``label_probs`` is JSON text keyed by label (exports stay plain CSV/Parquet); ``with_value_probs`` adds
    ``value_probs``, the same probabilities keyed by the labels' numeric values, for the analysis."""
    q = (select(col(RatingRequest.id), col(Item.external_id), col(ModelSpec.name), col(PromptTemplate.name), col(PromptTemplate.output_spec),
                col(PromptTemplate.response_format), col(RatingRequest.persona_key), col(RatingRequest.sample_index),
                col(RatingRequest.status), col(Rating.label), col(Rating.value), col(Rating.weighted_value), col(Rating.parse_status),
                col(Rating.raw_text), col(Rating.cache_hit), col(Rating.input_tokens), col(Rating.output_tokens), col(Rating.latency_ms),
                col(Rating.cost_usd), col(Rating.model_snapshot), col(RatingRequest.attempts), col(RatingRequest.last_error),
                col(Rating.label_probs))
         .join(Item, col(Item.id) == col(RatingRequest.item_id))
         .join(ModelSpec, col(ModelSpec.id) == col(RatingRequest.model_spec_id))
         .join(PromptTemplate, col(PromptTemplate.id) == col(RatingRequest.template_id))
         .outerjoin(Rating, col(Rating.request_id) == col(RatingRequest.id))
         .where(col(RatingRequest.run_id) == run_id, col(RatingRequest.stage).in_(stages))
         .order_by(col(RatingRequest.id)))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    records, by_value = [], []
    for r in rows:
        spec = r[4] or {}
        labels = {str(k): float(v) for k, v in (spec.get("labels") or {}).items()}
        probs = r[-1]
        records.append((r[0], r[1], r[2], r[3], spec.get("family", r[3]), spec.get("option_order", "") or "", r[5],
                        *r[6:-1], json.dumps(probs, sort_keys=True) if probs else None))
        by_value.append(value_probs(probs, labels))
    df = pd.DataFrame.from_records(records, columns=LLM_COLUMNS)
    if with_value_probs:
        df["value_probs"] = pd.Series(by_value, index=df.index, dtype=object)
    for column in ("value", "weighted_value", "latency_ms", "cost_usd"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df


IMPORTED_TEMPLATE = "imported"


def with_imported_raters(engine: Engine, llm: pd.DataFrame, dataset_id: int, dimension: str | None,
                         run_items: set[str]) -> pd.DataFrame:
    """The run's LLM frame with the dataset's imported model ratings (``--model-rating-col``) of the run's items
    appended as raters of their own: model = the rater's name, template ``imported``, one sample, done and
    parsed (``unparseable`` where the label maps to no value). Nothing is added to a run that rates no items."""
    if llm.empty:
        return llm
    q = (select(col(Item.external_id), col(ImportedRating.rater), col(ImportedRating.value), col(ImportedRating.raw_label))
         .join(Item, col(Item.id) == col(ImportedRating.item_id)).where(col(Item.dataset_id) == dataset_id))
    if dimension is not None:
        q = q.where(col(ImportedRating.dimension) == dimension)
    with engine.connect() as conn:
        rows = [r for r in conn.execute(q).all() if r[0] in run_items]
    if not rows:
        return llm
    extra = pd.DataFrame([{
        "request_id": None, "item_id": item, "model": rater, "template": IMPORTED_TEMPLATE,
        "template_family": IMPORTED_TEMPLATE, "option_order": "", "response_format": IMPORTED_TEMPLATE,
        "persona_key": "", "sample_index": 0, "status": "done", "label": raw, "value": value,
        "weighted_value": float("nan"), "parse_status": "ok" if value is not None else "unparseable",
        "raw_text": raw, "cache_hit": False, "input_tokens": 0, "output_tokens": 0, "latency_ms": 0.0,
        "cost_usd": 0.0, "model_snapshot": None, "attempts": 0, "last_error": None, "label_probs": None,
        **({"value_probs": None} if "value_probs" in llm.columns else {}),
    } for item, rater, value, raw in rows])
    out = pd.concat([llm, extra], ignore_index=True)
    for column in ("value", "weighted_value", "latency_ms", "cost_usd"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out


def load_run_frames(engine: Engine, run_id: int) -> RunFrames:
    with Session(engine) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise ValueError(f"run {run_id}: no such run")
        campaign = session.get(Campaign, run.campaign_id)
        assert campaign is not None
        dataset_id = campaign.dataset_id
        dimension = (campaign.spec or {}).get("dimension")
    llm = load_llm_frame(engine, run_id, with_value_probs=True)
    run_items = set(llm["item_id"])
    llm = with_imported_raters(engine, llm, dataset_id, dimension, run_items)
    with engine.connect() as conn:
        item_rows = conn.execute(select(col(Item.external_id), col(Item.meta)).where(col(Item.dataset_id) == dataset_id)).all()
        hq = (select(col(Item.external_id), col(Annotator.external_id), col(HumanRating.value), col(HumanRating.raw_label))
              .join(Item, col(Item.id) == col(HumanRating.item_id)).join(Annotator, col(Annotator.id) == col(HumanRating.annotator_id))
              .where(col(Item.dataset_id) == dataset_id))
        if dimension is not None:
            hq = hq.where(HumanRating.dimension == dimension)
        human_rows = conn.execute(hq).all()
        ann_rows = conn.execute(select(col(Annotator.external_id), col(Annotator.attributes))
                                .where(col(Annotator.dataset_id) == dataset_id)).all()
    items = pd.DataFrame([{"item_id": ext, **(meta or {})} for ext, meta in item_rows if ext in run_items],
                         columns=None)
    if items.empty:
        items = pd.DataFrame({"item_id": pd.Series(dtype=str)})
    human = pd.DataFrame.from_records([tuple(r) for r in human_rows if r[0] in run_items],
                                      columns=["item_id", "annotator_id", "value", "raw_label"])
    human["value"] = pd.to_numeric(human["value"], errors="coerce").astype(float)
    annotators = pd.DataFrame([{"annotator_id": ext, **(attrs or {})} for ext, attrs in ann_rows])
    if annotators.empty:
        annotators = pd.DataFrame({"annotator_id": pd.Series(dtype=str)})
    return RunFrames(run_id=run_id, dimension=dimension, human=human, annotators=annotators, llm=llm, items=items)


class DatasetFramesError(LookupError):
    """An unknown dataset or dimension; the message names the option to fix."""


def load_dataset_frames(engine: Engine, dataset: str | int, dimension: str | None = None,
                        project_id: int | None = None, items: set[str] | None = None) -> RunFrames:
    """A whole dataset's ratings of one dimension (``human`` with raw labels) and its annotators' attributes, as
    the frames of a run without LLM answers (``llm`` empty). ``dataset``: a name (in the project; None: the
    ``local`` project) or an id (of any project unless ``project_id`` is given); ``items`` keeps only those
    item ids."""
    by_id = isinstance(dataset, int) or str(dataset).isdigit()
    owner = owner_id(engine, project_id) if project_id is not None or not by_id else None
    with Session(engine) as session:
        q = select(Dataset).where(col(Dataset.id) == int(dataset)) if by_id else select(Dataset).where(
            col(Dataset.name) == str(dataset))
        names_q = select(col(Dataset.name)).order_by(col(Dataset.id))
        if owner is not None:
            q, names_q = q.where(col(Dataset.project_id) == owner), names_q.where(col(Dataset.project_id) == owner)
        ds = session.execute(q).scalars().first()
        if ds is None:
            names = session.execute(names_q).scalars().all()
            raise DatasetFramesError(f"no dataset {dataset!r}; imported: {', '.join(names) or 'none'}")
        dims = list(ds.dimensions or [])
        if dimension is None:
            if len(dims) > 1:
                raise DatasetFramesError(f"dataset {ds.name!r} has several dimensions ({', '.join(dims)}); "
                                         "choose one with --dimension")
            dimension = dims[0] if dims else None
        elif dimension not in dims:
            raise DatasetFramesError(f"--dimension: {dimension!r} is not a dimension of {ds.name!r} "
                                     f"(it has: {', '.join(dims) or 'none'})")
        dataset_id = ds.id
    with engine.connect() as conn:
        hq = (select(col(Item.external_id), col(Annotator.external_id), col(HumanRating.value), col(HumanRating.raw_label))
              .join(Item, col(Item.id) == col(HumanRating.item_id)).join(Annotator, col(Annotator.id) == col(HumanRating.annotator_id))
              .where(col(Item.dataset_id) == dataset_id, col(HumanRating.dimension) == dimension))
        human_rows = conn.execute(hq).all()
        ann_rows = conn.execute(select(col(Annotator.external_id), col(Annotator.attributes))
                                .where(Annotator.dataset_id == dataset_id)).all()
        item_rows = conn.execute(select(col(Item.external_id), col(Item.meta)).where(Item.dataset_id == dataset_id)).all()
    human = pd.DataFrame(human_rows, columns=["item_id", "annotator_id", "value", "raw_label"])
    human["value"] = pd.to_numeric(human["value"], errors="coerce").astype(float)
    if items is not None:
        human = human[human["item_id"].isin(items)].reset_index(drop=True)
    annotators = pd.DataFrame([{"annotator_id": ext, **(attrs or {})} for ext, attrs in ann_rows])
    if annotators.empty:
        annotators = pd.DataFrame({"annotator_id": pd.Series(dtype=str)})
    item_frame = pd.DataFrame([{"item_id": ext, **(meta or {})} for ext, meta in item_rows])
    return RunFrames(run_id=0, dimension=dimension, human=human, annotators=annotators,
                     llm=pd.DataFrame(columns=LLM_COLUMNS), items=item_frame)
