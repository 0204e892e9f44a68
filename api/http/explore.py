"""Project-scoped reads behind the item explorer, the comparison and the dataset description: the JSON routes
(routes_explore.py) and the dashboard pages call these same functions, so a page shows the API's numbers.

A run's frames are kept in a small cache keyed by the run's progress (a finished run's frames never change),
so paging through the items of a run does not reload its ratings on every page."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import pandas as pd
from accord.analysis.describe import DescribeOptions
from accord.analysis.item_disagreement import attributes_of, item_disagreements, item_histograms
from accord.api.http.problems import invalid, not_found
from accord.api.http.store import TERMINAL, dataset_of, item_out, list_runs, run_of
from accord.models.import_spec import META_ROLES
from accord.models.item_results import find_item, item_answers, item_ratings
from accord.models.run_frames import (
    DatasetFramesError,
    RunFrames,
    load_llm_frame,
    load_run_frames,
    with_imported_raters,
)
from accord.models.schema import Campaign, Dataset, Run
from accord.report.dataset_description import describe_dataset
from accord.report.run_matrix import metric_matrix, run_diff
from sqlalchemy.engine import Engine
from sqlmodel import Session

SORT_KEYS = ["abs_disagreement", "disagreement", "group_gap", "human_mean", "llm_mean", "n_human", "n_llm",
             "item_id"]
MAX_PER_PAGE = 200
MAX_COMPARED_RUNS = 12
MAX_HISTOGRAM_VALUES = 15
LIVE_RELOAD_S = 1.0
ROLE_COLUMNS = ["category", *(r for r in META_ROLES if r != "category")]


@dataclass
class ItemQuery:
    """The item explorer's filters, sort and page (all in the URL)."""
    sort: str = "abs_disagreement"     # a SORT_KEYS entry or meta.<column>
    order: Literal["asc", "desc"] = "desc"
    model: str | None = None
    template: str | None = None
    attribute: str | None = None       # group gap over this attribute (None: the largest over every attribute)
    meta: dict[str, str] = field(default_factory=dict)   # metadata column -> required value
    min_disagreement: float | None = None
    min_gap: float | None = None       # only items whose group gap is at least this
    page: int = 1
    per_page: int = 50

    def params(self, **changes: Any) -> dict[str, str]:
        """The query as URL parameters (for links that change one thing and keep the rest)."""
        values: dict[str, Any] = {"sort": self.sort, "order": self.order, "model": self.model,
                                  "template": self.template, "attribute": self.attribute,
                                  "min_disagreement": self.min_disagreement, "min_gap": self.min_gap,
                                  "page": self.page,
                                  "per_page": self.per_page}
        values.update({f"meta.{k}": v for k, v in self.meta.items()})
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v is not None and v != ""}


def parse_item_query(params: Any) -> ItemQuery:
    """The query from URL parameters; a bad value is a 422 naming the parameter."""
    def number(name: str, kind: type, low: float, high: float, default: Any) -> Any:
        raw = params.get(name)
        if raw in (None, ""):
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise invalid(f"{name}: expected a number, got {str(raw)[:40]!r}", field=name) from None
        if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
            raise invalid(f"{name}: expected {low:g}..{high:g}, got {str(raw)[:40]!r}", field=name)
        return value

    sort = params.get("sort") or "abs_disagreement"
    if sort not in SORT_KEYS and not (sort.startswith("meta.") and len(sort) > 5):
        raise invalid(f"sort: expected one of {', '.join(SORT_KEYS)} or meta.<column>, got {sort[:60]!r}",
                      field="sort")
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise invalid(f"order: expected asc or desc, got {order[:20]!r}", field="order")
    meta = {k[5:]: str(v) for k, v in params.items() if k.startswith("meta.") and len(k) > 5 and v != ""}
    text = {k: (params.get(k) or None) for k in ("model", "template", "attribute")}
    for name, value in [*text.items(), *meta.items()]:
        if value is not None and len(value) > 500:
            raise invalid(f"{name}: longer than 500 characters", field=name)
    return ItemQuery(sort=sort, order=order, meta=meta,  # type: ignore[arg-type]  # order checked against asc/desc above
                     min_disagreement=number("min_disagreement", float, 0, 1e9, None),
                     min_gap=number("min_gap", float, 0, 1e9, None),
                     page=number("page", int, 1, 10**9, 1), per_page=number("per_page", int, 1, MAX_PER_PAGE, 50),
                     **text)


