"""Execute a chunk of rating requests: render, call the provider, parse, store. Idempotent.

This is the single execution path: the embedded scheduler awaits it in-process, the Celery task runs it
in a worker. Guarantees:
- a request that already has its Rating (or is failed/cancelled) is skipped, so a re-delivered chunk is
  harmless;
- the Rating insert and the request's status change happen in one transaction; the unique
  ``rating.request_id`` makes a concurrent duplicate fail cleanly, so no rating is ever stored twice;
- per-request failures are recorded on the request (attempts, last error) and never abort the chunk;
- an ``unparseable`` answer gets up to ``repair_attempts`` follow-up calls (campaign field, default 1) asking
  for exactly one label; the rating keeps the original ``raw_text`` and the ``repair_text``, the parse status
  of the final answer, and the tokens and cost of every call. Never a default label.

The provider batch path (``accord.worker.batch``) stores its results through the same functions
(``answer_fields``, ``store_rating``), with the batch discount applied to the batch call's cost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from accord.models.schema import (
    Campaign,
    Item,
    ModelSpec,
    PromptTemplate,
    Rating,
    RatingRequest,
    RequestStatus,
    Run,
    RunStatus,
    utcnow,
)
from accord.worker.decoding import request_decoding
from accord.worker.parsing import UNPARSEABLE, expected_value, parse_answer
from accord.worker.prompt_templates import ResolvedTemplate, render_messages
from accord.worker.provider_pool import ProviderPool
from accord.worker.providers.base import ProviderError, ProviderRequest, ProviderResponse
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger("accord.worker")

ACTIVE_REQUEST_STATUSES = (RequestStatus.pending.value, RequestStatus.queued.value)
DEFAULT_REPAIR_ATTEMPTS = 1
# Anthropic bills a prompt-cache write at 1.25x the input price (5-minute cache); OpenAI has no write surcharge.
CACHE_WRITE_MULTIPLIER = 1.25
REPAIR_INSTRUCTION = ("Your answer above could not be read as one of the allowed answers. Reply with exactly one "
                      "of these and nothing else: {labels}")


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
class Job:
    request: RatingRequest
    content: dict[str, Any]
    spec: ModelSpec
    template: ResolvedTemplate
    template_hash: str
    cache_mode: Any   # True, False or "refresh"
    params: dict[str, Any]   # decoding params of this call (the ones its cache key was computed from)
    repair_attempts: int = DEFAULT_REPAIR_ATTEMPTS


# Fields copied from an original rating into a cache hit.
_CACHED_FIELDS = ("raw_text", "label", "value", "weighted_value", "label_probs", "rationale", "parse_status",
                  "finish_reason", "model_snapshot", "template_hash", "decoding", "input_tokens", "output_tokens",
                  "cached_input_tokens", "cache_write_tokens", "repair_text", "repaired")
# Values for fields an older cache entry (written before a field existed) does not carry.
_CACHED_DEFAULTS: dict[str, Any] = {"cached_input_tokens": 0, "cache_write_tokens": 0, "repair_text": None,
                                    "repaired": False}


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int | None) -> int:
    """Conservative token estimate before a call: ~1 token per 3.5 characters plus framing, plus the output cap."""
    chars = sum(len(m["content"]) for m in messages)
    return int(chars / 3.5) + 8 * len(messages) + int(max_tokens or 16)


def load_jobs(session: Session, request_ids: list[int]) -> tuple[list[Job], int]:
    """The active requests among ``request_ids`` with their item, model, template and decoding, and the
    number skipped (already done, failed, cancelled or gone)."""
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
        repairs = campaign_spec.get("repair_attempts")
        jobs.append(Job(req, content, spec, tmpl, trow.content_hash, campaign_spec.get("cache", True), params,
                         DEFAULT_REPAIR_ATTEMPTS if repairs is None else int(repairs)))
    skipped += len(request_ids) - len(rows)
    return jobs, skipped


def _run_state(engine: Engine, run_id: int) -> tuple[str, float, float | None]:
    with engine.connect() as conn:
        row = conn.execute(select(Run.status, Run.cost_usd, Run.budget_usd).where(Run.id == run_id)).one()
    return row[0], float(row[1] or 0.0), row[2]


def _cost(spec: ModelSpec, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0,
          cache_write_tokens: int = 0, discount: float = 0.0) -> float:
    """USD for one call. ``input_tokens`` counts every input token; of those, ``cached_input_tokens`` are
    priced at the cached-input price (the input price when the model has none) and ``cache_write_tokens`` at
    ``CACHE_WRITE_MULTIPLIER`` times the input price. ``discount`` (the batch discount) scales the total."""
    cached = max(0, min(cached_input_tokens, input_tokens))
    written = max(0, min(cache_write_tokens, input_tokens - cached))
    fresh = input_tokens - cached - written
    cached_price = spec.price_cached_input_per_mtok
    if cached_price is None:
        cached_price = spec.price_input_per_mtok
    total = (fresh * spec.price_input_per_mtok + cached * cached_price
             + written * spec.price_input_per_mtok * CACHE_WRITE_MULTIPLIER
             + output_tokens * spec.price_output_per_mtok) / 1e6
    return total * (1.0 - discount)


def response_cost(spec: ModelSpec, response: ProviderResponse, discount: float = 0.0) -> float:
    return _cost(spec, response.input_tokens, response.output_tokens, response.cached_input_tokens,
                 response.cache_write_tokens, discount)


RUN_STATE_REFRESH_SECONDS = 0.5   # how stale a chunk's view of its run's status and spend may be


@dataclass
class _ChunkState:
    """What a chunk reads once instead of once per request: the cached answers of its requests' keys and,
    at most every RUN_STATE_REFRESH_SECONDS, each run's status, spend and budget."""

    engine: Engine
    cached: dict[str, dict[str, Any]] = field(default_factory=dict)
    _runs: dict[int, tuple[float, tuple[str, float, float | None]]] = field(default_factory=dict)

    def run_state(self, run_id: int) -> tuple[str, float, float | None]:
        now = time.monotonic()
        seen = self._runs.get(run_id)
        if seen is None or now - seen[0] > RUN_STATE_REFRESH_SECONDS:
            seen = (now, _run_state(self.engine, run_id))
            self._runs[run_id] = seen
        return seen[1]


