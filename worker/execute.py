"""Execute a chunk of rating requests: render, call the provider, parse, store. Idempotent.

This is the single execution path: the embedded scheduler awaits it in-process, the Celery task runs it
in a worker. Guarantees:
- a request that already has its Rating (or is failed/cancelled) is skipped, so a re-delivered chunk is
  harmless;
- the Rating insert and the request's status change happen in one transaction; the unique
  ``rating.request_id`` makes a concurrent duplicate fail cleanly, so no rating is ever stored twice;
- per-request failures are recorded on the request (attempts, last error) and never abort the chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from accord.models.schema import (
    Campaign, Item, ModelSpec, PromptTemplate, Rating, RatingRequest, RequestStatus, Run, RunStatus, utcnow,
)
from accord.worker.decoding import request_decoding
from accord.worker.parsing import expected_value, parse_answer
from accord.worker.prompt_templates import ResolvedTemplate, render_messages
from accord.worker.provider_pool import ProviderPool
from accord.worker.providers.base import ProviderError, ProviderRequest, ProviderResponse

log = logging.getLogger("accord.worker")

ACTIVE_REQUEST_STATUSES = (RequestStatus.pending.value, RequestStatus.queued.value)


class RateLimiter(Protocol):
    """Admission control in front of a provider (the distributed mode's shared Redis limiter)."""

    async def acquire(self, spec: ModelSpec, estimated_tokens: int) -> None: ...

    def observe(self, spec: ModelSpec, *, response: ProviderResponse | None = None,
                error: ProviderError | None = None, estimated_tokens: int = 0) -> None: ...


class HotCache(Protocol):
    """A fast tier in front of the Rating table (Redis in distributed mode)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, rating: dict[str, Any]) -> None: ...


@dataclass
class ExecutionContext:
    engine: Engine
    providers: ProviderPool
    limiter: RateLimiter | None = None
    hot_cache: HotCache | None = None
    max_attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    on_rating: Callable[[int, str], None] | None = None   # (run_id, outcome) for metrics / progress


@dataclass
class ChunkOutcome:
    done: int = 0
    cached: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    cost_usd: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Job:
    request: RatingRequest
    content: dict[str, Any]
    spec: ModelSpec
    template: ResolvedTemplate
    template_hash: str
    cache_mode: Any   # True, False or "refresh"
    params: dict[str, Any]   # decoding params of this call (the ones its cache key was computed from)


# Fields copied from an original rating into a cache hit.
_CACHED_FIELDS = ("raw_text", "label", "value", "weighted_value", "label_probs", "rationale", "parse_status",
                  "finish_reason", "model_snapshot", "template_hash", "decoding", "input_tokens", "output_tokens")


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int | None) -> int:
    """Conservative token estimate before a call: ~1 token per 3.5 characters plus framing, plus the output cap."""
    chars = sum(len(m["content"]) for m in messages)
    return int(chars / 3.5) + 8 * len(messages) + int(max_tokens or 16)


def _load_jobs(session: Session, request_ids: list[int]) -> tuple[list[_Job], int]:
    rows = session.execute(
        select(RatingRequest, Item.content, ModelSpec, PromptTemplate, Campaign.spec)
        .join(Item, Item.id == RatingRequest.item_id)
        .join(ModelSpec, ModelSpec.id == RatingRequest.model_spec_id)
        .join(PromptTemplate, PromptTemplate.id == RatingRequest.template_id)
        .join(Run, Run.id == RatingRequest.run_id)
        .join(Campaign, Campaign.id == Run.campaign_id)
        .where(RatingRequest.id.in_(request_ids))  # type: ignore[union-attr]
        .order_by(RatingRequest.id)
    ).all()
    jobs, skipped = [], 0
    templates: dict[int, ResolvedTemplate] = {}
    for req, content, spec, trow, campaign_spec in rows:
        if req.status not in ACTIVE_REQUEST_STATUSES:
            skipped += 1
            continue
        if trow.id not in templates:
            templates[trow.id] = ResolvedTemplate.from_row(trow.name, trow.version, trow.response_format,
                                                           trow.system, trow.user, trow.output_spec)
        tmpl = templates[trow.id]
        params = request_decoding(campaign_spec.get("decoding") or {}, (spec.params or {}).get("decoding"),
                                  tmpl.max_tokens, req.sample_index)
        jobs.append(_Job(req, content, spec, tmpl, trow.content_hash, campaign_spec.get("cache", True), params))
    skipped += len(request_ids) - len(rows)
    return jobs, skipped


def _run_state(engine: Engine, run_id: int) -> tuple[str, float, float | None]:
    with engine.connect() as conn:
        row = conn.execute(select(Run.status, Run.cost_usd, Run.budget_usd).where(Run.id == run_id)).one()
    return row[0], float(row[1] or 0.0), row[2]


def _cost(spec: ModelSpec, input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * spec.price_input_per_mtok + output_tokens * spec.price_output_per_mtok) / 1e6


def _lookup_cache(ctx: ExecutionContext, session: Session, key: str) -> dict[str, Any] | None:
    if ctx.hot_cache is not None:
        hit = ctx.hot_cache.get(key)
        if hit is not None:
            return hit
    src = session.execute(
        select(Rating).where(Rating.cache_key == key, Rating.cache_hit.is_(False)).order_by(Rating.id).limit(1)  # type: ignore[union-attr]
    ).scalar_one_or_none()
    if src is None:
        return None
    found = {f: getattr(src, f) for f in _CACHED_FIELDS}
    found["source_rating_id"] = src.id
    if ctx.hot_cache is not None:
        ctx.hot_cache.put(key, found)
    return found


def _store(ctx: ExecutionContext, job: _Job, fields: dict[str, Any], *, cache_hit: bool, attempts: int) -> bool:
    """Insert the rating and mark the request done, atomically. False if it was stored already."""
    req = job.request
    rating = Rating(request_id=req.id, run_id=req.run_id, cache_key=req.cache_key, cache_hit=cache_hit,  # type: ignore[arg-type]
                    **fields)
    try:
        with Session(ctx.engine, expire_on_commit=False) as session:
            session.add(rating)
            session.flush()
            session.execute(update(RatingRequest).where(RatingRequest.id == req.id).values(  # type: ignore[arg-type]
                status=RequestStatus.done.value, attempts=attempts, last_error=None, updated_at=utcnow()))
            session.execute(
                text("UPDATE run SET done = done + 1, cached = cached + :c, cost_usd = cost_usd + :cost, "
                     "input_tokens = input_tokens + :it, output_tokens = output_tokens + :ot WHERE id = :id"),
                {"c": int(cache_hit), "cost": rating.cost_usd, "it": 0 if cache_hit else rating.input_tokens,
                 "ot": 0 if cache_hit else rating.output_tokens, "id": req.run_id})
            session.commit()
    except IntegrityError:
        return False
    if not cache_hit and ctx.hot_cache is not None:
        ctx.hot_cache.put(req.cache_key, {**{f: getattr(rating, f) for f in _CACHED_FIELDS}, "source_rating_id": rating.id})
    return True


def _finish_request(engine: Engine, req: RatingRequest, status: str, error: str | None, attempts: int) -> bool:
    """Mark a request failed or cancelled (once); bump the run's counter when this call changed it."""
    counter = "failed" if status == RequestStatus.failed.value else "cancelled"
    with Session(engine) as session:
        result = session.execute(
            update(RatingRequest)
            .where(RatingRequest.id == req.id, RatingRequest.status.in_(ACTIVE_REQUEST_STATUSES))  # type: ignore[arg-type,attr-defined]
            .values(status=status, last_error=(error or "")[:2000], attempts=attempts, updated_at=utcnow()))
        changed = bool(result.rowcount)
        if changed:
            session.execute(text(f"UPDATE run SET {counter} = {counter} + 1 WHERE id = :id"), {"id": req.run_id})
        session.commit()
    return changed


def _wait(ctx: ExecutionContext) -> Callable[[RetryCallState], float]:
    expo = wait_exponential_jitter(initial=ctx.backoff_initial, max=ctx.backoff_max)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), 120.0)
        return expo(state)

    return wait


