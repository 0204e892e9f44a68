"""The run report: one self-contained HTML file (plots embedded as PNG), a terminal table, and JSON.

Numbers come from the run's stored Metric rows; the plots' per-item points come from the run's frames.
Rated texts never reach the page unescaped (Jinja2 autoescape)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2 import Environment, FileSystemLoader, select_autoescape  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from sqlmodel import Session  # noqa: E402

from accord.models.schema import Campaign, Dataset, Metric, Run  # noqa: E402
from accord.scheduler.run_frames import RunFrames, load_run_frames  # noqa: E402

TEMPLATES = Path(__file__).parent / "templates"

# Metric names the report gives a place of their own (see accord.analysis.suite for the full list).
ALIGNMENT = ["pearson_r_vs_mean", "spearman_r_vs_mean", "kendall_tau_vs_mean"]
BASELINE_MEDIAN = "annotator_loo_r_median"
PERCENTILE = "llm_percentile_among_annotators"
GROUP_R = "group_pearson_r"


@dataclass
class ReportData:
    run: dict[str, Any]
    metrics: pd.DataFrame
    frames: RunFrames
    plots: dict[str, str] = field(default_factory=dict)   # name -> base64 PNG

    def to_json(self) -> dict[str, Any]:
        metrics = self.metrics.replace({np.nan: None}).to_dict(orient="records")
        return {"run": self.run, "metrics": metrics}


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def rater_scores(frames: RunFrames) -> pd.DataFrame:
    """Per rater (model x template, no persona) and item: the mean score over samples (the probability-weighted
    score where available), next to the item's mean human rating."""
    llm = frames.llm[frames.llm["persona_key"] == ""].copy()
    llm["score"] = llm["weighted_value"].where(llm["weighted_value"].notna(), llm["value"])
    scores = llm.groupby(["model", "template", "item_id"], as_index=False)["score"].mean()
    human = frames.human.groupby("item_id", as_index=False)["value"].mean().rename(columns={"value": "human_mean"})
    return scores.merge(human, on="item_id", how="left")


def _scatter(frames: RunFrames) -> str | None:
    df = rater_scores(frames).dropna(subset=["score", "human_mean"])
    if df.empty:
        return None
    raters = list(df.groupby(["model", "template"]).groups)
    cols = min(3, len(raters))
    rows = int(np.ceil(len(raters) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax, (model, template) in zip(axes.flat, raters):
        d = df[(df["model"] == model) & (df["template"] == template)]
        ax.scatter(d["human_mean"], d["score"], s=22, alpha=0.7, color="#3b6ea8", edgecolor="white", linewidth=0.5)
        if len(d) > 2 and d["score"].std() > 0 and d["human_mean"].std() > 0:
            r = np.corrcoef(d["human_mean"], d["score"])[0, 1]
            slope, intercept = np.polyfit(d["human_mean"], d["score"], 1)
            xs = np.linspace(d["human_mean"].min(), d["human_mean"].max(), 20)
            ax.plot(xs, slope * xs + intercept, color="#c0392b", linewidth=1)
            ax.set_title(f"{model} · {template}\nr = {r:.2f}, n = {len(d)}", fontsize=9)
        else:
            ax.set_title(f"{model} · {template}\n(no variation to correlate)", fontsize=9)
        ax.set_xlabel("mean human rating (unsafe share)")
        ax.set_ylabel("LLM score")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(raters):]:
        ax.axis("off")
    fig.suptitle("LLM score vs mean human rating, per item", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def _group_chart(metrics: pd.DataFrame) -> str | None:
    g = metrics[(metrics["name"] == GROUP_R) & metrics["value"].notna()]
    if g.empty:
        return None
    g = g.sort_values(["slice", "model", "template"])
    labels = [f"{s}  ({m} · {t})" for s, m, t in zip(g["slice"], g["model"], g["template"])]
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(g) + 1.4))
    y = np.arange(len(g))
    lo = (g["value"] - g["ci_low"].fillna(g["value"])).clip(lower=0)
    hi = (g["ci_high"].fillna(g["value"]) - g["value"]).clip(lower=0)
    ax.barh(y, g["value"], color="#7fa7d6", height=0.6)
    ax.errorbar(g["value"], y, xerr=[lo, hi], fmt="none", ecolor="#333", capsize=3, linewidth=1)
    ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(0, color="#999", linewidth=0.8)
    ax.set_xlabel("Pearson r between LLM score and the group's mean rating (95% CI)")
    ax.set_title("Alignment per annotator group", fontsize=11)
    ax.invert_yaxis()
    fig.tight_layout()
    return _png(fig)


