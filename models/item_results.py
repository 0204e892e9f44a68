"""Everything a run stored about one item: each rating request with its rating (raw text, parsed label, label
probabilities, rationale, parse status, tokens, cost, latency, cache hit), and when the run has stages, the
subjects' answers to the item with the judges' ratings of each answer."""

from __future__ import annotations

from typing import Any, TypeVarTuple

from accord.models.schema import Answer, Item, ModelSpec, PromptTemplate, Rating, RatingRequest
from sqlalchemy import Select, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import col

RATING_FIELDS = ["request_id", "model", "template", "persona_key", "sample_index", "status", "last_error", "label",
                 "value", "weighted_value", "label_probs", "rationale", "parse_status", "raw_text", "cache_hit",
                 "input_tokens", "output_tokens", "latency_ms", "cost_usd", "model_snapshot"]
ANSWER_FIELDS = ["answer_id", "subject", "template", "sample_index", "status", "label", "value", "text",
                 "cache_hit", "input_tokens", "output_tokens", "latency_ms", "cost_usd"]
JUDGMENT_FIELDS = ["request_id", "answer_id", "judge", "template", "sample_index", "status", "label", "value",
                   "parse_status", "raw_text", "rationale", "cache_hit", "latency_ms", "cost_usd"]
Row = TypeVarTuple("Row")   # a query's column types


def _with_ratings(q: Select[*Row], spec: type[ModelSpec], run_id: int, item_id: int, stage: str) -> Select[*Row]:
    """``q`` over the run's rating requests of the item at ``stage``, joined to their rater (``spec``), their
    template and their rating when there is one."""
    return (q.join(spec, col(spec.id) == RatingRequest.model_spec_id)
            .join(PromptTemplate, col(PromptTemplate.id) == RatingRequest.template_id)
            .outerjoin(Rating, col(Rating.request_id) == RatingRequest.id)
            .where(col(RatingRequest.run_id) == run_id, col(RatingRequest.item_id) == item_id,
                   col(RatingRequest.stage) == stage))


def find_item(engine: Engine, dataset_id: int, external_id: str) -> Item | None:
    with engine.connect() as conn:
        row = conn.execute(select(col(Item.id), col(Item.external_id), col(Item.content), col(Item.meta))
                           .where(col(Item.dataset_id) == dataset_id,
                                  col(Item.external_id) == external_id)).first()
    if row is None:
        return None
    return Item(id=row[0], dataset_id=dataset_id, external_id=row[1], content=row[2] or {}, meta=row[3] or {})


def item_ratings(engine: Engine, run_id: int, item_id: int) -> list[dict[str, Any]]:
    """The run's rating requests of the item (stage ``rate``), ordered by model, template, persona, sample."""
    q = select(col(RatingRequest.id), col(ModelSpec.name), col(PromptTemplate.name),
               col(RatingRequest.persona_key), col(RatingRequest.sample_index), col(RatingRequest.status),
               col(RatingRequest.last_error), col(Rating.label), col(Rating.value),
               col(Rating.weighted_value), col(Rating.label_probs), col(Rating.rationale),
               col(Rating.parse_status), col(Rating.raw_text), col(Rating.cache_hit),
               col(Rating.input_tokens), col(Rating.output_tokens), col(Rating.latency_ms),
               col(Rating.cost_usd), col(Rating.model_snapshot))
    q = (_with_ratings(q, ModelSpec, run_id, item_id, "rate")
         .order_by(col(ModelSpec.name), col(PromptTemplate.name), col(RatingRequest.persona_key),
                   col(RatingRequest.sample_index), col(RatingRequest.id)))
    with engine.connect() as conn:
        return [dict(zip(RATING_FIELDS, r)) for r in conn.execute(q).all()]


def item_answers(engine: Engine, run_id: int, item_id: int) -> list[dict[str, Any]]:
    """The subjects' answers to the item, each with ``judgments``: the judges' ratings of that answer."""
    q = (select(col(Answer.id), col(ModelSpec.name), col(PromptTemplate.name), col(Answer.sample_index),
                col(Answer.status), col(Answer.label), col(Answer.value), col(Answer.text),
                col(Answer.cache_hit), col(Answer.input_tokens), col(Answer.output_tokens),
                col(Answer.latency_ms), col(Answer.cost_usd))
         .join(ModelSpec, col(ModelSpec.id) == Answer.model_spec_id)
         .join(PromptTemplate, col(PromptTemplate.id) == Answer.template_id)
         .where(col(Answer.run_id) == run_id, col(Answer.item_id) == item_id)
         .order_by(col(ModelSpec.name), col(PromptTemplate.name), col(Answer.sample_index), col(Answer.id)))
    judge = aliased(ModelSpec)
    jq = select(col(RatingRequest.id), col(RatingRequest.answer_id), col(judge.name),
                col(PromptTemplate.name), col(RatingRequest.sample_index), col(RatingRequest.status),
                col(Rating.label), col(Rating.value), col(Rating.parse_status), col(Rating.raw_text),
                col(Rating.rationale), col(Rating.cache_hit), col(Rating.latency_ms), col(Rating.cost_usd))
    jq = (_with_ratings(jq, judge, run_id, item_id, "judge")
          .order_by(col(judge.name), col(PromptTemplate.name), col(RatingRequest.sample_index),
                    col(RatingRequest.id)))
    with engine.connect() as conn:
        answers = [dict(zip(ANSWER_FIELDS, r)) for r in conn.execute(q).all()]
        judgments = [dict(zip(JUDGMENT_FIELDS, r)) for r in conn.execute(jq).all()]
    by_answer: dict[int, list[dict[str, Any]]] = {}
    for j in judgments:
        by_answer.setdefault(int(j["answer_id"]), []).append(j)
    for a in answers:
        a["judgments"] = by_answer.get(int(a["answer_id"]), [])
    return answers