async def _call_provider(ctx: ExecutionContext, job: _Job, messages: list[dict[str, str]],
                         attempts: list[int]) -> ProviderResponse:
    provider = ctx.providers.get(job.spec)
    tmpl = job.template
    params = job.params
    request = ProviderRequest(messages=messages, params=params, labels=list(tmpl.labels),
                              want_logprobs=tmpl.logprobs and bool(tmpl.labels), sample_index=job.request.sample_index,
                              structured=bool(tmpl.labels), rationale=tmpl.rationale)
    est = estimate_tokens(messages, params.get("max_tokens"))
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
        stop=stop_after_attempt(ctx.max_attempts), wait=_wait(ctx), reraise=True,
    ):
        with attempt:
            attempts[0] += 1
            if ctx.limiter is not None:
                await ctx.limiter.acquire(job.spec, est)
            async with ctx.providers.slot(job.spec):
                started = time.perf_counter()
                try:
                    response = await provider.complete(request)
                except ProviderError as err:
                    if ctx.limiter is not None:
                        ctx.limiter.observe(job.spec, error=err, estimated_tokens=est)
                    raise
                response.latency_ms = response.latency_ms or (time.perf_counter() - started) * 1000
            if ctx.limiter is not None:
                ctx.limiter.observe(job.spec, response=response, estimated_tokens=est)
    return response


