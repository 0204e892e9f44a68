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

A subject's ``generate`` request goes through the same path (cache, limiter, budget, retries) and stores an
``Answer`` instead of a Rating (``accord.worker.answers.store_answers``, which creates the answer's judge
requests in the same transaction); a ``judge`` request renders the item and the answer it rates.

The provider batch path (``accord.worker.batch``) stores its results through the same functions
(``answer_fields``, ``store_rating``), with the batch discount applied to the batch call's cost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, get_args

from accord.models.schema import (
    RATING_CACHED_FIELDS,
    Answer,
    AnswerComparison,
    Campaign,
    Item,
    ModelSpec,
    PromptTemplate,
    Rating,
    RatingRequest,
    RequestStatus,
    Run,
    RunStatus,
    join_rater_context,
    utcnow,
)
from accord.worker.comparisons import complete_after_failure
from accord.worker.answers import ANSWER_CACHED_FIELDS, generation_fields, prefetch_answers, store_answers
from accord.worker.budget import EXHAUSTED, RESERVED, BudgetLedger
from accord.worker.decoding import request_decoding
from accord.worker.parsing import UNPARSEABLE, expected_value, parse_answer
from accord.worker.prompt_templates import ResolvedTemplate, comparison_labels, item_variables, render_messages
from accord.worker.ranking_parse import parse_ranking
from accord.worker.provider_pool import ProviderPool
from accord.worker.providers.base import ProviderError, ProviderRequest, ProviderResponse, output_budget
from accord.worker.rate_limiter import is_rate_limited
from accord.worker.request_rows import conflict_insert, mark_done
from accord.worker.stage_decoding import stage_base_decoding
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

log = logging.getLogger("accord.worker")

ACTIVE_REQUEST_STATUSES = (RequestStatus.pending.value, RequestStatus.queued.value)
DEFAULT_REPAIR_ATTEMPTS = 1
DEFAULT_DEADLINE_HOURS = 24.0
UNCAPPED_OUTPUT_TOKENS = 4096   # the output a budget reserves for a call that sets no max_tokens
# Anthropic bills a prompt-cache write at 1.25x the input price (5-minute cache); OpenAI has no write surcharge.
CACHE_WRITE_MULTIPLIER = 1.25
REPAIR_INSTRUCTION = ("Your answer above could not be read as one of the allowed answers. Reply with exactly one "
                      "of these and nothing else: {labels}")


class RateLimiter(Protocol):
    """Admission control in front of a provider: ``accord.worker.rate_limiter.RateLimiter`` over Redis
    (distributed) or in process (embedded)."""

    async def acquire(self, spec: ModelSpec, estimated_tokens: int) -> None: ...

    def observe(self, spec: ModelSpec, *, response: ProviderResponse | None = None,
                error: ProviderError | None = None, estimated_tokens: int = 0) -> None: ...