class FramesCache:
    """A run's frames. The people's side (ratings, annotators, items of the run) is loaded once per run: a run's
    items are fixed when it is created. The LLM side is reloaded when the run's progress moved (for a run in
    progress, at most every ``LIVE_RELOAD_S``: its pages may be that far behind)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._data: OrderedDict[tuple[Any, ...], RunFrames] = OrderedDict()
        self._static: OrderedDict[tuple[Any, ...], tuple[RunFrames, int, str | None]] = OrderedDict()
        self._live: OrderedDict[tuple[Any, ...], tuple[RunFrames, float]] = OrderedDict()
        self._tables: OrderedDict[tuple[Any, ...], tuple[RunFrames, pd.DataFrame]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _put(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any, size: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > size:
            cache.popitem(last=False)

    def get(self, engine: Engine, run: Run, now: float | None = None) -> RunFrames:
        """``now`` (monotonic seconds): a run in progress is reloaded at most every ``LIVE_RELOAD_S``."""
        assert run.id is not None
        now = time.monotonic() if now is None else now
        static_key = (id(engine), str(engine.url), run.id, run.total)
        key = (*static_key, run.status, run.done, run.failed, run.cancelled, run.postprocessed_at)
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                return hit
            live = self._live.get(static_key)
            if live is not None and run.status not in TERMINAL and now - live[1] < LIVE_RELOAD_S:
                return live[0]
            static = self._static.get(static_key)
        if static is None:
            frames = load_run_frames(engine, run.id)
            with Session(engine) as session:
                campaign = session.get(Campaign, run.campaign_id)
                assert campaign is not None
                static = (frames, campaign.dataset_id, frames.dimension)
        else:
            base, dataset_id, dimension = static
            llm = load_llm_frame(engine, run.id, with_value_probs=True)
            llm = with_imported_raters(engine, llm, dataset_id, dimension, set(llm["item_id"]))
            frames = replace(base, llm=llm)
        with self._lock:
            self._put(self._static, static_key, static, self.size)
            self._put(self._data, key, frames, self.size)
            self._put(self._live, static_key, (frames, now), self.size)
        return frames

    def table(self, frames: RunFrames, attribute: str | None, model: str | None,
              template: str | None) -> pd.DataFrame:
        """The items' disagreement table of these frames (kept with them: frames never change once loaded)."""
        key = (id(frames), attribute, model, template)
        with self._lock:
            hit = self._tables.get(key)
            if hit is not None and hit[0] is frames:
                return hit[1]
        table = item_disagreements(frames.human, frames.llm, frames.annotators, attribute=attribute, model=model,
                                   template=template)
        with self._lock:
            self._put(self._tables, key, (frames, table), self.size * 4)
        return table


FRAMES = FramesCache()


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        return _clean(x.item())
    return x


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = cast(list[dict[str, Any]], frame.to_dict(orient="records"))   # columns named by strings
    return [{k: _clean(v) for k, v in row.items()} for row in rows]


def _run_and_frames(engine: Engine, project_id: int, run_id: int) -> tuple[Run, RunFrames]:
    with Session(engine, expire_on_commit=False) as session:
        run = run_of(session, project_id, run_id)
    return run, FRAMES.get(engine, run)


