"""Side by side: the headline metrics of one or several runs as a models x templates (x subject) matrix, and
what changed between two runs (metric deltas, the items whose LLM ratings moved most).

Reads the stored Metric rows (computed once by post-processing) and the runs' ratings; writes nothing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

from accord.analysis.catalogue import MetricName
from accord.models.run_frames import load_llm_frame
from accord.models.schema import Metric
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

# Alignment of a rater with the people (slice "all"), and a judge's mean score of each subject model.
HEADLINE = [MetricName.PEARSON_R_VS_MEAN, MetricName.SPEARMAN_R_VS_MEAN, MetricName.KENDALL_TAU_VS_MEAN,
            MetricName.LLM_PERCENTILE_AMONG_ANNOTATORS]
JUDGE_MEAN = MetricName.JUDGE_SUBJECT_MEAN
MAX_MOVED = 20


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and isinstance(x, (int, float)) and math.isfinite(x) else None


def _cell(m: Metric) -> dict[str, Any]:
    return {"value": _finite(m.value), "ci_low": _finite(m.ci_low), "ci_high": _finite(m.ci_high), "n": m.n}


def _metrics(engine: Engine, run_ids: list[int], names: Sequence[str]) -> list[Metric]:
    q = (select(Metric).where(col(Metric.run_id).in_(run_ids), col(Metric.name).in_(names),
                              col(Metric.slice) == "all").order_by(col(Metric.run_id), col(Metric.id)))
    with Session(engine, expire_on_commit=False) as session:
        return list(session.execute(q).scalars().all())


def metric_matrix(engine: Engine, run_ids: list[int]) -> dict[str, Any]:
    """Rows (run, model, template, subject) x the headline metrics, each cell {value, ci_low, ci_high, n}.
    A rater's alignment with the people has subject ''; a judge's mean score of a subject's answers is the
    row (judge, '', subject) under ``judge_subject_mean``."""
    rows: dict[tuple[int, str, str, str], dict[str, Any]] = {}
    present: set[str] = set()
    for m in _metrics(engine, run_ids, HEADLINE + [JUDGE_MEAN]):
        if not m.model:
            continue
        if m.name == JUDGE_MEAN:   # stored as model = subject, template = judge
            key = (m.run_id, m.template, "", m.model)
        else:
            key = (m.run_id, m.model, m.template, "")
        row = rows.setdefault(key, {"run_id": key[0], "model": key[1], "template": key[2], "subject": key[3],
                                    "cells": {}})
        row["cells"][m.name] = _cell(m)
        present.add(m.name)
    names = [n for n in HEADLINE + [JUDGE_MEAN] if n in present]
    ordered = sorted(rows.values(), key=lambda r: (r["run_id"], r["model"], r["template"], r["subject"]))
    return {"run_ids": run_ids, "metrics": names, "rows": ordered,
            "has_subjects": any(r["subject"] for r in ordered)}


def metric_deltas(engine: Engine, run_a: int, run_b: int) -> list[dict[str, Any]]:
    """Every headline metric present in both runs: its value in each and the change (B minus A)."""
    matrix = metric_matrix(engine, [run_a, run_b])
    by_key: dict[tuple[str, str, str, str], dict[int, dict[str, Any]]] = {}
    for row in matrix["rows"]:
        for name, cell in row["cells"].items():
            by_key.setdefault((name, row["model"], row["template"], row["subject"]), {})[row["run_id"]] = cell
    out = []
    for (name, model, template, subject), cells in sorted(by_key.items()):
        a, b = cells.get(run_a), cells.get(run_b)
        va = a["value"] if a else None
        vb = b["value"] if b else None
        out.append({"name": name, "model": model, "template": template, "subject": subject, "a": a, "b": b,
                    "delta": (vb - va) if va is not None and vb is not None else None})
    return out


def moved_items(engine: Engine, run_a: int, run_b: int, limit: int = MAX_MOVED) -> list[dict[str, Any]]:
    """The items whose mean LLM rating (per model x template, parsed ratings only) changed most between the two
    runs, largest absolute change first."""
    frames = []
    for run_id in (run_a, run_b):
        llm = load_llm_frame(engine, run_id)
        llm = llm[llm["value"].notna()]
        frames.append(llm.groupby(["item_id", "model", "template"])["value"].agg(["mean", "count"]))
    if frames[0].empty or frames[1].empty:
        return []
    both = frames[0].join(frames[1], how="inner", lsuffix="_a", rsuffix="_b")
    both["delta"] = both["mean_b"] - both["mean_a"]
    both = both.reindex(both["delta"].abs().sort_values(ascending=False, kind="stable").index).head(limit)
    moved: list[dict[str, Any]] = []
    for key, r in both.iterrows():
        i, mdl, t = cast(tuple[object, object, object], key)   # indexed by three columns
        moved.append({"item_id": str(i), "model": str(mdl), "template": str(t), "a": float(r["mean_a"]),
                      "b": float(r["mean_b"]), "delta": float(r["delta"]), "n_a": int(r["count_a"]),
                      "n_b": int(r["count_b"])})
    return moved


def run_diff(engine: Engine, run_a: int, run_b: int) -> dict[str, Any]:
    return {"run_a": run_a, "run_b": run_b, "metrics": metric_deltas(engine, run_a, run_b),
            "items": moved_items(engine, run_a, run_b)}

