"""Per item: what the people said, what the LLMs said, how far apart they are, and how far apart the annotator
groups are (the item explorer of the dashboard and its API route).

Pure functions on the frames of `accord.models.run_frames` (``human``: item_id, annotator_id, value;
``llm``: one row per rating request with model, template, value, parse_status; ``annotators``: annotator_id
and attribute columns). Numeric attributes are binned exactly as ``accord describe`` bins them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
from accord.analysis.group_means import bin_numeric_attributes

ITEM_COLUMNS = ["item_id", "n_human", "human_mean", "n_llm", "llm_mean", "disagreement", "abs_disagreement",
                "group_gap", "gap_attribute", "gap_high", "gap_low"]


@dataclass(frozen=True)
class GroupGap:
    attribute: str
    gap: float          # highest minus lowest group mean on the item
    high: str           # the group with the highest mean
    low: str


def binned_annotators(annotators: pd.DataFrame | None) -> pd.DataFrame | None:
    """The annotators with numeric attributes binned (age bands, quartiles) as `accord describe` does."""
    if annotators is None or annotators.empty or len(annotators.columns) <= 1:
        return None
    frame, _ = bin_numeric_attributes(annotators)
    return frame


def attributes_of(annotators: pd.DataFrame | None) -> list[str]:
    if annotators is None:
        return []
    return [c for c in annotators.columns if c != "annotator_id"]


def _gaps(human: pd.DataFrame, annotators: pd.DataFrame | None, attribute: str | None) -> dict[str, GroupGap]:
    """Per item, the largest gap between two groups' mean ratings, over ``attribute`` (or every attribute)."""
    if annotators is None or human.empty:
        return {}
    chosen = [attribute] if attribute else attributes_of(annotators)
    chosen = [a for a in chosen if a in annotators.columns]
    if not chosen:
        return {}
    merged = human.dropna(subset=["value"]).merge(annotators[["annotator_id", *chosen]], on="annotator_id",
                                                   how="left")
    best: dict[str, GroupGap] = {}
    for attr in chosen:
        rows = merged[merged[attr].notna()]
        if rows.empty:
            continue
        means = rows.groupby(["item_id", rows[attr].astype(str)])["value"].mean()
        for item_id, per_group in means.groupby(level=0):
            if len(per_group) < 2:
                continue
            ranked = per_group.droplevel(0).sort_values(kind="stable")
            gap = float(ranked.iloc[-1] - ranked.iloc[0])
            current = best.get(str(item_id))
            if current is None or gap > current.gap:
                best[str(item_id)] = GroupGap(attr, gap, str(ranked.index[-1]), str(ranked.index[0]))
    return best


def item_disagreements(human: pd.DataFrame, llm: pd.DataFrame, annotators: pd.DataFrame | None = None, *,
                       attribute: str | None = None, model: str | None = None,
                       template: str | None = None) -> pd.DataFrame:
    """One row per item that people or LLMs rated (``ITEM_COLUMNS``): mean human and mean LLM rating (parsed
    ratings of ``model``/``template`` when given, else all), their signed difference (LLM minus people) and
    the largest gap between annotator groups of ``attribute`` (every attribute when None)."""
    rated = llm
    if not rated.empty:
        rated = rated[rated["value"].notna()]
        if model is not None:
            rated = rated[rated["model"] == model]
        if template is not None:
            rated = rated[rated["template"] == template]
    people = human.dropna(subset=["value"]) if not human.empty else human
    h = people.groupby("item_id")["value"].agg(["count", "mean"]) if not people.empty else pd.DataFrame(
        columns=["count", "mean"])
    m = rated.groupby("item_id")["value"].agg(["count", "mean"]) if not rated.empty else pd.DataFrame(
        columns=["count", "mean"])
    ids = sorted(set(map(str, h.index)) | set(map(str, llm["item_id"].astype(str) if not llm.empty else [])))
    gaps = _gaps(people, binned_annotators(annotators), attribute)
    rows = []
    for item_id in ids:
        n_h = int(cast(int, h.loc[item_id, "count"])) if item_id in h.index else 0
        h_mean = float(cast(float, h.loc[item_id, "mean"])) if n_h else float("nan")
        n_m = int(cast(int, m.loc[item_id, "count"])) if item_id in m.index else 0
        m_mean = float(cast(float, m.loc[item_id, "mean"])) if n_m else float("nan")
        diff = m_mean - h_mean if n_h and n_m else float("nan")
        g = gaps.get(item_id)
        rows.append((item_id, n_h, h_mean, n_m, m_mean, diff, abs(diff) if np.isfinite(diff) else float("nan"),
                     g.gap if g else float("nan"), g.attribute if g else None, g.high if g else None,
                     g.low if g else None))
    return pd.DataFrame.from_records(rows, columns=ITEM_COLUMNS)


def value_counts(values: pd.Series | np.ndarray, domain: list[float] | None = None) -> dict[str, int]:
    """How many ratings took each value (``domain`` fixes the values listed, zeros included), keys as ``%g``."""
    arr = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    keys = sorted(set(domain or []) | set(arr.tolist()))
    return {f"{v:g}": int((arr == v).sum()) for v in keys}


def item_histograms(human: pd.DataFrame, annotators: pd.DataFrame | None, item_id: str,
                    domain: list[float] | None = None) -> dict[str, object]:
    """The people's ratings of one item: counts per value overall and per group of every attribute (numeric
    attributes binned), with each group's mean."""
    rows = human[(human["item_id"].astype(str) == item_id) & human["value"].notna()]
    values = sorted(set(domain or []) | set(rows["value"].astype(float).tolist()))
    out: dict[str, object] = {"values": [f"{v:g}" for v in values], "overall": value_counts(rows["value"], values),
                              "n": len(rows), "mean": float(rows["value"].mean()) if len(rows) else None,
                              "groups": {}}
    frame = binned_annotators(annotators)
    if frame is None or rows.empty:
        return out
    merged = rows.merge(frame, on="annotator_id", how="left")
    groups: dict[str, list[dict[str, object]]] = {}
    for attr in attributes_of(frame):
        entries = []
        for name, part in merged[merged[attr].notna()].groupby(merged[attr].astype(str)):
            entries.append({"group": str(name), "n": len(part), "mean": float(part["value"].mean()),
                            "counts": value_counts(part["value"], values)})
        if entries:
            groups[attr] = entries
    out["groups"] = groups
    return out