def _prefetch_cache(ctx: ExecutionContext, session: Session, jobs: list[Job]) -> dict[str, dict[str, Any]]:
    """Cached answers for the chunk's cache keys: the hot tier (Redis) first, then one query to the rating
    table for the keys it did not have (their answers are put into the hot tier for the next chunk)."""
    keys = sorted({j.request.cache_key for j in jobs if j.cache_mode is True})
    found: dict[str, dict[str, Any]] = {}
    misses = []
    for key in keys:
        hit = ctx.hot_cache.get(key) if ctx.hot_cache is not None else None
        if hit is not None:
            found[key] = hit
        else:
            misses.append(key)
    if misses:
        rows = session.execute(select(Rating).where(Rating.cache_key.in_(misses), Rating.cache_hit.is_(False))  # type: ignore[attr-defined,union-attr]
                               .order_by(Rating.id)).scalars()
        for src in rows:
            if src.cache_key in found:
                continue
            found[src.cache_key] = {**{f: getattr(src, f) for f in _CACHED_FIELDS}, "source_rating_id": src.id}
            if ctx.hot_cache is not None:
                ctx.hot_cache.put(src.cache_key, found[src.cache_key])
    return found


def store_rating(ctx: ExecutionContext, job: Job, fields: dict[str, Any], *, cache_hit: bool, attempts: int) -> bool:
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


def finish_request(engine: Engine, req: RatingRequest, status: str, error: str | None, attempts: int) -> bool:
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


def provider_request(job: Job, messages: list[dict[str, str]], *, rationale: bool | None = None) -> ProviderRequest:
    """The provider call for ``job``: its messages, decoding params, labels, and the template's answer shape."""
    tmpl = job.template
    return ProviderRequest(messages=messages, params=job.params, labels=list(tmpl.labels),
                           want_logprobs=tmpl.logprobs and bool(tmpl.labels), sample_index=job.request.sample_index,
                           structured=bool(tmpl.labels), rationale=tmpl.rationale if rationale is None else rationale)


def repair_messages(messages: list[dict[str, str]], answer: str, labels: list[str]) -> list[dict[str, str]]:
    """The conversation, the model's unreadable answer, and a short instruction to answer with one label."""
    return [*messages, {"role": "assistant", "content": answer if answer.strip() else "(no answer)"},
            {"role": "user", "content": REPAIR_INSTRUCTION.format(labels=", ".join(labels))}]


async def _call_provider(ctx: ExecutionContext, job: Job, messages: list[dict[str, str]],
                         attempts: list[int], request: ProviderRequest | None = None) -> ProviderResponse:
    provider = ctx.providers.get(job.spec)
    params = job.params
    request = request or provider_request(job, messages)
    est = estimate_tokens(request.messages, params.get("max_tokens"))
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