class HotCache(Protocol):
    """A fast tier in front of the Rating table (Redis in distributed mode)."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, rating: dict[str, Any]) -> None: ...

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]: ...

    def put_many(self, ratings: dict[str, dict[str, Any]]) -> None: ...


@dataclass
class ExecutionContext:
    engine: Engine
    providers: ProviderPool
    limiter: RateLimiter | None = None
    hot_cache: HotCache | None = None
    budget: BudgetLedger | None = None    # reservations before each call (runs with a budget)
    max_attempts: int = 4                 # failed attempts per request; rate-limited answers do not count
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    flush_every: int = 32                 # ratings stored per transaction ...
    flush_after_s: float = 0.25           # ... or after this long, so progress stays live
    on_rating: Callable[[int, str], None] | None = None   # (run_id, outcome) for metrics / progress
    _sink: RatingSink | None = field(default=None, init=False, repr=False)

    def sink(self) -> RatingSink:
        """Where ratings go to the database from the running event loop: one sink per loop, shared by every
        chunk the loop runs at once (embedded mode runs several), so one transaction stores what any of them
        has ready."""
        loop = asyncio.get_running_loop()
        if self._sink is None or self._sink.loop is not loop:
            self._sink = RatingSink(self, loop)
        return self._sink


ChunkCount = Literal["done", "cached", "failed", "cancelled", "skipped"]


@dataclass
class ChunkOutcome:
    """What became of a chunk's requests: how many were done (``cached`` of them from the cache), failed,
    cancelled or skipped (already finished, or left for later); their cost and the failures' messages."""

    counts: Counter[ChunkCount] = field(default_factory=Counter)
    cost_usd: float = 0.0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Each count (zero included), the cost and the errors, as the chunk task reports them."""
        return {**{name: self.counts[name] for name in get_args(ChunkCount)}, "cost_usd": self.cost_usd,
                "errors": self.errors}


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
    deadline: float | None = None   # epoch seconds after which a rate-limited request stops waiting
    run_key: str = ""               # the run's id and start time: its budget ledger entry
    item: dict[str, Any] = field(default_factory=dict)   # the template's ``item`` variables
    answer_text: str | None = None  # judge requests: the subject's answer they rate
    answers: list[str] | None = None  # pairwise/listwise judge requests: the answers compared, in the order shown

    def render(self) -> list[dict[str, str]]:
        """The chat messages of this request (item, persona, and the answer or answers judged)."""
        return render_messages(self.template, self.content, self.request.persona or None, item=self.item,
                               answer=self.answer_text, answers=self.answers)

    @property
    def generates(self) -> bool:
        """A subject's generation: its result is an Answer, not a Rating."""
        return self.request.stage == "generate"


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
    requests = (select(RatingRequest, col(Item.content), ModelSpec, PromptTemplate, col(Campaign.spec),
                       col(Run.started_at), col(Item.external_id), col(Item.meta), col(Answer.text))
                .join(Item, col(Item.id) == col(RatingRequest.item_id))
                .outerjoin(Answer, col(Answer.id) == col(RatingRequest.answer_id)))
    rows = session.execute(
        join_rater_context(requests, RatingRequest)
        .where(col(RatingRequest.id).in_(request_ids))
        .order_by(col(RatingRequest.id))
    ).all()
    jobs, skipped = [], 0
    templates: dict[int, ResolvedTemplate] = {}
    for req, content, spec, trow, campaign_spec, started_at, external_id, meta, answer_text in rows:
        if req.status not in ACTIVE_REQUEST_STATUSES:
            skipped += 1
            continue
        if trow.id not in templates:
            templates[trow.id] = ResolvedTemplate.from_row(trow.name, trow.version, trow.response_format,
                                                           trow.system, trow.user, trow.output_spec)
        tmpl = templates[trow.id]
        params = request_decoding(stage_base_decoding(campaign_spec, req.stage), (spec.params or {}).get("decoding"),
                                  tmpl.max_tokens, req.sample_index)
        repairs = campaign_spec.get("repair_attempts")
        jobs.append(Job(req, content, spec, tmpl, trow.content_hash, campaign_spec.get("cache", True), params,
                        DEFAULT_REPAIR_ATTEMPTS if repairs is None else int(repairs),
                        run_deadline(started_at, campaign_spec.get("deadline_hours")),
                        f"{req.run_id}:{started_at.isoformat() if started_at else ''}",
                        item_variables(external_id, content, meta), answer_text))
    skipped += len(request_ids) - len(rows)
    _attach_compared_answers(session, jobs)
    return jobs, skipped