async def _execute_one(ctx: ExecutionContext, job: _Job, outcome: ChunkOutcome) -> None:
    req = job.request
    status, spent, budget = _run_state(ctx.engine, req.run_id)
    if status in (RunStatus.cancelled.value, RunStatus.budget_exhausted.value):
        if _finish_request(ctx.engine, req, RequestStatus.cancelled.value, f"run {status}", req.attempts):
            outcome.cancelled += 1
        return
    if status == RunStatus.paused.value:
        outcome.skipped += 1   # left active; the scheduler hands it out again on resume
        return
    if job.cache_mode is True:
        with Session(ctx.engine) as session:
            hit = _lookup_cache(ctx, session, req.cache_key)
        if hit is not None:
            fields = {k: hit[k] for k in _CACHED_FIELDS}
            if _store(ctx, job, {**fields, "source_rating_id": hit.get("source_rating_id"), "cost_usd": 0.0,
                                 "latency_ms": 0.0}, cache_hit=True, attempts=req.attempts):
                outcome.done += 1
                outcome.cached += 1
                _notify(ctx, req.run_id, "cached")
            else:
                outcome.skipped += 1
            return
    messages = render_messages(job.template, job.content, req.persona or None)
    params = job.params
    if budget is not None:
        est_cost = _cost(job.spec, estimate_tokens(messages, 0), int(params.get("max_tokens") or 16))
        if spent + est_cost > budget:
            with Session(ctx.engine) as session:
                session.execute(update(Run).where(Run.id == req.run_id, Run.status == RunStatus.running.value)  # type: ignore[arg-type]
                                .values(status=RunStatus.budget_exhausted.value))
                session.commit()
            if _finish_request(ctx.engine, req, RequestStatus.cancelled.value, "budget exhausted", req.attempts):
                outcome.cancelled += 1
            return
    attempts = [req.attempts]
    try:
        response = await _call_provider(ctx, job, messages, attempts)
    except ProviderError as err:
        msg = str(err) if (err.status is None or f"HTTP {err.status}" in str(err)) else f"HTTP {err.status}: {err}"
        if _finish_request(ctx.engine, req, RequestStatus.failed.value, msg, attempts[0]):
            outcome.failed += 1
            outcome.errors.append(msg)
            _notify(ctx, req.run_id, "failed")
        return
    except Exception as err:  # a bug or an unexpected library error: record it on the request, keep going
        log.exception("request %s failed unexpectedly", req.id)
        msg = f"{type(err).__name__}: {err}"
        if _finish_request(ctx.engine, req, RequestStatus.failed.value, msg, attempts[0]):
            outcome.failed += 1
            outcome.errors.append(msg)
        return
    tmpl = job.template
    parsed = parse_answer(response.text, tmpl.labels, finish_reason=response.finish_reason, pattern=tmpl.pattern)
    probs, weighted = (None, None)
    if response.label_logprobs:
        probs, weighted = expected_value(response.label_logprobs, tmpl.labels)
    cost = _cost(job.spec, response.input_tokens, response.output_tokens)
    fields = {
        "raw_text": response.text, "label": parsed.label, "value": parsed.value, "weighted_value": weighted,
        "label_probs": probs, "rationale": parsed.rationale, "parse_status": parsed.status,
        "finish_reason": response.finish_reason, "model_snapshot": response.model_snapshot,
        "template_hash": job.template_hash, "decoding": params, "input_tokens": response.input_tokens,
        "output_tokens": response.output_tokens, "latency_ms": response.latency_ms, "cost_usd": cost,
    }
    if _store(ctx, job, fields, cache_hit=False, attempts=attempts[0]):
        outcome.done += 1
        outcome.cost_usd += cost
        _notify(ctx, req.run_id, "done")
    else:
        outcome.skipped += 1


def _notify(ctx: ExecutionContext, run_id: int, what: str) -> None:
    if ctx.on_rating is not None:
        ctx.on_rating(run_id, what)


async def execute_chunk(ctx: ExecutionContext, request_ids: list[int]) -> ChunkOutcome:
    """Execute the given rating requests concurrently (bounded per model by the provider pool)."""
    outcome = ChunkOutcome()
    with Session(ctx.engine, expire_on_commit=False) as session:
        jobs, outcome.skipped = _load_jobs(session, request_ids)
    await asyncio.gather(*(_execute_one(ctx, job, outcome) for job in jobs))
    return outcome
