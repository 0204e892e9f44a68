"""Project-scoped reads of the database for the API and the dashboard.

Every function takes the caller's ``project_id`` and filters on it; a row of another project is reported
exactly like a row that does not exist (404), so ids of other projects cannot be probed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from accord.analysis.failure_kinds import failure_kind
from accord.api.http.problems import not_found
from accord.models.schema import (
    TERMINAL_RUN_STATUSES,
    Campaign,
    Dataset,
    HumanRating,
    Item,
    ModelSpec,
    Rating,
    RatingRequest,
    Run,
)
from accord.worker.rate_limiter import DEFAULT_HEADROOM
from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

TERMINAL = {s.value for s in TERMINAL_RUN_STATUSES}


Owned = TypeVar("Owned", Dataset, Campaign, Run)


def _owned(session: Session, table: type[Owned], kind: str, project_id: int, row_id: int) -> Owned:
    """The project's row ``row_id`` of ``table``; a 404 naming ``kind`` when there is none (or another
    project's)."""
    row: Owned | None = session.execute(select(table).where(col(table.id) == row_id,
                                                            col(table.project_id) == project_id)).scalar_one_or_none()
    if row is None:
        raise not_found(kind, row_id)
    return row


def dataset_of(session: Session, project_id: int, dataset_id: int) -> Dataset:
    return _owned(session, Dataset, "dataset", project_id, dataset_id)


def dataset_by_name(session: Session, project_id: int, name: str) -> Dataset | None:
    return session.execute(select(Dataset).where(col(Dataset.name) == name, col(Dataset.project_id) == project_id)
                           ).scalar_one_or_none()


def campaign_of(session: Session, project_id: int, campaign_id: int) -> Campaign:
    return _owned(session, Campaign, "campaign", project_id, campaign_id)


def run_of(session: Session, project_id: int, run_id: int) -> Run:
    return _owned(session, Run, "run", project_id, run_id)


