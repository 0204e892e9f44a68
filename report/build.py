"""The run report: one self-contained HTML file (plots embedded as base64 PNG), a terminal table, and JSON.

``build_report_data(engine, run_id)`` loads the run's summary, its stored Metric rows (computed by
`accord.analysis.suite.compute_all` during post-processing) and its frames, and builds every section:
tables, plots and a plain-language reading generated from the numbers. ``render_html(data)`` renders
the page (Jinja2 with autoescape: rated texts, model, template and group names never reach the page
unescaped); ``ReportData.to_json()`` is the machine-readable form (run summary, every metric, readings).
``assemble_report`` does the same from frames and metrics already in memory (no database)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from accord.analysis.catalogue import MetricName
from accord.analysis.results import json_safe
from accord.analysis.failure_kinds import failure_kind
from accord.report.checks import categories_section, consistency_section, failures_section, subjects_section
from accord.report.context import ReportContext, SectionBuilder
from accord.report.extra import alt_test_section, group_means_section, prevalence_section
from accord.report.format import bracket, count, num, pvalue
from accord.report.groups import association_section, groups_section, persona_section
from accord.report.metrics import MetricIndex, metrics_frame, rows_from_frame
from accord.report.fine import fine_section
from accord.report.judges import judges_section
from accord.report.sections import (
    agreement_section, alignment_section, all_metrics_section, baseline_section, summary_section
)
from accord.report.views import SectionView
from accord.models.schema import Campaign, Dataset, Metric, Rating, Run
from accord.models.answer_frames import load_answers, load_comparisons, load_judgments
from accord.models.run_frames import RunFrames, load_run_frames
from jinja2 import Environment, FileSystemLoader, select_autoescape
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"

# Metric names the dashboard and the terminal table pick out (see accord.analysis.suite for the full list).
ALIGNMENT = [MetricName.PEARSON_R_VS_MEAN, MetricName.SPEARMAN_R_VS_MEAN, MetricName.KENDALL_TAU_VS_MEAN]
BASELINE_MEDIAN = MetricName.ANNOTATOR_LOO_R_MEDIAN
PERCENTILE = MetricName.LLM_PERCENTILE_AMONG_ANNOTATORS
GROUP_R = MetricName.GROUP_PEARSON_R
FINE = [MetricName.FINE_CS, MetricName.FINE_CSS]

SECTION_BUILDERS: list[SectionBuilder] = [
    summary_section, alignment_section, baseline_section, agreement_section, alt_test_section, groups_section,
    group_means_section, association_section, persona_section, consistency_section, failures_section,
    subjects_section, prevalence_section, categories_section, fine_section, judges_section,
    all_metrics_section,
]
OUTCOMES = ["ok", "refused", "unparseable", "truncated", "empty"]


@dataclass
class ReportData:
    run: dict[str, Any]
    metrics: pd.DataFrame
    frames: RunFrames
    plots: dict[str, str] = field(default_factory=dict)   # name -> base64 PNG
    readings: dict[str, list[str]] = field(default_factory=dict)   # section id -> readings
    sections: list[SectionView] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Run summary, every metric (NaN as null, n as an integer), the readings per section and, per
        section, its title and plot names (the PNGs themselves are only in the HTML)."""
        return {
            "run": json_safe(self.run),
            "metrics": [row.to_json() for row in rows_from_frame(self.metrics)],
            "readings": self.readings,
            "sections": [{"id": s.id, "title": s.title, "readings": s.readings, "plots": [p.name for p in s.plots],
                          "tables": [t.to_json() for t in s.tables],
                          "parts": [{"title": p.title, "readings": p.readings, "plots": [v.name for v in p.plots]}
                                    for p in s.parts]}
                         for s in self.sections],
        }


# ------------------------------------------------------------------------------------------------ run summary

def summarize_stages(answers: pd.DataFrame, judgments: pd.DataFrame,
                     comparisons: pd.DataFrame | None = None) -> dict[str, Any]:
    """The subjects and judges stages in numbers (an empty dict for a run without them); ``comparisons``:
    pairwise and listwise verdicts (their judges count among the judges)."""
    if answers.empty:
        return {}
    judges = set(judgments["judge"].astype(str)) if not judgments.empty else set()
    if comparisons is not None and not comparisons.empty:
        judges |= set(comparisons["judge"].astype(str))
    return {"subjects": sorted(answers["subject"].astype(str).unique().tolist()),
            "generation_templates": sorted(answers["template"].astype(str).unique().tolist()),
            "answer_items": int(answers["item"].nunique()), "answers": len(answers),
            "answer_outcomes": {str(k): int(v) for k, v in answers["status"].value_counts().sort_index().items()},
            "judges": sorted(judges),
            "judgments": len(judgments), "comparisons": 0 if comparisons is None else len(comparisons)}


