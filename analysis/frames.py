"""Validation of the input frames and their conversion to aligned numpy arrays.

Contract (written by post-processing):

- ``human``: long frame ``item_id`` (str), ``annotator_id`` (str), ``value`` (float, NaN = missing).
- ``annotators``: ``annotator_id`` + one column per attribute (str; NaN/None = unknown).
- ``llm``: long frame ``item_id``, ``model``, ``template``, ``sample_index``, ``value``,
  ``weighted_value``, ``label``, ``parse_status``, ``persona_key`` ('' = no persona),
  ``template_family``, ``option_order``.
- ``items``: ``item_id`` + optional metadata (``category``, ``subject_model``, ``expert_label`` ...).

Everything downstream works on the arrays built here: a dense item × annotator matrix with NaN for
missing ratings (`HumanMatrix`) and, per LLM rater (model × template × persona), one score per item
(`LLMScores`). Items are the sorted union of the item ids seen in ``human`` and ``llm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, cast

import numpy as np
import pandas as pd

HUMAN_COLUMNS = ("item_id", "annotator_id", "value")
LLM_COLUMNS = ("item_id", "model", "template", "sample_index", "value", "parse_status")
LLM_OPTIONAL_DEFAULTS: dict[str, float | str | None] = {
    "weighted_value": np.nan,
    "label": None,
    "persona_key": "",
    "template_family": "",
    "option_order": "",
}
PARSE_STATUSES = frozenset({"ok", "refused", "unparseable", "truncated", "empty"})
FAILURE_STATUSES = frozenset({"unparseable", "truncated", "empty"})
# Group labels of annotators outside every tested group (see `GroupDefinition`).
UNKNOWN = -1    # value of the attribute unknown: in no group and not in any "rest"
UNTESTED = -2   # known value, but the group is smaller than min_group_size: in the rest, never tested
# Attribute strings that mean "unknown" (pandas writes a missing value as "nan" / "None" when a column is
# cast to str, CSV exports write "NULL" or "<NA>").
MISSING_ATTRIBUTE_STRINGS = frozenset({"", "nan", "none", "null", "<na>", "nat", "na", "n/a"})
# Ratings with at most this many distinct values are treated as labels (nominal/ordinal metrics, JSD).
MAX_DISCRETE_LEVELS = 20


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], frame_name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{frame_name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{frame_name} frame is missing column(s) {missing}; it has {list(frame.columns)}"
        )


def _numeric_column(frame: pd.DataFrame, column: str, frame_name: str) -> np.ndarray:
    converted = pd.to_numeric(frame[column], errors="coerce")
    bad = converted.isna() & frame[column].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{frame_name} frame, column {column!r}, row {row}: value {frame[column].iloc[row]!r} "
            "is not a number"
        )
    return converted.to_numpy(dtype=float)


def _id_column(frame: pd.DataFrame, column: str, frame_name: str) -> pd.Series:
    ids = frame[column]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise ValueError(f"{frame_name} frame, column {column!r}, row {row}: missing id")
    return ids.astype(str)


@dataclass
class HumanMatrix:
    """Human ratings as a dense item × annotator matrix (NaN = not rated)."""

    item_ids: list[str]
    annotator_ids: list[str]
    values: np.ndarray  # shape (n_items, n_annotators), float, NaN = missing

    @property
    def mask(self) -> np.ndarray:
        return np.asarray(~np.isnan(self.values), dtype=bool)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_annotators(self) -> int:
        return len(self.annotator_ids)

    def item_mean(self, columns: np.ndarray | None = None) -> np.ndarray:
        """Mean rating per item over the given annotator columns (NaN where nobody rated)."""
        vals = self.values if columns is None else self.values[:, columns]
        mask = ~np.isnan(vals)
        counts = mask.sum(axis=1)
        sums = np.where(mask, vals, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def subset_items(self, rows: np.ndarray) -> HumanMatrix:
        return HumanMatrix(
            item_ids=[self.item_ids[i] for i in rows],
            annotator_ids=list(self.annotator_ids),
            values=self.values[rows],
        )

    def value_domain(self) -> np.ndarray | None:
        """Sorted distinct rating values, or None if the ratings look continuous."""
        distinct = np.unique(self.values[~np.isnan(self.values)])
        if distinct.size == 0 or distinct.size > MAX_DISCRETE_LEVELS:
            return None
        return distinct


def build_human_matrix(human: pd.DataFrame, item_ids: list[str] | None = None) -> HumanMatrix:
    """Pivot the long ``human`` frame to a `HumanMatrix`.

    Duplicate (item, annotator) ratings are averaged. ``item_ids`` fixes the row order (items
    without ratings become all-NaN rows); by default the sorted item ids of ``human``.
    """
    _require_columns(human, HUMAN_COLUMNS, "human")
    items = _id_column(human, "item_id", "human")
    annotators = _id_column(human, "annotator_id", "human")
    values = _numeric_column(human, "value", "human")
    if item_ids is None:
        item_ids = sorted(set(items))
    annotator_ids = sorted(set(annotators))
    item_pos = pd.Index(item_ids)
    ann_pos = pd.Index(annotator_ids)
    rows = item_pos.get_indexer(pd.Index(items))
    cols = ann_pos.get_indexer(annotators)
    keep = (rows >= 0) & ~np.isnan(values)
    rows, cols, vals = rows[keep], cols[keep], values[keep]
    n_i, n_j = len(item_ids), len(annotator_ids)
    sums = np.zeros((n_i, n_j))
    counts = np.zeros((n_i, n_j))
    np.add.at(sums, (rows, cols), vals)
    np.add.at(counts, (rows, cols), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)
    return HumanMatrix(item_ids=list(item_ids), annotator_ids=annotator_ids, values=matrix)


def normalise_llm(llm: pd.DataFrame) -> pd.DataFrame:
    """Validate the ``llm`` frame and return a copy with every optional column present and typed.

    Only answers with parse status ``ok`` carry a rating: for every other status (refused, unparseable,
    truncated, empty) ``value``, ``weighted_value`` and ``value_probs`` are blanked here, so no metric
    can read a refusal's label probabilities as a rating; those rows count in the failure and refusal
    rates only. The column ``usable`` marks rows with status ``ok`` and a finite value; an ``ok`` row
    with a NaN value is counted as a failure (`failure_flags`)."""
    _require_columns(llm, LLM_COLUMNS, "llm")
    out = llm.copy()
    for column, default in LLM_OPTIONAL_DEFAULTS.items():
        if column not in out.columns:
            out[column] = default
    for column in ("item_id", "model", "template"):
        out[column] = _id_column(out, column, "llm")
    for column in ("persona_key", "template_family", "option_order"):
        out[column] = out[column].fillna("").astype(str)
    out["value"] = _numeric_column(out, "value", "llm")
    out["weighted_value"] = _numeric_column(out, "weighted_value", "llm")
    out["sample_index"] = _numeric_column(out, "sample_index", "llm")
    status = out["parse_status"].fillna("").astype(str)
    bad = ~status.isin(PARSE_STATUSES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"llm frame, column 'parse_status', row {row}: {status.iloc[row]!r} is not one of "
            f"{sorted(PARSE_STATUSES)}"
        )
    out["parse_status"] = status
    not_ok = (status != "ok").to_numpy()
    if not_ok.any():
        out.loc[not_ok, "value"] = np.nan
        out.loc[not_ok, "weighted_value"] = np.nan
        if "value_probs" in out.columns:
            out["value_probs"] = [None if bad else p for bad, p in zip(not_ok, out["value_probs"].tolist())]
    out["usable"] = ~not_ok & np.isfinite(out["value"].to_numpy(dtype=float))
    return out


@dataclass(frozen=True)
class RaterKey:
    """An LLM rater: model alias × template name (× persona; '' = no persona)."""

    model: str
    template: str
    persona_key: str = ""


@dataclass
class LLMScores:
    """Per-item scores of one LLM rater, aligned to a list of item ids."""

    key: RaterKey
    score: np.ndarray  # mean over usable samples (status ok; weighted_value where present if use_weighted)
    label: np.ndarray  # modal parsed `value` over samples (NaN where none parsed)
    n_parsed: np.ndarray  # parsed samples per item
    n_rows: np.ndarray  # rows (samples) per item, parsed or not

    def subset_items(self, rows: np.ndarray) -> LLMScores:
        return LLMScores(self.key, self.score[rows], self.label[rows], self.n_parsed[rows],
                         self.n_rows[rows])


def _row_score(llm: pd.DataFrame, use_weighted: bool) -> np.ndarray:
    """Per row the score that enters the item mean: NaN unless the row is usable (status ok, finite value)."""
    value = llm["value"].to_numpy(dtype=float)
    usable = llm["usable"].to_numpy(dtype=bool) if "usable" in llm.columns else (
        (llm["parse_status"] == "ok").to_numpy() & np.isfinite(value))
    if use_weighted:
        weighted = llm["weighted_value"].to_numpy(dtype=float)
        value = np.where(np.isnan(weighted), value, weighted)
    return np.where(usable, value, np.nan)


def modal_values(item_index: np.ndarray, values: np.ndarray, n_items: int) -> np.ndarray:
    """Most frequent value per item (ties: the value nearest the item's mean, then the smaller).

    ``item_index`` gives each value's item row; NaN values are ignored; items without values -> NaN.
    """
    keep = ~np.isnan(values)
    item_index, values = item_index[keep], values[keep]
    out = np.full(n_items, np.nan)
    if values.size == 0:
        return out
    domain, codes = np.unique(values, return_inverse=True)
    counts = np.zeros((n_items, domain.size))
    np.add.at(counts, (item_index, codes), 1.0)
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (counts @ domain) / total
    is_mode = (counts == counts.max(axis=1, keepdims=True)) & (counts > 0)
    distance = np.where(is_mode, np.abs(domain[None, :] - mean[:, None]), np.inf)
    best = np.argmin(distance, axis=1)
    has = total > 0
    out[has] = domain[best[has]]
    return out


def build_llm_scores(
    llm: pd.DataFrame, item_ids: list[str], use_weighted: bool = True
) -> dict[RaterKey, LLMScores]:
    """Per (model, template, persona) rater, the mean score per item over parsed samples."""
    llm = normalise_llm(llm)
    item_pos = pd.Index(item_ids)
    out: dict[RaterKey, LLMScores] = {}
    n = len(item_ids)
    score_all = _row_score(llm, use_weighted)
    rows_all = item_pos.get_indexer(pd.Index(llm["item_id"]))
    grouped = llm.groupby(["model", "template", "persona_key"], sort=True).indices
    for group_key, group_idx in grouped.items():
        model, template, persona = cast(tuple[object, object, object], group_key)   # grouped by three columns
        idx = np.asarray(group_idx)
        rows = rows_all[idx]
        keep = rows >= 0
        rows, idx = rows[keep], idx[keep]
        scores = score_all[idx]
        parsed = ~np.isnan(scores)
        sums = np.bincount(rows[parsed], weights=scores[parsed], minlength=n)
        n_parsed = np.bincount(rows[parsed], minlength=n).astype(float)
        n_rows = np.bincount(rows, minlength=n).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_parsed > 0, sums / np.maximum(n_parsed, 1), np.nan)
        label = modal_values(rows, np.where(llm["usable"].to_numpy(dtype=bool), llm["value"].to_numpy(dtype=float),
                                            np.nan)[idx], n)
        key = RaterKey(str(model), str(template), str(persona))
        out[key] = LLMScores(key, mean, label, n_parsed, n_rows)
    return out


@dataclass
class GroupDefinition:
    """Annotators of one attribute (or intersection) split into named groups.

    ``labels[j]`` is the group index of annotator j (column order of the `HumanMatrix`), `UNKNOWN` (-1)
    when the annotator's value is unknown and `UNTESTED` (-2) when it is known but its group is smaller
    than the minimum group size. Untested annotators belong to the "rest" of every tested group (the
    comparison is against everyone else with a known value); their groups are listed in ``too_small``
    so every group that is not tested is reported with its size and the reason."""

    attribute: str  # "gender" or "gender&race"
    group_names: list[str]  # slice strings: "gender=Woman", "gender=Woman&race=Black"
    labels: np.ndarray
    too_small: dict[str, int] = field(default_factory=dict)  # slice -> size, not tested
    min_group_size: int = 2

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    @property
    def known(self) -> np.ndarray:
        """Boolean per annotator: the attribute's value is known (tested group or too small)."""
        return np.asarray(self.labels != UNKNOWN, dtype=bool)

    @property
    def n_unknown(self) -> int:
        return int(np.sum(self.labels == UNKNOWN))

    def untested(self) -> list[dict[str, Any]]:
        """Every group of the attribute that gets no test, with its size and the reason."""
        return [{"group": name, "group_size": size,
                 "reason": f"{size} annotator{'s' if size != 1 else ''}, fewer than min_group_size="
                           f"{self.min_group_size}; counted in the rest of the other groups"}
                for name, size in sorted(self.too_small.items())]

    def members(self, g: int) -> np.ndarray:
        return np.flatnonzero(self.labels == g)


def _missing_attribute(value: Any) -> bool:
    if value is None:
        return True
    try:
        if pd.isna(value):   # NaN, NA, NaT
            return True
    except (TypeError, ValueError):
        pass
    return str(value).strip().lower() in MISSING_ATTRIBUTE_STRINGS


def _clean_attribute(series: pd.Series) -> pd.Series:
    """Attribute values as strings, None where unknown. Built as a list, not with ``Series.map``: pandas
    turns a returned None back into NaN, which would become a fake group named "nan"."""
    return pd.Series([None if _missing_attribute(v) else str(v) for v in series], index=series.index, dtype=object)


def build_groups(
    annotators: pd.DataFrame | None,
    annotator_ids: list[str],
    attributes: list[str] | None = None,
    intersections: bool = True,
    min_group_size: int = 2,
) -> list[GroupDefinition]:
    """Group definitions for each attribute column and (by default) each pair of attributes.

    ``attributes`` may name single columns ("gender") or intersections ("gender&race"); None means
    every attribute column plus, if ``intersections``, every pairwise intersection.
    """
    if annotators is None or len(annotators.columns) <= 1:
        return []
    _require_columns(annotators, ("annotator_id",), "annotators")
    frame = annotators.copy()
    frame["annotator_id"] = _id_column(frame, "annotator_id", "annotators")
    dupes = frame["annotator_id"].duplicated()
    if dupes.any():
        row = int(np.flatnonzero(dupes.to_numpy())[0])
        raise ValueError(
            f"annotators frame, column 'annotator_id', row {row}: duplicate id "
            f"{frame['annotator_id'].iloc[row]!r}"
        )
    frame = frame.set_index("annotator_id").reindex(annotator_ids)
    columns = [c for c in frame.columns]
    if attributes is None:
        specs: list[tuple[str, ...]] = [(c,) for c in columns]
        if intersections:
            specs += list(combinations(columns, 2))
    else:
        specs = [tuple(a.split("&")) for a in attributes]
        for spec in specs:
            for col in spec:
                if col not in frame.columns:
                    raise ValueError(
                        f"group attribute {col!r} is not a column of the annotators frame "
                        f"(columns: {columns})"
                    )
    cleaned = {c: _clean_attribute(frame[c]) for c in columns}
    out: list[GroupDefinition] = []
    for spec in specs:
        parts = [cleaned[c] for c in spec]
        names: list[str | None] = []
        for j in range(len(annotator_ids)):
            vals = [p.iloc[j] for p in parts]
            if any(v is None for v in vals):
                names.append(None)
            else:
                names.append("&".join(f"{c}={v}" for c, v in zip(spec, vals)))
        series = pd.Series(names, dtype=object)
        sizes = series.value_counts()
        big = sorted(str(s) for s, k in sizes.items() if k >= min_group_size)
        small = {str(s): int(k) for s, k in sizes.items() if k < min_group_size}
        code = {s: i for i, s in enumerate(big)}
        labels = np.array([code.get(n, UNTESTED) if n is not None else UNKNOWN for n in names], dtype=int)
        out.append(GroupDefinition("&".join(spec), big, labels, small, min_group_size))
    return out


def item_metadata(items: pd.DataFrame | None, item_ids: list[str]) -> pd.DataFrame:
    """``items`` reindexed to ``item_ids`` (missing items give NaN rows); empty frame if None."""
    if items is None:
        return pd.DataFrame(index=pd.Index(item_ids, name="item_id"))
    _require_columns(items, ("item_id",), "items")
    frame = items.copy()
    frame["item_id"] = _id_column(frame, "item_id", "items")
    frame = frame.drop_duplicates("item_id", keep="first").set_index("item_id")
    return frame.reindex(item_ids)


_POSITIVE = {"yes", "unsafe", "1", "1.0", "true", "positive", "harmful"}
_NEGATIVE = {"no", "safe", "0", "0.0", "false", "negative", "harmless"}


def binary_expert_labels(series: pd.Series) -> np.ndarray:
    """Map expert labels to 1 (Yes/unsafe/1/true) and 0 (No/safe/0/false); anything else -> NaN."""
    out = np.full(len(series), np.nan)
    for i, v in enumerate(series.tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        key = str(v).strip().lower()
        if key in _POSITIVE:
            out[i] = 1.0
        elif key in _NEGATIVE:
            out[i] = 0.0
    return out