def _attach_compared_answers(session: Session, jobs: list[Job]) -> None:
    """Pairwise and listwise judge requests: the texts of the answers they compare, in the order shown."""
    ids = {j.request.comparison_id for j in jobs if j.request.comparison_id is not None}
    if not ids:
        return
    orders: dict[int, list[int]] = dict(session.execute(
        select(col(AnswerComparison.id), col(AnswerComparison.answer_ids))
        .where(col(AnswerComparison.id).in_(ids))).all())
    answer_ids = {int(a) for order in orders.values() for a in order}
    texts: dict[int, str] = dict(session.execute(select(col(Answer.id), col(Answer.text))
                                                 .where(col(Answer.id).in_(answer_ids))).all())
    for job in jobs:
        if job.request.comparison_id is not None:
            job.answers = [texts[int(a)] or "" for a in orders[job.request.comparison_id]]


def run_deadline(started_at: datetime | None, deadline_hours: float | None) -> float:
    """Epoch seconds until which a rate-limited request of the run keeps waiting: the campaign's
    ``deadline_hours`` (default ``DEFAULT_DEADLINE_HOURS``) after the run started."""
    start = started_at or datetime.now(UTC)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return (start + timedelta(hours=float(deadline_hours or DEFAULT_DEADLINE_HOURS))).timestamp()


def _run_state(engine: Engine, run_id: int) -> tuple[str, float, float | None]:
    with engine.connect() as conn:
        row = conn.execute(select(col(Run.status), col(Run.cost_usd), col(Run.budget_usd)).where(col(Run.id) == run_id)).one()
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

    def seen(self, states: dict[int, tuple[str, float, float | None]]) -> None:
        """Runs' states just read (with the chunk's requests)."""
        now = time.monotonic()
        self._runs.update({run_id: (now, state) for run_id, state in states.items()})

    async def run_state(self, run_id: int) -> tuple[str, float, float | None]:
        now = time.monotonic()
        seen = self._runs.get(run_id)
        if seen is None or now - seen[0] > RUN_STATE_REFRESH_SECONDS:
            seen = (now, await asyncio.to_thread(_run_state, self.engine, run_id))
            self._runs[run_id] = seen
        return seen[1]


def _prefetch_cache(ctx: ExecutionContext, session: Session, jobs: list[Job]) -> dict[str, dict[str, Any]]:
    """Cached answers for the chunk's cache keys: the hot tier (Redis, one round trip) first, then one query
    to the rating table for the keys it did not have (their answers go into the hot tier for the next chunk)."""
    keys = sorted({j.request.cache_key for j in jobs if j.cache_mode is True and not j.generates})
    answers = prefetch_answers(session, sorted({j.request.cache_key for j in jobs
                                                if j.cache_mode is True and j.generates}))
    found = ctx.hot_cache.get_many(keys) if ctx.hot_cache is not None and keys else {}
    misses = [key for key in keys if key not in found]
    if misses:
        rows = session.execute(select(Rating).where(col(Rating.cache_key).in_(misses), col(Rating.cache_hit).is_(False))
                               .order_by(col(Rating.id))).scalars()
        fresh: dict[str, dict[str, Any]] = {}
        for src in rows:
            if src.cache_key in found:
                continue
            found[src.cache_key] = fresh[src.cache_key] = {
                **{f: getattr(src, f) for f in RATING_CACHED_FIELDS}, "source_rating_id": src.id}
        if ctx.hot_cache is not None and fresh:
            ctx.hot_cache.put_many(fresh)
    return {**found, **{f"answer:{k}": v for k, v in answers.items()}}


@dataclass
class _Pending:
    job: Job
    fields: dict[str, Any]
    cache_hit: bool
    attempts: int
    stored: asyncio.Future[bool]


# Every column of a rating row but the key: a stored row names them all (one shape for a multi-row insert).
_RATING_DEFAULTS: dict[str, Any] = {
    name: (None if info.is_required() else info.get_default(call_default_factory=True))
    for name, info in Rating.model_fields.items() if name != "id"}