def project_page(engine: Engine, table: Any, project_id: int, after: int | None, limit: int,
                 item: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """A cursor page of the project's rows of ``table`` by id: ``items`` (each through ``item``) and
    ``next_cursor`` (the last id when more rows follow, else None)."""
    q = select(table).where(table.project_id == project_id).order_by(table.id).limit(limit + 1)
    if after is not None:
        q = q.where(table.id > after)
    with Session(engine) as session:
        rows = session.execute(q).scalars().all()
    items = [item(row) for row in rows[:limit]]
    return {"items": items, "next_cursor": items[-1]["id"] if len(rows) > limit else None}


def check_run(engine: Engine, project_id: int, run_id: int) -> Run:
    with Session(engine, expire_on_commit=False) as session:
        return run_of(session, project_id, run_id)


def runs_of_dataset(session: Session, dataset_id: int) -> int:
    return int(session.execute(select(func.count()).select_from(Run).join(Campaign, col(Campaign.id) == col(Run.campaign_id))
                               .where(col(Campaign.dataset_id) == dataset_id)).scalar_one())


def ratings_per_item(engine: Engine, dataset_id: int, dimension: str | None) -> dict[int, int]:
    """How many items have each number of ratings (of ``dimension``; items without any count as 0)."""
    q = (select(col(Item.id), func.count(col(HumanRating.id)))
         .outerjoin(HumanRating,
                    (col(HumanRating.item_id) == Item.id) & (col(HumanRating.dimension) == dimension))
         .where(col(Item.dataset_id) == dataset_id).group_by(col(Item.id)))
    with engine.connect() as conn:
        counts = Counter(int(n) for _i, n in conn.execute(q).all())
    return dict(sorted(counts.items()))


def dataset_out(ds: Dataset) -> dict[str, Any]:
    return {"id": ds.id, "name": ds.name, "description": ds.description, "dimensions": list(ds.dimensions or []),
            "source": ds.source, "created_at": ds.created_at}


def item_out(item: Item) -> dict[str, Any]:
    return {"id": item.id, "external_id": item.external_id, "content": item.content or {}, "metadata": item.meta or {}}


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def run_out(run: Run, campaign: Campaign, now: datetime | None = None) -> dict[str, Any]:
    """A run's status with derived figures: fraction done, rate (requests per second since the start, cache
    hits at creation excluded), ETA."""
    now = now or datetime.now(UTC)
    finished = run.done + run.failed + run.cancelled
    remaining = max(run.total - finished, 0)
    started = _aware(run.started_at)
    end = _aware(run.finished_at) or now
    rate = eta = None
    if started is not None:
        elapsed = max((end - started).total_seconds(), 1e-3)
        worked = max(finished - run.cached, 0)
        rate = round(worked / elapsed, 3)
        if run.status not in TERMINAL and rate > 0:
            eta = round(remaining / rate, 1)
    return {
        "id": run.id, "campaign_id": run.campaign_id, "campaign": campaign.name, "dataset_id": campaign.dataset_id,
        "status": run.status, "mode": run.mode, "total": run.total, "done": run.done, "failed": run.failed,
        "cached": run.cached, "cancelled": run.cancelled, "remaining": remaining,
        "fraction_done": round(finished / run.total, 4) if run.total else 1.0,
        "rate_per_s": rate, "eta_s": eta, "cost_usd": round(run.cost_usd, 6), "budget_usd": run.budget_usd,
        "input_tokens": run.input_tokens, "output_tokens": run.output_tokens, "error": run.error,
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
        "postprocessed_at": run.postprocessed_at,
        "report_ready": run.postprocessed_at is not None and run.status in TERMINAL,
    }




RECENT_S = 60.0   # the window of a model's current pace


def _failure_kinds(rows: list[tuple[str | None, int]]) -> list[dict[str, Any]]:
    kinds: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for message, n in rows:
        kind = failure_kind(message)
        kinds[kind] += int(n)
        examples.setdefault(kind, (message or "")[:300])
    return [{"kind": k, "count": n, "example": examples[k]} for k, n in kinds.most_common()]


def model_progress(session: Session, run: Run, failed: list[tuple[int, str | None, int]],
                   now: datetime) -> list[dict[str, Any]]:
    """Per model of the run: requests by status, cache hits, cost, calls in the last minute against the model's
    rpm limit and the pace the limiter keeps (98.5% of it), ETA at the current pace, failures by kind."""
    counts = session.execute(
        select(col(RatingRequest.model_spec_id), col(RatingRequest.status), func.count())
        .where(col(RatingRequest.run_id) == run.id)
        .group_by(col(RatingRequest.model_spec_id), col(RatingRequest.status))).all()
    since = now - timedelta(seconds=RECENT_S)
    rated = session.execute(
        select(col(RatingRequest.model_spec_id), func.coalesce(func.sum(col(Rating.cost_usd)), 0.0),
               func.coalesce(func.sum(case((col(Rating.cache_hit), 1), else_=0)), 0),
               func.coalesce(func.sum(case(((col(Rating.created_at) >= since) & ~col(Rating.cache_hit), 1),
                                           else_=0)), 0))
        .join(Rating, col(Rating.request_id) == RatingRequest.id)
        .where(col(Rating.run_id) == run.id).group_by(col(RatingRequest.model_spec_id))).all()
    spec_ids = {int(r[0]) for r in counts}
    specs = {s.id: s for s in session.execute(select(ModelSpec).where(col(ModelSpec.id).in_(spec_ids))
                                              ).scalars().all()} if spec_ids else {}
    out: dict[int, dict[str, Any]] = {}
    for spec_id in sorted(spec_ids, key=lambda i: (specs[i].name if i in specs else "", i)):
        spec = specs.get(spec_id)
        rpm = spec.rpm if spec else None
        out[spec_id] = {"model": spec.name if spec else str(spec_id), "model_spec_id": spec_id,
                        "provider": spec.provider if spec else "",
                        "rpm_limit": rpm, "tpm_limit": spec.tpm if spec else None,
                        "paced_rpm": round(rpm * DEFAULT_HEADROOM, 2) if rpm else None,
                        "total": 0, "done": 0, "failed": 0, "cancelled": 0, "remaining": 0, "cached": 0,
                        "cost_usd": 0.0, "calls_last_minute": 0, "eta_s": None, "failures_by_kind": []}
    for spec_id, st, n in counts:
        row = out[int(spec_id)]
        row["total"] += int(n)
        if st in ("done", "failed", "cancelled"):
            row[st] += int(n)
        else:
            row["remaining"] += int(n)
    for spec_id, cost, cached, recent in rated:
        found = out.get(int(spec_id))
        if found is not None:
            found.update(cost_usd=round(float(cost), 6), cached=int(cached), calls_last_minute=int(recent))
    by_model: dict[int, list[tuple[str | None, int]]] = {}
    for spec_id, message, n in failed:
        by_model.setdefault(int(spec_id), []).append((message, int(n)))
    for spec_id, row in out.items():
        row["failures_by_kind"] = _failure_kinds(by_model.get(spec_id, []))
        if run.status not in TERMINAL and row["remaining"] and row["calls_last_minute"]:
            row["eta_s"] = round(row["remaining"] / (row["calls_last_minute"] / RECENT_S), 1)
    return list(out.values())


def run_header(engine: Engine, project_id: int, run_id: int) -> dict[str, Any]:
    """What a page about a run names in its title: id, campaign, status (one query)."""
    with Session(engine) as session:
        row = session.execute(select(col(Run.id), col(Run.status), col(Run.campaign_id), col(Campaign.name))
                              .join(Campaign, col(Campaign.id) == Run.campaign_id)
                              .where(col(Run.id) == run_id, col(Run.project_id) == project_id)).first()
    if row is None:
        raise not_found("run", run_id)
    return {"id": row[0], "status": row[1], "campaign_id": row[2], "campaign": row[3]}


def run_detail(engine: Engine, project_id: int, run_id: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session:
        run = run_of(session, project_id, run_id)
        campaign = session.get(Campaign, run.campaign_id)
        assert campaign is not None
        failed = [(int(m), e, int(n)) for m, e, n in session.execute(
            select(col(RatingRequest.model_spec_id), col(RatingRequest.last_error), func.count())
            .where(col(RatingRequest.run_id) == run_id, col(RatingRequest.status) == "failed")
            .group_by(col(RatingRequest.model_spec_id), col(RatingRequest.last_error)).limit(1000)).all()]
        outcomes = dict(session.execute(
            select(col(Rating.parse_status), func.count()).where(col(Rating.run_id) == run_id)
            .group_by(Rating.parse_status)).all())
        per_model = model_progress(session, run, failed, now)
    spec = campaign.spec or {}
    out = run_out(run, campaign, now)
    out["failures_by_kind"] = _failure_kinds([(e, n) for _m, e, n in failed])
    out["outcomes"] = {str(k): int(v) for k, v in outcomes.items()}
    out["models"] = [m.get("name", "") for m in spec.get("models", [])]
    out["templates"] = [t.get("name") or t.get("path", "") for t in spec.get("templates", [])]
    out["per_model"] = per_model
    return out


def list_runs(engine: Engine, project_id: int, *, after: int | None = None, limit: int = 50,
              status: str | None = None, campaign_id: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; ``after`` is the last id of the previous page."""
    q = (select(Run, Campaign).join(Campaign, col(Campaign.id) == col(Run.campaign_id))
         .where(col(Run.project_id) == project_id).order_by(col(Run.id).desc()).limit(limit + 1))
    if after is not None:
        q = q.where(col(Run.id) < after)
    if status is not None:
        q = q.where(col(Run.status) == status)
    if campaign_id is not None:
        q = q.where(col(Run.campaign_id) == campaign_id)
    with Session(engine, expire_on_commit=False) as session:
        rows = session.execute(q).all()
    now = datetime.now(UTC)
    items = [run_out(r, c, now) for r, c in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None)