def run_items(engine: Engine, project_id: int, run_id: int, query: ItemQuery) -> dict[str, Any]:
    """One page of the run's items with their disagreement and group gap, filtered and sorted by ``query``."""
    _run, frames = _run_and_frames(engine, project_id, run_id)
    attributes = attributes_of(frames.annotators)
    if query.attribute is not None and query.attribute not in attributes:
        raise invalid(f"attribute: {query.attribute[:60]!r} is not an annotator attribute of this dataset "
                      f"(it has: {', '.join(attributes) or 'none'})", field="attribute")
    table = FRAMES.table(frames, query.attribute, query.model, query.template).copy()
    # the metadata roles that drive analyses first (category, expert label, subject model), then the rest
    columns = [c for c in frames.items.columns if c != "item_id"]
    meta_columns = [c for c in ROLE_COLUMNS if c in columns] + [c for c in columns if c not in ROLE_COLUMNS]
    meta = frames.items.set_index("item_id") if meta_columns else None
    for column in meta_columns:
        table[f"meta.{column}"] = table["item_id"].map(meta[column]) if meta is not None else None
    for column, value in query.meta.items():
        if column not in meta_columns:
            raise invalid(f"meta.{column[:60]}: no such item metadata column (the items have: "
                          f"{', '.join(meta_columns) or 'none'})", field=f"meta.{column}")
        table = table[table[f"meta.{column}"].astype(str) == value]
    if query.min_disagreement is not None:
        table = table[table["abs_disagreement"] >= query.min_disagreement]
    if query.min_gap is not None:
        table = table[table["group_gap"] >= query.min_gap]
    if query.sort.startswith("meta.") and query.sort not in table.columns:
        raise invalid(f"sort: no item metadata column {query.sort[5:65]!r}", field="sort")
    ascending = query.order == "asc"
    key = table[query.sort]
    if query.sort.startswith("meta."):
        numeric = pd.to_numeric(key, errors="coerce")
        key = numeric if numeric.notna().sum() == key.notna().sum() else key.astype(str).where(key.notna())
    order = key.sort_values(ascending=ascending, na_position="last", kind="stable").index
    table = table.loc[order]
    total = len(table)
    start = (query.page - 1) * query.per_page
    page = table.iloc[start:start + query.per_page]
    rows = []
    for rec in _records(page):
        rec["metadata"] = {c: rec.pop(f"meta.{c}") for c in meta_columns}
        rows.append(rec)
    llm = frames.llm
    return {
        "run_id": run_id, "total": total, "page": query.page, "per_page": query.per_page,
        "pages": max(1, math.ceil(total / query.per_page)), "sort": query.sort, "order": query.order,
        "filters": {"model": query.model, "template": query.template, "attribute": query.attribute,
                    "meta": query.meta, "min_disagreement": query.min_disagreement, "min_gap": query.min_gap},
        "attributes": attributes, "meta_columns": meta_columns,
        "meta_values": {c: sorted({str(v) for v in frames.items[c].dropna()})[:50] for c in meta_columns},
        "models": sorted(set(llm["model"])) if not llm.empty else [],
        "templates": sorted(set(llm["template"])) if not llm.empty else [],
        "items": rows,
    }


def run_item(engine: Engine, project_id: int, run_id: int, item_id: str) -> dict[str, Any]:
    """One item of the run: its content and metadata, the people's ratings (histograms overall and per group),
    every rating request of the run with its answer, and the subjects' answers with their judgments."""
    run, frames = _run_and_frames(engine, project_id, run_id)
    with Session(engine) as session:
        campaign = session.get(Campaign, run.campaign_id)
        assert campaign is not None
        dataset = session.get(Dataset, campaign.dataset_id)
        assert dataset is not None
        labels = (dataset.label_map or {}).get(frames.dimension or "", {}) if frames.dimension else {}
    item = find_item(engine, campaign.dataset_id, item_id)
    if item is None:
        raise not_found("item", repr(item_id[:200]))
    assert item.id is not None
    domain = sorted({float(v) for v in labels.values() if isinstance(v, (int, float))}) if isinstance(
        labels, dict) else []
    if not domain:   # no label map: the values the people used on this dimension, when they are few
        observed = sorted(set(frames.human["value"].dropna().astype(float)))
        domain = observed if len(observed) <= MAX_HISTOGRAM_VALUES else []
    ratings = item_ratings(engine, run_id, item.id)
    answers = item_answers(engine, run_id, item.id)
    if not ratings and not answers and item_id not in set(frames.llm["item_id"]):
        raise not_found("item", f"{item_id[:200]!r} in run {run_id}")
    own_llm = frames.llm[frames.llm["item_id"] == item_id] if not frames.llm.empty else frames.llm
    table = item_disagreements(frames.human[frames.human["item_id"] == item_id], own_llm, frames.annotators)
    summary = _records(table[table["item_id"] == item_id])
    for row in summary:
        row["metadata"] = dict(item.meta or {})
    return {"run_id": run_id, "dimension": frames.dimension, **item_out(item),
            "summary": summary[0] if summary else None,
            "human": item_histograms(frames.human, frames.annotators, item_id, domain or None),
            "ratings": [{k: _clean(v) for k, v in r.items()} for r in ratings],
            "answers": answers}