def store_ratings(engine: Engine, ratings: list[tuple[Job, dict[str, Any], bool, int]]) -> dict[int, int]:
    """Store ratings in one transaction: one multi-row ``INSERT … ON CONFLICT (request_id) DO NOTHING
    RETURNING``, one status update for the requests whose rating went in, one counter update per run.
    Returns {request id: rating id} of the ratings stored now; a request already rated is left as it is
    (``rating.request_id`` is unique, so nothing is ever stored twice)."""
    if not ratings:
        return {}
    now = utcnow()
    rows = [{**_RATING_DEFAULTS, **fields, "request_id": job.request.id, "run_id": job.request.run_id,
             "cache_key": job.request.cache_key, "cache_hit": cache_hit, "created_at": now}
            for job, fields, cache_hit, _ in ratings]
    by_request = {job.request.id: (job, fields, cache_hit, attempts) for job, fields, cache_hit, attempts in ratings}
    table = Rating.__table__  # type: ignore[attr-defined]  # set by SQLModel on table classes; Core statements: no ORM bookkeeping on the hot path
    with Session(engine) as session:
        # one compiled statement for any number of rows: SQLAlchemy sends the parameter sets as multi-row
        # VALUES batches ("insertmanyvalues") and gathers what RETURNING gives back
        stmt = (conflict_insert(engine)(table).on_conflict_do_nothing(index_elements=["request_id"])
                .returning(table.c.request_id, table.c.id))
        stored = {int(rid): int(rating_id) for rid, rating_id in session.connection().execute(stmt, rows).all()}
        if stored:
            mark_done(session.connection(), {rid: by_request[rid][3] for rid in stored}, now)
            runs: dict[int, list[float]] = {}
            for rid in stored:
                job, fields, cache_hit, _ = by_request[rid]
                totals = runs.setdefault(job.request.run_id, [0, 0, 0.0, 0, 0])
                totals[0] += 1
                totals[1] += int(cache_hit)
                totals[2] += float(fields.get("cost_usd") or 0.0)
                totals[3] += 0 if cache_hit else int(fields.get("input_tokens") or 0)
                totals[4] += 0 if cache_hit else int(fields.get("output_tokens") or 0)
            for run_id, (done, cached, cost, it, ot) in runs.items():
                session.execute(
                    text("UPDATE run SET done = done + :d, cached = cached + :c, cost_usd = cost_usd + :cost, "
                         "input_tokens = input_tokens + :it, output_tokens = output_tokens + :ot WHERE id = :id"),
                    {"d": int(done), "c": int(cached), "cost": cost, "it": int(it), "ot": int(ot), "id": run_id})
        session.commit()
    return stored


def _store_batch(engine: Engine, batch: list["_Pending"]) -> dict[int, int]:
    """Ratings through ``store_ratings``, subjects' answers through ``store_answers`` (with their judge
    requests): {request id: rating or answer id} of what was stored now."""
    ratings = [(p.job, p.fields, p.cache_hit, p.attempts) for p in batch if not p.job.generates]
    answers = [(p.job, p.fields, p.cache_hit, p.attempts) for p in batch if p.job.generates]
    stored = store_ratings(engine, ratings) if ratings else {}
    if answers:
        stored.update(store_answers(engine, answers))
    return stored


