"""Everything a run stored about one item: each rating request with its rating (raw text, parsed label, label
probabilities, rationale, parse status, tokens, cost, latency, cache hit), and when the run has stages, the
subjects' answers to the item with the judges' ratings of each answer."""

from __future__ import annotations

from typing import Any

from accord.models.schema import Answer, Item, ModelSpec, PromptTemplate, Rating, RatingRequest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased

RATING_FIELDS = ["request_id", "model", "template", "persona_key", "sample_index", "status", "last_error", "label",
                 "value", "weighted_value", "label_probs", "rationale", "parse_status", "raw_text", "cache_hit",
                 "input_tokens", "output_tokens", "latency_ms", "cost_usd", "model_snapshot"]
ANSWER_FIELDS = ["answer_id", "subject", "template", "sample_index", "status", "label", "value", "text",
                 "cache_hit", "input_tokens", "output_tokens", "latency_ms", "cost_usd"]
JUDGMENT_FIELDS = ["request_id", "answer_id", "judge", "template", "sample_index", "status", "label", "value",
                   "parse_status", "raw_text", "rationale", "cache_hit", "latency_ms", "cost_usd"]


def find_item(engine: Engine, dataset_id: int, external_id: str) -> Item | None:
    with engine.connect() as conn:
        row = conn.execute(select(Item.id, Item.external_id, Item.content, Item.meta)
                           .where(Item.dataset_id == dataset_id, Item.external_id == external_id)).first()
    if row is None:
        return None
    return Item(id=row[0], dataset_id=dataset_id, external_id=row[1], content=row[2] or {}, meta=row[3] or {})


def item_ratings(engine: Engine, run_id: int, item_id: int) -> list[dict[str, Any]]:
    """The run's rating requests of the item (stage ``rate``), ordered by model, template, persona, sample."""
    q = (select(RatingRequest.id, ModelSpec.name, PromptTemplate.name, RatingRequest.persona_key,
                RatingRequest.sample_index, RatingRequest.status, RatingRequest.last_error, Rating.label,
                Rating.value, Rating.weighted_value, Rating.label_probs, Rating.rationale, Rating.parse_status,
                Rating.raw_text, Rating.cache_hit, Rating.input_tokens, Rating.output_tokens, Rating.latency_ms,
                Rating.cost_usd, Rating.model_snapshot)
         .join(ModelSpec, ModelSpec.id == RatingRequest.model_spec_id)
         .join(PromptTemplate, PromptTemplate.id == RatingRequest.template_id)
         .outerjoin(Rating, Rating.request_id == RatingRequest.id)
         .where(RatingRequest.run_id == run_id, RatingRequest.item_id == item_id, RatingRequest.stage == "rate")
         .order_by(ModelSpec.name, PromptTemplate.name, RatingRequest.persona_key, RatingRequest.sample_index,
                   RatingRequest.id))
    with engine.connect() as conn:
        return [dict(zip(RATING_FIELDS, r)) for r in conn.execute(q).all()]


def item_answers(engine: Engine, run_id: int, item_id: int) -> list[dict[str, Any]]:
    """The subjects' answers to the item, each with ``judgments``: the judges' ratings of that answer."""
    q = (select(Answer.id, ModelSpec.name, PromptTemplate.name, Answer.sample_index, Answer.status, Answer.label,
                Answer.value, Answer.text, Answer.cache_hit, Answer.input_tokens, Answer.output_tokens,
                Answer.latency_ms, Answer.cost_usd)
         .join(ModelSpec, ModelSpec.id == Answer.model_spec_id)
         .join(PromptTemplate, PromptTemplate.id == Answer.template_id)
         .where(Answer.run_id == run_id, Answer.item_id == item_id)
         .order_by(ModelSpec.name, PromptTemplate.name, Answer.sample_index, Answer.id))
    judge = aliased(ModelSpec)
    jq = (select(RatingRequest.id, RatingRequest.answer_id, judge.name, PromptTemplate.name,
                 RatingRequest.sample_index, RatingRequest.status, Rating.label, Rating.value, Rating.parse_status,
                 Rating.raw_text, Rating.rationale, Rating.cache_hit, Rating.latency_ms, Rating.cost_usd)
          .join(judge, judge.id == RatingRequest.model_spec_id)
          .join(PromptTemplate, PromptTemplate.id == RatingRequest.template_id)
          .outerjoin(Rating, Rating.request_id == RatingRequest.id)
          .where(RatingRequest.run_id == run_id, RatingRequest.item_id == item_id, RatingRequest.stage == "judge")
          .order_by(judge.name, PromptTemplate.name, RatingRequest.sample_index, RatingRequest.id))
    with engine.connect() as conn:
        answers = [dict(zip(ANSWER_FIELDS, r)) for r in conn.execute(q).all()]
        judgments = [dict(zip(JUDGMENT_FIELDS, r)) for r in conn.execute(jq).all()]
    by_answer: dict[int, list[dict[str, Any]]] = {}
    for j in judgments:
        by_answer.setdefault(int(j["answer_id"]), []).append(j)
    for a in answers:
        a["judgments"] = by_answer.get(int(a["answer_id"]), [])
    return answers