def _parse_chart(frames: RunFrames) -> str | None:
    llm = frames.llm[frames.llm["status"].isin(["done", "failed"])].copy()
    if llm.empty:
        return None
    llm["outcome"] = llm["parse_status"].fillna("request failed")
    counts = llm.groupby(["model", "template", "outcome"]).size().unstack(fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0)
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * len(shares) + 1.5))
    left = np.zeros(len(shares))
    colors = {"ok": "#4c9a5a", "refused": "#e0a030", "unparseable": "#c0392b", "truncated": "#8e44ad",
              "empty": "#7f8c8d", "request failed": "#34495e"}
    for outcome in shares.columns:
        ax.barh(np.arange(len(shares)), shares[outcome], left=left, label=outcome, color=colors.get(outcome, "#999"))
        left += shares[outcome].to_numpy()
    ax.set_yticks(np.arange(len(shares)), [f"{m} · {t}" for m, t in shares.index], fontsize=8)
    ax.set_xlabel("share of rating requests")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Answer outcomes", fontsize=11)
    ax.invert_yaxis()
    fig.tight_layout()
    return _png(fig)


def build_report_data(engine: Engine, run_id: int) -> ReportData:
    with Session(engine) as session:
        run = session.get(Run, run_id)
        if run is None:
            raise ValueError(f"run {run_id}: no such run")
        campaign = session.get(Campaign, run.campaign_id)
        dataset = session.get(Dataset, campaign.dataset_id) if campaign else None
        rows = session.execute(select(Metric).where(Metric.run_id == run_id).order_by(Metric.id)).scalars().all()
    metrics = pd.DataFrame([{
        "name": m.name, "slice": m.slice, "model": m.model, "template": m.template, "value": m.value,
        "ci_low": m.ci_low, "ci_high": m.ci_high, "pvalue": m.pvalue, "n": m.n, "details": m.details,
    } for m in rows], columns=["name", "slice", "model", "template", "value", "ci_low", "ci_high", "pvalue", "n", "details"])
    frames = load_run_frames(engine, run_id)
    summary = {
        "id": run.id, "campaign": campaign.name if campaign else "", "dataset": dataset.name if dataset else "",
        "status": run.status, "total": run.total, "done": run.done, "cached": run.cached, "failed": run.failed,
        "cancelled": run.cancelled, "cost_usd": round(run.cost_usd, 6), "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "models": sorted(frames.llm["model"].unique().tolist()),
        "templates": sorted(frames.llm["template"].unique().tolist()),
        "n_items": int(frames.llm["item_id"].nunique()), "n_annotators": int(frames.human["annotator_id"].nunique()),
    }
    data = ReportData(run=summary, metrics=metrics, frames=frames)
    for name, make in (("scatter", lambda: _scatter(frames)), ("groups", lambda: _group_chart(metrics)),
                       ("outcomes", lambda: _parse_chart(frames))):
        png = make()
        if png:
            data.plots[name] = png
    return data


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(x)
    return f"{x:.{digits}f}"


def metric_rows(metrics: pd.DataFrame, names: list[str] | None = None, slice_: str | None = "all",
                human_only: bool | None = None) -> list[dict[str, str]]:
    m = metrics
    if names is not None:
        m = m[m["name"].isin(names)]
    if slice_ is not None:
        m = m[m["slice"] == slice_]
    if human_only is not None:
        m = m[(m["model"] == "") == human_only]
    return [{"name": r.name, "slice": r.slice, "model": r.model, "template": r.template, "value": _fmt(r.value),
             "ci": f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.ci_low is not None and not pd.isna(r.ci_low) else "",
             "p": _fmt(r.pvalue, 4), "n": _fmt(r.n)} for r in m.itertuples()]


def metrics_table(data: ReportData) -> Table:
    t = Table(title=f"run {data.run['id']} — alignment with the mean human rating")
    for col in ("model", "template", "metric", "value", "95% CI", "n"):
        t.add_column(col)
    for r in metric_rows(data.metrics, ALIGNMENT + [PERCENTILE], human_only=False):
        t.add_row(r["model"], r["template"], r["name"], r["value"], r["ci"], r["n"])
    for r in metric_rows(data.metrics, [BASELINE_MEDIAN], human_only=True):
        t.add_row("humans", "", r["name"], r["value"], r["ci"], r["n"])
    return t


def render_html(data: ReportData) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    m = data.metrics
    sections = {
        "alignment": metric_rows(m, ALIGNMENT + [PERCENTILE], human_only=False),
        "human": metric_rows(m, None, human_only=True),
        "groups": metric_rows(m, [GROUP_R], slice_=None),
        "other": metric_rows(m[~m["name"].isin(ALIGNMENT + [PERCENTILE, GROUP_R])], None, slice_=None, human_only=False),
    }
    return env.get_template("report.html").render(run=data.run, plots=data.plots, sections=sections,
                                                  generated=datetime.now().isoformat(timespec="seconds"))
