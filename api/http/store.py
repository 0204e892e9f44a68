"""Project-scoped reads of the database for the API and the dashboard.

Every function takes the caller's ``project_id`` and filters on it; a row of another project is reported
exactly like a row that does not exist (404), so ids of other projects cannot be probed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from accord.analysis.failure_kinds import failure_kind
from accord.api.http.problems import not_found
from accord.models.schema import (
    TERMINAL_RUN_STATUSES,
    Campaign,
    Dataset,
    Item,
    Rating,
    RatingRequest,
    Run,
)
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

TERMINAL = {s.value for s in TERMINAL_RUN_STATUSES}


def dataset_of(session: Session, project_id: int, dataset_id: int) -> Dataset:
    ds: Dataset | None = session.execute(select(Dataset).where(col(Dataset.id) == dataset_id, col(Dataset.project_id) == project_id)
                         ).scalar_one_or_none()
    if ds is None:
        raise not_found("dataset", dataset_id)
    return ds


def dataset_by_name(session: Session, project_id: int, name: str) -> Dataset | None:
    return session.execute(select(Dataset).where(col(Dataset.name) == name, col(Dataset.project_id) == project_id)
                           ).scalar_one_or_none()


def campaign_of(session: Session, project_id: int, campaign_id: int) -> Campaign:
    c: Campaign | None = session.execute(select(Campaign).where(col(Campaign.id) == campaign_id, col(Campaign.project_id) == project_id)
                        ).scalar_one_or_none()
    if c is None:
        raise not_found("campaign", campaign_id)
    return c


def run_of(session: Session, project_id: int, run_id: int) -> Run:
    r: Run | None = session.execute(select(Run).where(col(Run.id) == run_id, col(Run.project_id) == project_id)).scalar_one_or_none()
    if r is None:
        raise not_found("run", run_id)
    return r


def check_run(engine: Engine, project_id: int, run_id: int) -> Run:
    with Session(engine, expire_on_commit=False) as session:
        return run_of(session, project_id, run_id)


def runs_of_dataset(session: Session, dataset_id: int) -> int:
    return int(session.execute(select(func.count()).select_from(Run).join(Campaign, col(Campaign.id) == col(Run.campaign_id))
                               .where(col(Campaign.dataset_id) == dataset_id)).scalar_one())


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




def run_detail(engine: Engine, project_id: int, run_id: int) -> dict[str, Any]:
    with Session(engine, expire_on_commit=False) as session:
        run = run_of(session, project_id, run_id)
        campaign = session.get(Campaign, run.campaign_id)
        assert campaign is not None
        failed = session.execute(
            select(col(RatingRequest.last_error), func.count())
            .where(col(RatingRequest.run_id) == run_id, col(RatingRequest.status) == "failed")
            .group_by(RatingRequest.last_error).limit(1000)).all()
        outcomes = dict(session.execute(
            select(col(Rating.parse_status), func.count()).where(col(Rating.run_id) == run_id)
            .group_by(Rating.parse_status)).all())
    kinds: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for message, n in failed:
        kind = failure_kind(message)
        kinds[kind] += int(n)
        examples.setdefault(kind, (message or "")[:300])
    spec = campaign.spec or {}
    out = run_out(run, campaign)
    out["failures_by_kind"] = [{"kind": k, "count": n, "example": examples[k]} for k, n in kinds.most_common()]
    out["outcomes"] = {str(k): int(v) for k, v in outcomes.items()}
    out["models"] = [m.get("name", "") for m in spec.get("models", [])]
    out["templates"] = [t.get("name") or t.get("path", "") for t in spec.get("templates", [])]
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