async def _execute_one(ctx: ExecutionContext, job: Job, outcome: ChunkOutcome, chunk: _ChunkState) -> None:
    req = job.request
    status, spent, budget = chunk.run_state(req.run_id)
    if status in (RunStatus.cancelled.value, RunStatus.budget_exhausted.value):
        if finish_request(ctx.engine, req, RequestStatus.cancelled.value, f"run {status}", req.attempts):
            outcome.cancelled += 1
        return
    if status == RunStatus.paused.value:
        outcome.skipped += 1   # left active; the scheduler hands it out again on resume
        return
    if job.cache_mode is True:
        hit = chunk.cached.get(req.cache_key)
        if hit is not None:
            fields = {k: hit.get(k, _CACHED_DEFAULTS.get(k)) for k in _CACHED_FIELDS}
            if store_rating(ctx, job, {**fields, "source_rating_id": hit.get("source_rating_id"), "cost_usd": 0.0,
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
            if finish_request(ctx.engine, req, RequestStatus.cancelled.value, "budget exhausted", req.attempts):
                outcome.cancelled += 1
            return
    attempts = [req.attempts]
    try:
        response = await _call_provider(ctx, job, messages, attempts)
    except ProviderError as err:
        msg = str(err) if (err.status is None or f"HTTP {err.status}" in str(err)) else f"HTTP {err.status}: {err}"
        if finish_request(ctx.engine, req, RequestStatus.failed.value, msg, attempts[0]):
            outcome.failed += 1
            outcome.errors.append(msg)
            _notify(ctx, req.run_id, "failed")
        return
    except Exception as err:  # a bug or an unexpected library error: record it on the request, keep going
        log.exception("request %s failed unexpectedly", req.id)
        msg = f"{type(err).__name__}: {err}"
        if finish_request(ctx.engine, req, RequestStatus.failed.value, msg, attempts[0]):
            outcome.failed += 1
            outcome.errors.append(msg)
        return
    fields = await answer_fields(ctx, job, messages, response)
    if store_rating(ctx, job, fields, cache_hit=False, attempts=attempts[0]):
        outcome.done += 1
        outcome.cost_usd += fields["cost_usd"]
        _notify(ctx, req.run_id, "done")
    else:
        outcome.skipped += 1


def _scores(response: ProviderResponse, labels: dict[str, float]) -> tuple[dict[str, float] | None, float | None]:
    if not response.label_logprobs:
        return None, None
    try:
        return expected_value(response.label_logprobs, labels)
    except ValueError:
        return None, None


async def answer_fields(ctx: ExecutionContext, job: Job, messages: list[dict[str, str]], response: ProviderResponse,
                        *, discount: float = 0.0) -> dict[str, Any]:
    """The Rating fields for ``response``: parsed label and status, label probabilities, tokens, cost.

    An ``unparseable`` answer gets up to ``job.repair_attempts`` repair calls (realtime, at the full price);
    ``discount`` (the batch discount) applies to the first call only."""
    tmpl = job.template
    parsed = parse_answer(response.text, tmpl.labels, finish_reason=response.finish_reason, pattern=tmpl.pattern)
    probs, weighted = _scores(response, tmpl.labels)
    final, final_response = parsed, response
    calls = [(response, discount)]
    repair_text: str | None = None
    conversation = messages
    answer = response.text
    for _ in range(max(0, job.repair_attempts)):
        if final.status != UNPARSEABLE:
            break
        conversation = repair_messages(conversation, answer, list(tmpl.labels))
        attempts = [0]
        try:
            repair = await _call_provider(ctx, job, conversation, attempts,
                                          provider_request(job, conversation, rationale=False))
        except ProviderError as err:
            log.warning("request %s: repair call failed (%s); keeping the unparseable answer", job.request.id, err)
            break
        calls.append((repair, 0.0))
        repair_text = answer = repair.text
        final = parse_answer(repair.text, tmpl.labels, finish_reason=repair.finish_reason)
        final_response = repair
        probs, weighted = _scores(repair, tmpl.labels)
    repaired = repair_text is not None and final.status == "ok"
    rationale = parsed.rationale if not repaired else (parsed.rationale or final.rationale)
    return {
        "raw_text": response.text, "label": final.label, "value": final.value, "weighted_value": weighted,
        "label_probs": probs, "rationale": rationale, "parse_status": final.status,
        "finish_reason": final_response.finish_reason, "model_snapshot": response.model_snapshot,
        "template_hash": job.template_hash, "decoding": job.params,
        "input_tokens": sum(r.input_tokens for r, _ in calls),
        "output_tokens": sum(r.output_tokens for r, _ in calls),
        "cached_input_tokens": sum(r.cached_input_tokens for r, _ in calls),
        "cache_write_tokens": sum(r.cache_write_tokens for r, _ in calls),
        "latency_ms": sum(r.latency_ms for r, _ in calls),
        "cost_usd": sum(response_cost(job.spec, r, d) for r, d in calls),
        "repair_text": repair_text, "repaired": repaired,
    }


def _notify(ctx: ExecutionContext, run_id: int, what: str) -> None:
    if ctx.on_rating is not None:
        ctx.on_rating(run_id, what)


async def execute_chunk(ctx: ExecutionContext, request_ids: list[int]) -> ChunkOutcome:
    """Execute the given rating requests concurrently (bounded per model by the provider pool)."""
    outcome = ChunkOutcome()
    with Session(ctx.engine, expire_on_commit=False) as session:
        jobs, outcome.skipped = load_jobs(session, request_ids)
        chunk = _ChunkState(ctx.engine, _prefetch_cache(ctx, session, jobs))
    await asyncio.gather(*(_execute_one(ctx, job, outcome, chunk) for job in jobs))
    return outcome