class RatingSink:
    """Ratings on their way to the database: buffered, stored ``flush_every`` at a time or after
    ``flush_after_s``, by one transaction run off the event loop (``store_ratings``). Bound to one event
    loop (``ExecutionContext.sink``)."""

    def __init__(self, ctx: ExecutionContext, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.loop = loop
        self._pending: list[_Pending] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def store(self, job: Job, fields: dict[str, Any], *, cache_hit: bool, attempts: int) -> bool:
        """True once the rating is stored; False if the request had its rating already."""
        item = _Pending(job, fields, cache_hit, attempts, self.loop.create_future())
        self._pending.append(item)
        if len(self._pending) >= self.ctx.flush_every:
            self._start_flush()
        elif self._timer is None:
            self._timer = self.loop.call_later(self.ctx.flush_after_s, self._start_flush)
        return await item.stored

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = self.loop.create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            stored = await asyncio.to_thread(_store_batch, self.ctx.engine, batch)
        except Exception as err:  # noqa: BLE001 - every waiter learns of it; nothing was stored
            for p in batch:
                if not p.stored.done():
                    p.stored.set_exception(err)
            return
        fresh = {}
        for p in batch:
            rating_id = stored.get(p.job.request.id)   # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
            if rating_id is not None and not p.cache_hit and not p.job.generates:
                fresh[p.job.request.cache_key] = {**{f: p.fields.get(f) for f in RATING_CACHED_FIELDS},
                                                  "source_rating_id": rating_id}
            if not p.stored.done():
                p.stored.set_result(rating_id is not None)
        if fresh and self.ctx.hot_cache is not None:
            self.ctx.hot_cache.put_many(fresh)

    async def close(self) -> None:
        """Store what is pending now and wait for every flush in progress."""
        self._start_flush()
        while self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)


def store_rating(ctx: ExecutionContext, job: Job, fields: dict[str, Any], *, cache_hit: bool, attempts: int) -> bool:
    """Store one rating — or a subject's answer, with its judge requests — and mark its request done,
    atomically (the batch path's results). False if it was stored already."""
    if job.generates:
        return bool(store_answers(ctx.engine, [(job, fields, cache_hit, attempts)]))
    stored = store_ratings(ctx.engine, [(job, fields, cache_hit, attempts)])
    if not stored:
        return False
    if not cache_hit and ctx.hot_cache is not None:
        ctx.hot_cache.put(job.request.cache_key, {**{f: fields.get(f) for f in RATING_CACHED_FIELDS},
                                                  "source_rating_id": stored[job.request.id]})  # type: ignore[index]  # a stored row's id is set (flushed or loaded)
    return True


def finish_request(engine: Engine, req: RatingRequest, status: str, error: str | None, attempts: int) -> bool:
    """Mark a request failed or cancelled (once); bump the run's counter when this call changed it."""
    counter = "failed" if status == RequestStatus.failed.value else "cancelled"
    with Session(engine) as session:
        result = session.execute(
            update(RatingRequest)
            .where(col(RatingRequest.id) == req.id, col(RatingRequest.status).in_(ACTIVE_REQUEST_STATUSES))
            .values(status=status, last_error=(error or "")[:2000], attempts=attempts, updated_at=utcnow()))
        changed = bool(result.rowcount)  # type: ignore[attr-defined]  # DML: a CursorResult
        if changed:
            session.execute(text(f"UPDATE run SET {counter} = {counter} + 1 WHERE id = :id"), {"id": req.run_id})
            if req.stage == "generate" and status == RequestStatus.failed.value:
                # lists that waited for this subject's answer are complete without it
                added = complete_after_failure(session, req.run_id, req.item_id, utcnow())
                if added:
                    session.execute(text("UPDATE run SET total = total + :n WHERE id = :id"),
                                    {"n": added, "id": req.run_id})
        session.commit()
    return changed


def mark_budget_exhausted(engine: Engine, run_id: int) -> None:
    with Session(engine) as session:
        session.execute(update(Run).where(col(Run.id) == run_id, col(Run.status) == RunStatus.running.value)
                        .values(status=RunStatus.budget_exhausted.value))
        session.commit()


class BudgetExhausted(Exception):
    """The call's worst-case cost does not fit in what is left of the run's budget: it is not sent."""


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


def worst_case_cost(spec: ModelSpec, request: ProviderRequest) -> float:
    """An upper bound on one call's cost: every input character a token (no tokenizer gives more tokens
    than characters, plus a little framing per message), every output token the call may produce."""
    input_tokens = sum(len(m["content"]) for m in request.messages) + 8 * len(request.messages)
    cap = output_budget(request.params.get("max_tokens"), structured=request.structured, rationale=request.rationale)
    return _cost(spec, input_tokens, int(cap if cap is not None else UNCAPPED_OUTPUT_TOKENS))