def campaign_run_ids(engine: Engine, project_id: int, run_id: int) -> list[int]:
    """The runs of the run's campaign (oldest first), in this project."""
    with Session(engine) as session:
        run = run_of(session, project_id, run_id)
    runs, _ = list_runs(engine, project_id, campaign_id=run.campaign_id, limit=MAX_COMPARED_RUNS)
    return sorted(r["id"] for r in runs)


def comparison(engine: Engine, project_id: int, run_ids: list[int]) -> dict[str, Any]:
    """The headline metrics of these runs (all of this project) as a models x templates (x subject) matrix."""
    if not run_ids:
        raise invalid("runs: give at least one run id", field="runs")
    if len(run_ids) > MAX_COMPARED_RUNS:
        raise invalid(f"runs: at most {MAX_COMPARED_RUNS} runs at once", field="runs")
    with Session(engine) as session:
        names = {}
        for rid in run_ids:
            run = run_of(session, project_id, rid)
            campaign = session.get(Campaign, run.campaign_id)
            names[rid] = {"id": rid, "campaign": campaign.name if campaign else "", "status": run.status,
                          "report_ready": run.postprocessed_at is not None}
    out = metric_matrix(engine, run_ids)
    out["runs"] = [names[r] for r in run_ids]
    return out


def run_comparison(engine: Engine, project_id: int, run_id: int, runs: str | None) -> dict[str, Any]:
    """The ``comparison`` of the runs ``runs`` names (ids separated by commas), by default of every run of
    ``run_id``'s campaign: what the comparison route and the dashboard's compare page show."""
    return comparison(engine, project_id, parse_run_ids(runs) or campaign_run_ids(engine, project_id, run_id))


def parse_run_ids(text: str | None) -> list[int]:
    if not text:
        return []
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 2**62:
            raise invalid(f"runs: expected run ids separated by commas, got {part[:40]!r}", field="runs")
        if int(part) not in out:
            out.append(int(part))
    return out


def compare_two(engine: Engine, project_id: int, run_a: int, run_b: int) -> dict[str, Any]:
    """What changed from run A to run B: metric deltas and the items whose ratings moved most."""
    with Session(engine) as session:
        run_of(session, project_id, run_a)
        run_of(session, project_id, run_b)
    return run_diff(engine, run_a, run_b)


class DescriptionCache:
    """Datasets do not change once imported: their description is computed once per (dataset, dimension)."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._data: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple[Any, ...], threading.Lock] = {}

    def get(self, engine: Engine, project_id: int, dataset_id: int, dimension: str | None) -> dict[str, Any]:
        with Session(engine) as session:
            ds = dataset_of(session, project_id, dataset_id)
            key = (id(engine), str(engine.url), dataset_id, ds.created_at, dimension)
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                return hit
            build = self._building.setdefault(key, threading.Lock())
        with build:
            with self._lock:
                if key in self._data:
                    return self._data[key]
            try:
                data = describe_dataset(engine, dataset_id, dimension, DescribeOptions(), project_id=project_id)
            except (DatasetFramesError, ValueError) as err:
                message = str(err.args[0]).replace("--dimension", "dimension")
                raise invalid(message, field="dimension") from None
            finally:
                with self._lock:
                    self._building.pop(key, None)
            data["dataset"] = dataset_id
            with self._lock:
                self._data[key] = data
                while len(self._data) > self.size:
                    self._data.popitem(last=False)
            return data


DESCRIPTIONS = DescriptionCache()
