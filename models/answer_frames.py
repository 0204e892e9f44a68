"""Load a run's subjects' answers and the judges' ratings of them into the frames ``accord.analysis.fine``
takes (and ``accord results`` exports)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased

from accord.models.schema import Answer, AnswerComparison, Item, ModelSpec, PromptTemplate, Rating, RatingRequest
from sqlmodel import col

ANSWER_COLUMNS = ["answer_id", "item", "category", "subject", "template", "template_family", "response_format",
                  "option_order", "sample_index", "label", "value", "status", "text", "cache_hit", "input_tokens",
                  "output_tokens", "cost_usd"]
COMPARISON_COLUMNS = ["comparison_id", "kind", "answer_ids", "judge", "template", "sample_index", "label",
                      "parse_status", "raw_text", "cost_usd"]
JUDGMENT_COLUMNS = ["answer_id", "judge", "template", "sample_index", "label", "value", "parse_status", "raw_text",
                    "cost_usd"]


def load_answers(engine: Engine, run_id: int, category_field: str = "category") -> pd.DataFrame:
    q = (select(col(Answer.id), col(Item.external_id), col(Item.meta), col(ModelSpec.name), col(PromptTemplate.name),
                col(PromptTemplate.output_spec), col(PromptTemplate.response_format), col(Answer.sample_index), col(Answer.label),
                col(Answer.value), col(Answer.status), col(Answer.text), col(Answer.cache_hit), col(Answer.input_tokens), col(Answer.output_tokens),
                col(Answer.cost_usd))
         .join(Item, col(Item.id) == col(Answer.item_id)).join(ModelSpec, col(ModelSpec.id) == col(Answer.model_spec_id))
         .join(PromptTemplate, col(PromptTemplate.id) == col(Answer.template_id))
         .where(col(Answer.run_id) == run_id).order_by(col(Answer.id)))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    records = []
    for (aid, item, meta, subject, tname, spec, fmt, sample, label, value, status, text_, hit, it, ot,
         cost) in rows:
        spec = spec or {}
        records.append((aid, item, str((meta or {}).get(category_field, "")), subject, tname,
                        spec.get("family", tname), fmt, spec.get("option_order", "") or "", sample, label, value,
                        status, text_, hit, it, ot, cost))
    df = pd.DataFrame.from_records(records, columns=ANSWER_COLUMNS)
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    return df


def load_judgments(engine: Engine, run_id: int) -> pd.DataFrame:
    judge = aliased(ModelSpec)
    q = (select(col(RatingRequest.answer_id), judge.name, col(PromptTemplate.name), col(RatingRequest.sample_index),  # type: ignore[call-overload]  # aliased(): columns typed as values
                col(Rating.label),
                col(Rating.value), col(Rating.parse_status), col(Rating.raw_text), col(Rating.cost_usd))
         .join(Rating, col(Rating.request_id) == col(RatingRequest.id))
         .join(judge, judge.id == col(RatingRequest.model_spec_id))
         .join(PromptTemplate, col(PromptTemplate.id) == col(RatingRequest.template_id))
         .where(col(RatingRequest.run_id) == run_id, col(RatingRequest.stage) == "judge",
                col(RatingRequest.answer_id).is_not(None)).order_by(col(RatingRequest.id)))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    df = pd.DataFrame.from_records([tuple(r) for r in rows], columns=JUDGMENT_COLUMNS)
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    return df


def load_comparisons(engine: Engine, run_id: int) -> pd.DataFrame:
    """Pairwise and listwise judges' verdicts: per judge request of a comparison, the answers shown (in order,
    ``answer_ids``; label A is the first), the judge's label (pairwise: the letter chosen; listwise: the
    letters in order joined by ``>``) and the parse status."""
    judge = aliased(ModelSpec)
    q = (select(col(AnswerComparison.id), col(AnswerComparison.kind), col(AnswerComparison.answer_ids),
                col(judge.name), col(PromptTemplate.name), col(RatingRequest.sample_index), col(Rating.label),
                col(Rating.parse_status), col(Rating.raw_text), col(Rating.cost_usd))
         .join(Rating, col(Rating.request_id) == RatingRequest.id)
         .join(AnswerComparison, col(AnswerComparison.id) == RatingRequest.comparison_id)
         .join(judge, col(judge.id) == RatingRequest.model_spec_id)
         .join(PromptTemplate, col(PromptTemplate.id) == RatingRequest.template_id)
         .where(col(RatingRequest.run_id) == run_id, col(RatingRequest.stage) == "judge")
         .order_by(col(RatingRequest.id)))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return pd.DataFrame.from_records([(*r[:2], [int(a) for a in r[2]], *r[3:]) for r in rows],
                                     columns=COMPARISON_COLUMNS)


def comparisons_as_raters(judgments: pd.DataFrame, comparisons: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``as_raters`` over per-answer judgments and comparison verdicts together (a judge model under a likert
    and a pairwise template is two raters); the comparisons get the name in a ``rater`` column."""
    both = pd.concat([judgments[["judge", "template"]], comparisons[["judge", "template"]]], ignore_index=True)
    named = as_raters(both)["judge"].tolist() if not both.empty else []
    out_j, out_c = judgments.copy(), comparisons.copy()
    out_j["judge"] = named[:len(judgments)]
    out_c["rater"] = named[len(judgments):]
    return out_j, out_c


def as_raters(judgments: pd.DataFrame) -> pd.DataFrame:
    """The judgments with ``judge`` naming the rater: the judge model's alias, or ``alias · template`` when a
    judge model rates under several templates (each template is then a rater of its own, never mixed)."""
    out = judgments.copy()
    if out.empty:
        return out
    several = out.groupby("judge")["template"].nunique()
    multi = set(several[several > 1].index)
    out["judge"] = [f"{j} · {t}" if j in multi else j for j, t in zip(out["judge"], out["template"])]
    return out