BUDGET_WAIT_S = 0.05   # how often a call that fits once the calls in flight settle asks again


async def _reserve(ledger: BudgetLedger, run_key: str, amount: float, budget: tuple[float, float]) -> float:
    """Reserve ``amount`` against the run's budget, waiting while it would fit once the calls in flight settle
    (their reservations are worst cases); ``BudgetExhausted`` when it cannot fit even then."""
    while True:
        answer = ledger.reserve(run_key, amount, budget[0], budget[1])
        if answer == RESERVED:
            return amount
        if answer == EXHAUSTED:
            raise BudgetExhausted(f"budget {budget[0]:g} USD: no room for a call of up to {amount:.6f} USD")
        await asyncio.sleep(BUDGET_WAIT_S)


async def _call_provider(ctx: ExecutionContext, job: Job, messages: list[dict[str, str]],
                         attempts: list[int], request: ProviderRequest | None = None,
                         budget: tuple[float, float] | None = None) -> ProviderResponse:
    """One provider call with its retries. A rate-limited or overloaded answer (429, 529) waits — the
    limiter holds the group for its ``retry-after`` and slows down — and is sent again without spending one
    of the request's ``max_attempts``, until the run's deadline. Other transient errors back off
    exponentially (or for their ``retry-after``) and count. ``budget`` (budget, spent) reserves the call's
    worst-case cost before each send and settles the real cost after (``BudgetExhausted`` if it does not fit)."""
    provider = ctx.providers.get(job.spec)
    request = request or provider_request(job, messages)
    est = estimate_tokens(request.messages, request.params.get("max_tokens"))
    failures = 0
    run_key = job.run_key
    while True:
        reserved = 0.0
        if budget is not None and ctx.budget is not None:
            reserved = await _reserve(ctx.budget, run_key, worst_case_cost(job.spec, request), budget)
        attempts[0] += 1
        try:
            async with ctx.providers.slot(job.spec):
                if ctx.limiter is not None:    # admitted inside the slot: sent as soon as admitted
                    await ctx.limiter.acquire(job.spec, est)
                started = time.perf_counter()
                response = await provider.complete(request)
                response.latency_ms = response.latency_ms or (time.perf_counter() - started) * 1000
        except ProviderError as err:
            if reserved:
                ctx.budget.settle(run_key, reserved, 0.0)  # type: ignore[union-attr]  # reserved only through a budget ledger
            if ctx.limiter is not None:
                ctx.limiter.observe(job.spec, error=err, estimated_tokens=est)
            if not err.retryable:
                raise
            if is_rate_limited(err):
                if job.deadline is not None and time.time() >= job.deadline:
                    raise ProviderError(f"{err} (still rate limited at the run's deadline)", retryable=False,
                                        status=err.status) from err
                if ctx.limiter is None:   # nobody else holds the group back: wait here
                    await asyncio.sleep(min(max(err.retry_after or ctx.backoff_initial, 0.0), 120.0))
                continue
            failures += 1
            if failures >= ctx.max_attempts:
                raise
            if err.retry_after is not None:
                await asyncio.sleep(min(max(err.retry_after, 0.0), 120.0))
            else:   # exponential with jitter: initial, 2x, 4x ... capped, plus up to a second at random
                await asyncio.sleep(min(ctx.backoff_initial * 2 ** (failures - 1), ctx.backoff_max)
                                    + random.uniform(0, min(1.0, ctx.backoff_initial)))
            continue
        except BaseException:
            if reserved:
                ctx.budget.settle(run_key, reserved, 0.0)  # type: ignore[union-attr]  # reserved only through a budget ledger
            raise
        if reserved:
            ctx.budget.settle(run_key, reserved, response_cost(job.spec, response))  # type: ignore[union-attr]  # reserved only through a budget ledger
        if ctx.limiter is not None:
            ctx.limiter.observe(job.spec, response=response, estimated_tokens=est)
        return response


