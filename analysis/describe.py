"""Describe a dataset of human ratings, without any LLM run (``accord describe``).

Counts (items, annotators, ratings, ratings per item), the label distribution, the human baseline (median
and IQR of each annotator's Pearson r with the leave-one-out mean of the others, Krippendorff's alpha at the
nominal, ordinal and interval levels) and, per annotator attribute (numeric ones binned, see
`accord.analysis.group_means`), each group's size, mean rating with a 95% interval, within-group agreement
and the item-matched differences between groups with permutation p-values (Benjamini-Hochberg).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from accord.analysis import agreement, baseline
from accord.analysis.frames import build_groups, build_human_matrix
from accord.analysis.group_means import bin_numeric_attributes, group_means
from accord.analysis.resampling import derive_rng
from accord.analysis.results import json_safe


@dataclass
class DescribeOptions:
    group_attributes: list[str] | None = None  # None: every attribute (no intersections)
    bins: dict[str, list[float] | int] | None = None
    min_group_size: int = 2
    max_groups: int = 12  # attributes with more groups get counts only (no pairwise tests)
    n_resamples: int = 1000
    n_permutations: int = 1000
    confidence_level: float = 0.95
    seed: int = 0


def human_baseline(values: np.ndarray, annotator_ids: list[str], domain: np.ndarray | None) -> dict[str, Any]:
    """Median/IQR of the leave-one-out annotator r and Krippendorff's alpha at each level the data allows."""
    res = baseline.annotator_agreement(values, annotator_ids)
    out: dict[str, Any] = {"annotator_loo_r": {"median": res.median, "q25": res.q25, "q75": res.q75,
                                               "iqr": res.q75 - res.q25, "n_annotators": res.n_defined}}
    alphas: dict[str, Any] = {}
    for level in (["nominal", "ordinal", "interval"] if domain is not None else ["interval"]):
        try:
            alphas[level] = agreement.krippendorff_alpha(values, level, domain)
        except ValueError as exc:
            alphas[level] = None
            alphas[f"{level}_reason"] = str(exc)
    out["krippendorff_alpha"] = alphas
    return out


def describe_ratings(human: pd.DataFrame, annotators: pd.DataFrame | None = None,
                     options: DescribeOptions | None = None) -> dict[str, Any]:
    """The description as JSON-safe data (see the module docstring). ``human``: item_id, annotator_id, value
    (and optionally raw_label); ``annotators``: annotator_id + attribute columns."""
    opts = options or DescribeOptions()
    hm = build_human_matrix(human)
    values = hm.values
    rated = np.isfinite(values)
    per_item = rated.sum(axis=1)
    domain = hm.value_domain()
    out: dict[str, Any] = {
        "n_items": hm.n_items,
        "n_annotators": hm.n_annotators,
        "n_ratings": int(rated.sum()),
        "ratings_per_item": {"min": int(per_item.min()) if per_item.size else 0,
                             "median": float(np.median(per_item)) if per_item.size else 0.0,
                             "max": int(per_item.max()) if per_item.size else 0,
                             "mean": float(per_item.mean()) if per_item.size else 0.0},
        "ratings_per_annotator": {"min": int(rated.sum(axis=0).min()) if hm.n_annotators else 0,
                                  "median": float(np.median(rated.sum(axis=0))) if hm.n_annotators else 0.0,
                                  "max": int(rated.sum(axis=0).max()) if hm.n_annotators else 0},
        "mean_rating": float(np.nanmean(values)) if rated.any() else None,
    }
    if domain is not None:
        shown = values[rated]
        out["value_distribution"] = {f"{v:g}": int((shown == v).sum()) for v in domain}
    if "raw_label" in human.columns:
        labels = human["raw_label"].dropna().astype(str).value_counts()
        out["label_distribution"] = {str(k): int(v) for k, v in labels.head(20).items()}
    out["baseline"] = human_baseline(values, hm.annotator_ids, domain)
    out["groups"] = describe_groups(values, hm.annotator_ids, annotators, opts)
    safe: dict[str, Any] = json_safe(out)
    return safe


def describe_groups(values: np.ndarray, annotator_ids: list[str], annotators: pd.DataFrame | None,
                    opts: DescribeOptions) -> dict[str, Any]:
    frame, binnings = bin_numeric_attributes(annotators, opts.bins)
    groups = build_groups(frame, annotator_ids, opts.group_attributes, intersections=False,
                          min_group_size=opts.min_group_size)
    out: dict[str, Any] = {}
    rule = {b.attribute: {"edges": b.edges, "bins": b.names, "rule": b.rule} for b in binnings}
    for gdef in groups:
        entry: dict[str, Any] = {"too_small": gdef.too_small}
        if gdef.attribute in rule:
            entry["binned"] = rule[gdef.attribute]
        if gdef.n_groups > opts.max_groups:
            entry["skipped"] = (f"{gdef.n_groups} groups (more than {opts.max_groups}); choose attributes with "
                                "--attribute or bin a numeric one with --bins")
            entry["groups"] = [{"group": name, "n_annotators": int(gdef.members(g).size)}
                               for g, name in enumerate(gdef.group_names)]
            out[gdef.attribute] = entry
            continue
        res = group_means(values, gdef, n_resamples=opts.n_resamples, n_permutations=opts.n_permutations,
                          confidence_level=opts.confidence_level, rng=derive_rng(opts.seed, "describe", gdef.attribute))
        entry["groups"] = [vars(g) for g in res.groups]
        entry["differences"] = [vars(d) for d in res.differences]
        entry["n_permutations"] = res.n_permutations
        out[gdef.attribute] = entry
    return out