def summarize_run(run: dict[str, Any], frames: RunFrames, stages: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run summary: ``run`` (the Run row's counts, cost, tokens, names) completed from the frames with
    failures by kind, answer outcomes (overall and per model · template), samples, personas, sizes; and
    ``stages`` (``summarize_stages``) for a run whose subjects answered and judges rated."""
    llm = frames.llm
    out = dict(run)
    out["stages"] = stages or {}
    out["models"] = sorted(llm["model"].astype(str).unique().tolist())
    out["templates"] = sorted(llm["template"].astype(str).unique().tolist())
    out["personas"] = sorted(p for p in llm["persona_key"].fillna("").astype(str).unique() if p)
    out["samples"] = int(llm["sample_index"].max()) + 1 if len(llm) else 0
    out["n_items"] = int(llm["item_id"].nunique())
    out["n_annotators"] = int(frames.human["annotator_id"].nunique())
    out[MetricName.N_HUMAN_RATINGS] = len(frames.human)
    failed = llm[llm["status"] == "failed"]
    kinds: dict[str, dict[str, Any]] = {}
    for message in failed["last_error"].fillna(""):
        kind = failure_kind(message)
        entry = kinds.setdefault(kind, {"kind": kind, "count": 0, "example": str(message)[:300]})
        entry["count"] += 1
    out["failures_by_kind"] = sorted(kinds.values(), key=lambda k: (-k["count"], k["kind"]))
    done = llm[llm["status"] == "done"]
    out["outcomes"] = {str(k): int(v) for k, v in done["parse_status"].fillna("ok").value_counts().sort_index().items()}
    by_rater = []
    for (model, template), g in llm.groupby(["model", "template"], sort=True):
        status = g["parse_status"].where(g["status"] == "done")
        row: dict[str, Any] = {"model": str(model), "template": str(template), "requests": len(g)}
        for outcome in OUTCOMES:
            row[outcome] = int((status == outcome).sum())
        row["failed"] = int((g["status"] == "failed").sum())
        row["cancelled"] = int((g["status"] == "cancelled").sum())
        row["cache_hits"] = int(g["cache_hit"].fillna(False).astype(bool).sum())
        by_rater.append(row)
    out["outcomes_by_rater"] = by_rater
    return out


def _timestamp(moment: datetime | None) -> str | None:
    """'2026-11-23 15:37:05 UTC' (naive times from SQLite are UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _run_fields(session: Session, run: Run) -> dict[str, Any]:
    campaign = session.get(Campaign, run.campaign_id)
    dataset = session.get(Dataset, campaign.dataset_id) if campaign else None
    tokens = session.execute(
        select(func.coalesce(func.sum(Rating.cached_input_tokens), 0),
               func.coalesce(func.sum(Rating.cache_write_tokens), 0),
               func.count().filter(col(Rating.repaired).is_(True)))
        .where(col(Rating.run_id) == run.id)).one()
    duration = ((run.finished_at - run.started_at).total_seconds()
                if run.started_at and run.finished_at else None)
    return {
        "id": run.id, "campaign": campaign.name if campaign else "", "dataset": dataset.name if dataset else "",
        # the campaign's analysis.meaning, else the dataset's (import --meaning)
        "meaning": (((campaign.spec or {}).get("analysis") or {}).get("meaning") if campaign else None)
        or ((dataset.import_info or {}).get("meaning") if dataset else None),
        "status": run.status, "total": run.total, "done": run.done, "cached": run.cached, "failed": run.failed,
        "cancelled": run.cancelled, "cost_usd": round(run.cost_usd, 6), "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens, "cached_input_tokens": int(tokens[0]), "cache_write_tokens": int(tokens[1]),
        "repaired": int(tokens[2]),
        "started_at": _timestamp(run.started_at), "finished_at": _timestamp(run.finished_at),
        "duration_s": round(duration, 1) if duration is not None else None,
        "max_failed_share": float(((campaign.spec if campaign else None) or {}).get("max_failed_share", 0.02)),
    }


# ------------------------------------------------------------------------------------------------ building


def build_report_data(engine: Engine, run_id: int) -> ReportData:
    """Everything the report shows for one run, from the database."""
    with Session(engine) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise ValueError(f"run {run_id}: no such run")
        fields = _run_fields(session, run)
        rows = session.execute(select(Metric).where(col(Metric.run_id) == run_id).order_by(col(Metric.id))).scalars().all()
        metrics = metrics_frame({
            "name": m.name, "slice": m.slice, "model": m.model, "template": m.template, "value": m.value,
            "ci_low": m.ci_low, "ci_high": m.ci_high, "pvalue": m.pvalue, "n": m.n, "details": m.details,
        } for m in rows)
    frames = load_run_frames(engine, run_id)
    stages = summarize_stages(load_answers(engine, run_id), load_judgments(engine, run_id),
                              load_comparisons(engine, run_id))
    return assemble_report(summarize_run(fields, frames, stages), metrics, frames)


def assemble_report(run: dict[str, Any], metrics: pd.DataFrame, frames: RunFrames) -> ReportData:
    """Build every section (tables, plots, readings) from a run summary (see `summarize_run`), the metrics
    frame (see `accord.report.metrics.metrics_frame`) and the run's frames."""
    ctx = ReportContext(MetricIndex.from_frame(metrics), run, frames)
    sections: list[SectionView] = []
    for builder in SECTION_BUILDERS:
        try:
            section = builder(ctx)
        except Exception as exc:  # one broken section must not take the whole report down
            log.exception("report section %s failed for run %s", builder.__name__, run.get("id"))
            name = builder.__name__.removesuffix("_section")
            section = SectionView(name, name.replace("_", " ").capitalize(), "",
                                  [f"This section could not be built: {type(exc).__name__}: {exc}"])
        if section is not None:
            sections.append(section)
    return ReportData(run=run, metrics=metrics, frames=frames, plots=ctx.plots,
                      readings={s.id: s.all_readings() for s in sections}, sections=sections)


# ------------------------------------------------------------------------------------------------ tables


def metric_rows(metrics: pd.DataFrame, names: Sequence[str] | None = None, slice_: str | None = "all",
                human_only: bool | None = None) -> list[dict[str, str]]:
    """Formatted rows (name, slice, model, template, value, ci, p, n) of the selected metrics."""
    out = []
    for r in rows_from_frame(metrics):
        if names is not None and r.name not in names:
            continue
        if slice_ is not None and r.slice != slice_:
            continue
        if human_only is not None and (r.model == "") != human_only:
            continue
        out.append({"name": r.name, "slice": r.slice, "model": r.model, "template": r.template,
                    "value": num(r.value, 3), "ci": bracket(r.ci_low, r.ci_high), "p": pvalue(r.pvalue),
                    "n": count(r.n)})
    return out


# Short names of the terminal table (the legend under it spells them out), so it fits 80 columns.
SHORT_NAMES = {MetricName.PEARSON_R_VS_MEAN: "pearson r", MetricName.SPEARMAN_R_VS_MEAN: "spearman ρ",
               MetricName.KENDALL_TAU_VS_MEAN: "kendall τ",
               PERCENTILE: "percentile", BASELINE_MEDIAN: "median r"}


WIDE_TERMINAL = 120  # narrower terminals get the short metric names


def metrics_table(data: ReportData, width: int | None = None) -> Table:
    """The terminal view of a report (see ``run_metrics_table``)."""
    return run_metrics_table(data.run["id"], data.metrics, width)


def run_metrics_table(run_id: int, metrics: pd.DataFrame, width: int | None = None) -> Table:
    """The terminal view: alignment with the mean human rating per model · template, and the human baseline.
    On a terminal narrower than ``WIDE_TERMINAL`` columns the metric names are abbreviated (legend in the
    caption); long model or template names wrap instead of being cut, so the table fits 80 columns.
    ``metrics``: a ``metrics_frame`` (the run's stored metrics, or the API's)."""
    short = width is not None and width < WIDE_TERMINAL
    name = (lambda n: SHORT_NAMES.get(n, n)) if short else (lambda n: n)
    caption = ("pearson r, spearman ρ, kendall τ: vs the mean human rating; percentile: share of annotators the "
               "LLM beats; median r: annotators' leave-one-out r") if short else None
    t = Table(title=f"run {run_id} — alignment with the mean human rating", caption=caption,
              caption_justify="left")
    for heading in ("model", "template", "metric", "value", "95% CI", "n"):
        t.add_column(heading, overflow="fold")
    for r in metric_rows(metrics, ALIGNMENT + [PERCENTILE], human_only=False):
        t.add_row(r["model"], r["template"], name(r["name"]), r["value"], r["ci"], r["n"])
    for r in metric_rows(metrics, [BASELINE_MEDIAN], human_only=True):
        t.add_row("humans", "", name(r["name"]), r["value"], r["ci"], r["n"])
    for r in metric_rows(metrics, FINE):   # subjects' format consistency: model = subject, template = judge
        t.add_row(r["model"], f"judge {r['template']}", name(r["name"]), r["value"], r["ci"], r["n"])
    return t


# ------------------------------------------------------------------------------------------------ HTML

_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def render_html(data: ReportData) -> str:
    """The self-contained report page."""
    return _ENV.get_template("report.html").render(
        run=data.run, plots=data.plots, sections=data.sections,
        generated=datetime.now().strftime("%Y-%m-%d %H:%M:%S"))