async def _execute_one(ctx: ExecutionContext, job: Job, outcome: ChunkOutcome, chunk: _ChunkState,
                       sink: RatingSink) -> None:
    req = job.request
    status, spent, budget = await chunk.run_state(req.run_id)
    if status in (RunStatus.cancelled.value, RunStatus.budget_exhausted.value):
        if await asyncio.to_thread(finish_request, ctx.engine, req, RequestStatus.cancelled.value,
                                   f"run {status}", req.attempts):
            outcome.counts["cancelled"] += 1
        return
    if status == RunStatus.paused.value:
        outcome.counts["skipped"] += 1   # left active; the scheduler hands it out again on resume
        return
    if job.cache_mode is True:
        # an earlier identical call's answer: a subject's answer, or a rating (older entries lack newer fields)
        key, names, source, defaults = ((f"answer:{req.cache_key}", ANSWER_CACHED_FIELDS, "source_answer_id", {})
                                        if job.generates else
                                        (req.cache_key, RATING_CACHED_FIELDS, "source_rating_id",
                                         _CACHED_DEFAULTS))
        hit = chunk.cached.get(key)
        if hit is not None:
            fields = {k: hit.get(k, defaults.get(k)) for k in names}
            if await sink.store(job, {**fields, source: hit.get(source), "cost_usd": 0.0, "latency_ms": 0.0},
                                cache_hit=True, attempts=req.attempts):
                outcome.counts["done"] += 1
                outcome.counts["cached"] += 1
                _notify(ctx, req.run_id, "cached")
            else:
                outcome.counts["skipped"] += 1
            return
    messages = job.render()
    reservation = (budget, spent) if budget is not None else None
    attempts = [req.attempts]
    try:
        response = await _call_provider(ctx, job, messages, attempts, budget=reservation)
    except BudgetExhausted as err:
        await asyncio.to_thread(mark_budget_exhausted, ctx.engine, req.run_id)
        if await asyncio.to_thread(finish_request, ctx.engine, req, RequestStatus.cancelled.value,
                                   f"budget exhausted: {err}", req.attempts):
            outcome.counts["cancelled"] += 1
        return
    except ProviderError as err:
        msg = str(err) if (err.status is None or f"HTTP {err.status}" in str(err)) else f"HTTP {err.status}: {err}"
        if await asyncio.to_thread(finish_request, ctx.engine, req, RequestStatus.failed.value, msg, attempts[0]):
            outcome.counts["failed"] += 1
            outcome.errors.append(msg)
            _notify(ctx, req.run_id, "failed")
        return
    except Exception as err:  # a bug or an unexpected library error: record it on the request, keep going
        log.exception("request %s failed unexpectedly", req.id)
        msg = f"{type(err).__name__}: {err}"
        if await asyncio.to_thread(finish_request, ctx.engine, req, RequestStatus.failed.value, msg, attempts[0]):
            outcome.counts["failed"] += 1
            outcome.errors.append(msg)
        return
    if job.generates:
        fields = generation_fields(job, response, response_cost(job.spec, response))
    else:
        fields = await answer_fields(ctx, job, messages, response, budget=reservation)
    if await sink.store(job, fields, cache_hit=False, attempts=attempts[0]):
        outcome.counts["done"] += 1
        outcome.cost_usd += fields["cost_usd"]
        _notify(ctx, req.run_id, "done")
    else:
        outcome.counts["skipped"] += 1


def _scores(response: ProviderResponse, labels: dict[str, float]) -> tuple[dict[str, float] | None, float | None]:
    if not response.label_logprobs:
        return None, None
    try:
        return expected_value(response.label_logprobs, labels)
    except ValueError:
        return None, None


