"""Per-group mean ratings: do the annotators of one group rate the same items higher than another's?

- Numeric attributes (age, income ...) are binned before grouping: by the edges or the number of quantile
  bins the user gives, else age bands (18-24, 25-34, ..., 65+) for an attribute named like age and quartiles
  for any other numeric attribute with more than ``MAX_CATEGORIES`` distinct values.
- A group's mean rating is the mean of all ratings its annotators gave; its interval is a percentile bootstrap
  over items (an item's ratings by the group stay together, so annotators' shared items are not treated as
  independent ratings).
- The difference between two groups is item-matched: on the items both groups rated, the mean over items of
  (group A's mean on the item - group B's mean on the item), so that groups who rated different items are not
  compared on different content. Its p-value is a two-sided permutation test that reassigns the two groups'
  annotators at random (group sizes kept), Phipson & Smyth's (1 + #extreme) / (1 + K); p-values are adjusted
  with Benjamini-Hochberg across the pairs of one attribute.
- Within-group agreement is Krippendorff's alpha (interval) among the group's annotators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from accord.analysis.agreement import krippendorff_alpha
from accord.analysis.frames import GroupDefinition
from accord.analysis.resampling import (
    benjamini_hochberg,
    label_permutations,
    percentile_interval,
    permutation_pvalue,
    resample_counts,
)

AGE_EDGES = [18.0, 25.0, 35.0, 45.0, 55.0, 65.0]
DEFAULT_QUANTILE_BINS = 4
MAX_CATEGORIES = 10  # a numeric attribute with more distinct values than this is binned by default
_AGE_NAME = re.compile(r"(^|[_\s-])age($|[_\s-])|^age", re.IGNORECASE)


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def numeric_values(series: pd.Series) -> np.ndarray | None:
    """The attribute as floats (NaN = unknown) if every known value is a number, else None."""
    out = np.full(len(series), np.nan)
    for i, value in enumerate(series.tolist()):
        if value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == "":
            continue
        number = _number(value)
        if number is None:
            return None
        out[i] = number
    return out if np.isfinite(out).any() else None


def _fmt(x: float) -> str:
    return f"{x:g}"


def bin_names(edges: list[float]) -> list[str]:
    """Names of the len(edges) + 1 bins [-inf, e0), [e0, e1), ..., [e_last, inf): '<18', '18-24', '65+' for
    whole-number edges, '[0.5, 1)' otherwise."""
    whole = all(float(e).is_integer() for e in edges)
    names = [f"<{_fmt(edges[0])}"]
    for low, high in zip(edges, edges[1:]):
        names.append(f"{_fmt(low)}-{_fmt(high - 1)}" if whole else f"[{_fmt(low)}, {_fmt(high)})")
    names.append(f"{_fmt(edges[-1])}+")
    return names


def quantile_edges(values: np.ndarray, k: int) -> list[float]:
    """Inner edges of k quantile bins of the known values (fewer when values repeat)."""
    known = values[np.isfinite(values)]
    qs = np.quantile(known, np.linspace(0, 1, k + 1)[1:-1])
    return sorted({float(q) for q in qs})


@dataclass
class Binning:
    attribute: str
    edges: list[float]
    names: list[str]
    rule: str  # "edges", "quantiles (k)", "age bands (default)", "quartiles (default)"


def bin_attribute(values: np.ndarray, edges: list[float]) -> list[str | None]:
    """The bin name of each value (None where unknown)."""
    names = bin_names(edges)
    out: list[str | None] = []
    for v in values:
        out.append(None if not np.isfinite(v) else names[int(np.searchsorted(edges, v, side="right"))])
    return out


def bin_numeric_attributes(annotators: pd.DataFrame | None, bins: dict[str, list[float] | int] | None = None,
                           max_categories: int = MAX_CATEGORIES) -> tuple[pd.DataFrame | None, list[Binning]]:
    """A copy of the annotators frame with numeric attributes replaced by their bin names.

    ``bins``: attribute -> edges or a number of quantile bins. Attributes it does not name are binned when
    numeric with more than ``max_categories`` distinct values (age bands for an age attribute, else quartiles).
    Raises ValueError for a named attribute that is missing or not numeric."""
    bins = dict(bins or {})
    if annotators is None:
        if bins:
            raise ValueError(f"bins name attribute(s) {', '.join(bins)} but there are no annotator attributes")
        return None, []
    frame = annotators.copy()
    done: list[Binning] = []
    for column in [c for c in frame.columns if c != "annotator_id"]:
        spec = bins.pop(column, None)
        values = numeric_values(frame[column])
        if spec is None:
            if values is None or np.unique(values[np.isfinite(values)]).size <= max_categories:
                continue
            if _AGE_NAME.search(str(column)):
                edges, rule = list(AGE_EDGES), "age bands (default)"
            else:
                edges, rule = quantile_edges(values, DEFAULT_QUANTILE_BINS), "quartiles (default)"
        else:
            if values is None:
                raise ValueError(f"bins: attribute {column!r} is not numeric")
            if isinstance(spec, int):
                edges, rule = quantile_edges(values, spec), f"quantiles ({spec})"
            else:
                edges, rule = [float(e) for e in spec], "edges"
        if not edges:
            continue
        frame[column] = pd.Series(bin_attribute(values, edges), index=frame.index, dtype=object)
        done.append(Binning(str(column), edges, bin_names(edges), rule))
    if bins:
        raise ValueError(f"bins: no annotator attribute {', '.join(map(repr, bins))}")
    return frame, done


# --------------------------------------------------------------------------- group means


@dataclass
class GroupMean:
    group: str
    n_annotators: int
    n_ratings: int
    n_items: int
    mean: float
    ci_low: float
    ci_high: float
    alpha_interval: float  # within-group Krippendorff's alpha (NaN when undefined)


@dataclass
class GroupDifference:
    group_a: str
    group_b: str
    difference: float  # item-matched: mean over shared items of mean_a(item) - mean_b(item)
    n_items: int
    pvalue: float
    p_adjusted_bh: float = float("nan")


@dataclass
class GroupMeans:
    attribute: str
    groups: list[GroupMean]
    differences: list[GroupDifference] = field(default_factory=list)
    n_permutations: int = 0


def _group_sums(values: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sub = values[:, members]
    mask = np.isfinite(sub)
    return np.where(mask, sub, 0.0).sum(axis=1), mask.sum(axis=1).astype(float)


def _within_alpha(values: np.ndarray) -> float:
    try:
        return krippendorff_alpha(values, "interval")
    except ValueError:
        return float("nan")


def item_matched_difference(values: np.ndarray, in_a: np.ndarray, in_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Item-matched differences for K labellings at once.

    ``values``: items x annotators (NaN = not rated); ``in_a``/``in_b``: K x annotators 0/1 membership.
    Returns (K differences, K numbers of shared items); NaN where no item was rated by both groups."""
    mask = np.isfinite(values).astype(float)
    filled = np.where(mask > 0, values, 0.0)
    sum_a, n_a = filled @ in_a.T, mask @ in_a.T  # items x K
    sum_b, n_b = filled @ in_b.T, mask @ in_b.T
    both = (n_a > 0) & (n_b > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(both, sum_a / np.maximum(n_a, 1) - sum_b / np.maximum(n_b, 1), 0.0)
        n = both.sum(axis=0)
        return np.where(n > 0, d.sum(axis=0) / np.maximum(n, 1), np.nan), n


def group_means(values: np.ndarray, gdef: GroupDefinition, *, n_resamples: int = 1000, n_permutations: int = 1000,
                confidence_level: float = 0.95, rng: np.random.Generator | None = None,
                pairs: bool = True) -> GroupMeans:
    """Mean rating per group with a bootstrap interval over items, within-group alpha, and (``pairs``) the
    item-matched difference of every pair of groups with a permutation p-value (BH-adjusted across the pairs)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    values = np.asarray(values, dtype=float)
    counts = resample_counts(values.shape[0], n_resamples, rng) if n_resamples > 0 else None
    groups: list[GroupMean] = []
    for g, name in enumerate(gdef.group_names):
        members = gdef.members(g)
        sums, n = _group_sums(values, members)
        total = float(n.sum())
        mean = float(sums.sum() / total) if total else float("nan")
        low = high = float("nan")
        if counts is not None and total:
            with np.errstate(invalid="ignore", divide="ignore"):
                boot = (counts @ sums) / (counts @ n)
            ci = percentile_interval(boot, confidence_level)
            low, high = ci.low, ci.high
        groups.append(GroupMean(name, int(members.size), int(total), int((n > 0).sum()), mean, low, high,
                                _within_alpha(values[:, members])))
    differences: list[GroupDifference] = []
    for g1, g2 in combinations(range(gdef.n_groups), 2) if pairs else []:
        m1, m2 = gdef.members(g1), gdef.members(g2)
        pair = np.concatenate([m1, m2])
        sub = values[:, pair]
        labels = np.r_[np.ones(m1.size), np.zeros(m2.size)]
        observed, n_items = item_matched_difference(sub, labels[None, :], 1.0 - labels[None, :])
        perms = label_permutations(labels, n_permutations, rng)
        null, _ = item_matched_difference(sub, perms, 1.0 - perms)
        p = float(permutation_pvalue(observed, null[:, None])[0]) if np.isfinite(observed[0]) else float("nan")
        differences.append(GroupDifference(gdef.group_names[g1], gdef.group_names[g2], float(observed[0]),
                                           int(n_items[0]), p))
    adjusted = benjamini_hochberg(np.array([d.pvalue for d in differences]))
    for d, p_adj in zip(differences, adjusted):
        d.p_adjusted_bh = float(p_adj)
    return GroupMeans(gdef.attribute, groups, differences, n_permutations)
