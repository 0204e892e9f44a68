"""Post-processing of a finished run: load it into frames, run the analysis suite, store Metric rows.

Idempotent: a second call replaces the run's metrics with an identical set (the suite is seeded)."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from accord.analysis.describe import human_baseline
from accord.analysis.fine_metrics import fine_records
from accord.analysis.frames import build_human_matrix
from accord.analysis.judge_ranking_metrics import judge_ranking_records
from accord.analysis.results import MetricRecord, catalogued
from accord.analysis.suite import SuiteOptions, compute_all
from accord.models.schema import Campaign, Metric, Run, utcnow
from accord.models.answer_frames import comparisons_as_raters, load_answers, load_comparisons, load_judgments
from accord.models.answer_judgments import load_human_judgments
from accord.models.run_frames import load_dataset_frames, load_run_frames


def _clean(x: Any) -> Any:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    return x


def suite_options(analysis: dict[str, Any] | None) -> SuiteOptions:
    """The metric suite's options from a campaign's ``analysis:`` section (defaults where it says nothing)."""
    a = analysis or {}
    alt = a.get("alt_test") or {}
    defaults = SuiteOptions()
    return SuiteOptions(
        group_attributes=a.get("group_attributes"), bins=a.get("bins") or None,
        min_group_size=a.get("min_group_size", defaults.min_group_size),
        n_resamples=a.get("n_bootstrap", defaults.n_resamples),
        n_permutations=a.get("n_permutations", defaults.n_permutations),
        alt_epsilon=alt.get("epsilon", defaults.alt_epsilon), alt_measure=alt.get("measure", defaults.alt_measure),
        alt_q=alt.get("q", defaults.alt_q), alt_min_items=alt.get("min_items", defaults.alt_min_items))


def _campaign(engine: Engine, run_id: int) -> Campaign | None:
    with Session(engine) as session:
        run = session.get(Run, run_id)
        return session.get(Campaign, run.campaign_id) if run is not None else None


def dataset_baseline(engine: Engine, campaign: Campaign, dimension: str | None,
                     run_items: set[str]) -> list[MetricRecord]:
    """The human baseline of the whole dataset (dataset_annotator_loo_r_median, dataset_krippendorff_alpha_*),
    when the run rated only some of its items: the run's own baseline is then of those items only."""
    whole = load_dataset_frames(engine, campaign.dataset_id, dimension).human
    n_items = int(whole["item_id"].nunique())
    if whole.empty or n_items <= len(run_items):
        return []
    hm = build_human_matrix(whole)
    base = human_baseline(hm.values, hm.annotator_ids, hm.value_domain())
    r = base["annotator_loo_r"]
    common = {"scope": "whole dataset", "n_items": n_items, "n_run_items": len(run_items)}
    out = [MetricRecord("dataset_annotator_loo_r_median", r["median"], "all", n=r["n_annotators"],
                        details=dict(common, q25=r["q25"], q75=r["q75"], iqr=r["iqr"]))]
    for level, value in base["krippendorff_alpha"].items():
        if not level.endswith("_reason"):
            out.append(MetricRecord(f"dataset_krippendorff_alpha_{level}", value, "all", details=dict(common)))
    return out


def compute_run_metrics(engine: Engine, run_id: int, options: SuiteOptions | None = None) -> list[MetricRecord]:
    campaign = _campaign(engine, run_id)
    if options is None:
        options = suite_options((campaign.spec or {}).get("analysis") if campaign is not None else None)
    frames = load_run_frames(engine, run_id)
    answers = load_answers(engine, run_id)
    # The analysis takes answers: requests without a rating (failed at the provider, cancelled, never run)
    # have no parse status; they are counted in the run summary and the report's outcome chart instead.
    rated = frames.llm[frames.llm["status"] == "done"].reset_index(drop=True)
    records: list[MetricRecord] = []
    if not (rated.empty and not answers.empty):   # a subjects/judges-only run has no item ratings to analyse
        records.extend(compute_all(frames.human, frames.annotators, rated, frames.items, options))
        if campaign is not None:
            records += dataset_baseline(engine, campaign, frames.dimension, set(frames.llm["item_id"]))
    if not answers.empty:
        judgments, comparisons = comparisons_as_raters(load_judgments(engine, run_id), load_comparisons(engine, run_id))
        records.extend(fine_records(answers, judgments))
        records.extend(judge_ranking_records(answers, judgments, comparisons, load_human_judgments(engine, run_id)))
    return records


def postprocess_run(engine: Engine, run_id: int, options: SuiteOptions | None = None) -> int:
    """Compute and store the run's metrics (replacing earlier ones). Returns how many were stored."""
    records = catalogued(compute_run_metrics(engine, run_id, options))   # only names the catalogue lists
    rows = [{
        "run_id": run_id, "name": r.name, "slice": r.slice, "model": r.model, "template": r.template,
        "value": _clean(r.value), "ci_low": _clean(r.ci_low), "ci_high": _clean(r.ci_high),
        "pvalue": _clean(r.pvalue), "n": r.n, "details": r.details or {}, "created_at": utcnow(),
    } for r in records]
    with Session(engine) as session:
        session.execute(delete(Metric).where(col(Metric.run_id) == run_id))
        if rows:
            session.execute(insert(Metric), rows)
        session.execute(update(Run).where(col(Run.id) == run_id).values(postprocessed_at=utcnow()))
        session.commit()
    return len(rows)