async def answer_fields(ctx: ExecutionContext, job: Job, messages: list[dict[str, str]], response: ProviderResponse,
                        *, discount: float = 0.0, budget: tuple[float, float] | None = None) -> dict[str, Any]:
    """The Rating fields for ``response``: parsed label and status, label probabilities, tokens, cost.

    An ``unparseable`` answer gets up to ``job.repair_attempts`` repair calls (realtime, at the full price,
    each reserved against ``budget`` like any call); ``discount`` (the batch discount) applies to the first
    call only."""
    tmpl = job.template
    if tmpl.response_format == "listwise":
        return ranking_fields(job, response, discount)
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
                                          provider_request(job, conversation, rationale=False), budget=budget)
        except (ProviderError, BudgetExhausted) as err:
            log.warning("request %s: repair call not made or failed (%s); keeping the unparseable answer",
                        job.request.id, err)
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


def ranking_fields(job: Job, response: ProviderResponse, discount: float = 0.0) -> dict[str, Any]:
    """The Rating fields of a listwise judge's answer: the order of the answers' letters (``label``, e.g.
    ``B>A>C``, first = ranked highest) when it is a permutation of all of them, else ``unparseable`` (or
    ``empty``/``truncated``) with no label. Never repaired, never completed."""
    parsed = parse_ranking(response.text, comparison_labels(len(job.answers or [])))
    status = parsed.status
    if status != "ok" and response.finish_reason == "length" and parsed.status != "empty":
        status = "truncated"
    return {
        "raw_text": response.text, "label": ">".join(parsed.order) if parsed.order else None, "value": None,
        "weighted_value": None, "label_probs": None, "rationale": None, "parse_status": status,
        "finish_reason": response.finish_reason, "model_snapshot": response.model_snapshot,
        "template_hash": job.template_hash, "decoding": job.params, "input_tokens": response.input_tokens,
        "output_tokens": response.output_tokens, "cached_input_tokens": response.cached_input_tokens,
        "cache_write_tokens": response.cache_write_tokens, "latency_ms": response.latency_ms,
        "cost_usd": response_cost(job.spec, response, discount), "repair_text": None, "repaired": False,
    }


def _notify(ctx: ExecutionContext, run_id: int, what: str) -> None:
    if ctx.on_rating is not None:
        ctx.on_rating(run_id, what)


def _load_chunk(ctx: ExecutionContext, request_ids: list[int]) -> tuple[list[Job], int, dict[str, dict[str, Any]],
                                                                      dict[int, tuple[str, float, float | None]]]:
    """The chunk's jobs, the number skipped, the cached answers of its keys and its runs' states, read in one
    session (one connection checkout)."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        jobs, skipped = load_jobs(session, request_ids)
        cached = _prefetch_cache(ctx, session, jobs)
        run_ids = sorted({job.request.run_id for job in jobs})
        states = {int(rid): (status, float(cost or 0.0), budget) for rid, status, cost, budget in session.execute(
            select(col(Run.id), col(Run.status), col(Run.cost_usd), col(Run.budget_usd)).where(col(Run.id).in_(run_ids))
        ).all()} if run_ids else {}
        return jobs, skipped, cached, states


async def execute_chunk(ctx: ExecutionContext, request_ids: list[int]) -> ChunkOutcome:
    """Execute the given rating requests concurrently (bounded per model by the provider pool). Database work
    runs in threads, off the event loop; ratings are stored a batch at a time."""
    outcome = ChunkOutcome()
    jobs, outcome.counts["skipped"], cached, states = await asyncio.to_thread(_load_chunk, ctx, request_ids)
    chunk = _ChunkState(ctx.engine, cached)
    chunk.seen(states)
    sink = ctx.sink()
    try:
        # each request returns once its rating is stored: the sink stores it with what other chunks have ready
        await asyncio.gather(*(_execute_one(ctx, job, outcome, chunk, sink) for job in jobs))
    except BaseException:
        await sink.close()    # what this chunk left pending is stored before the error goes up
        raise
    return outcome
