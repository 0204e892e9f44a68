"""Post-processing of a finished run: load it into frames, run the analysis suite, store Metric rows.

Idempotent: a second call replaces the run's metrics with an identical set (the suite is seeded)."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from accord.analysis.fine_metrics import fine_records
from accord.analysis.judge_ranking_metrics import judge_ranking_records
from accord.analysis.results import MetricRecord
from accord.analysis.suite import SuiteOptions, compute_all
from accord.models.schema import Metric, Run, utcnow
from accord.scheduler.answer_frames import as_raters, load_answers, load_judgments
from accord.scheduler.run_frames import load_run_frames


def _clean(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    return x


def compute_run_metrics(engine: Engine, run_id: int, options: SuiteOptions | None = None) -> list[MetricRecord]:
    frames = load_run_frames(engine, run_id)
    answers = load_answers(engine, run_id)
    # The analysis takes answers: requests without a rating (failed at the provider, cancelled, never run)
    # have no parse status; they are counted in the run summary and the report's outcome chart instead.
    rated = frames.llm[frames.llm["status"] == "done"].reset_index(drop=True)
    records: list[MetricRecord] = []
    if not (rated.empty and not answers.empty):   # a subjects/judges-only run has no item ratings to analyse
        records.extend(compute_all(frames.human, frames.annotators, rated, frames.items, options))
    if not answers.empty:
        judgments = as_raters(load_judgments(engine, run_id))
        records.extend(fine_records(answers, judgments))
        records.extend(judge_ranking_records(answers, judgments))
    return records


def postprocess_run(engine: Engine, run_id: int, options: SuiteOptions | None = None) -> int:
    """Compute and store the run's metrics (replacing earlier ones). Returns how many were stored."""
    records = compute_run_metrics(engine, run_id, options)
    rows = [{
        "run_id": run_id, "name": r.name, "slice": r.slice, "model": r.model, "template": r.template,
        "value": _clean(r.value), "ci_low": _clean(r.ci_low), "ci_high": _clean(r.ci_high),
        "pvalue": _clean(r.pvalue), "n": r.n, "details": r.details or {}, "created_at": utcnow(),
    } for r in records]
    with Session(engine) as session:
        session.execute(delete(Metric).where(Metric.run_id == run_id))  # type: ignore[arg-type]
        if rows:
            session.execute(insert(Metric), rows)
        session.execute(update(Run).where(Run.id == run_id).values(postprocessed_at=utcnow()))  # type: ignore[arg-type]
        session.commit()
    return len(rows)
