"""The books of provider batches: assemble requests into ``provider_batch`` rows, submit them, poll them,
store their results, send back what failed or expired. Every step is idempotent and resumable:

- a request joins a batch only while ``pending`` and not held by any live batch (``preparing``,
  ``submitting``, ``submitted``, ``ended``), and moves to ``queued`` with ``chunk_id = "batch:<id>"`` in the
  same transaction that writes the batch row and its ``provider_batch_request`` rows;
- a batch is marked ``submitting`` before the create call; a process that finds a batch in that state
  (it died, or the call timed out) first asks the provider whether the batch exists (``BatchClient.find``)
  and adopts it, so a request is never submitted twice while a batch holding it is live;
- results are stored through the realtime path's functions (``answer_fields``: parse, repair, cost with the
  batch discount; ``store_rating``: one transaction, unique ``rating.request_id``), so collecting a batch
  twice stores nothing twice;
- errored (transient), expired, canceled and missing results go back to ``pending`` for a later batch
  until ``max_attempts`` submissions; permanent errors fail the request with the provider's message.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Exists, Select, exists, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from accord.models.schema import (
    LIVE_BATCH_STATUSES, Answer, BatchStatus, ModelSpec, ProviderBatch, ProviderBatchRequest, RatingRequest, RequestStatus,
    Run, RunStatus, utcnow,
)
from accord.worker.batch import batch_client_for
from accord.worker.batch.base import (
    CANCELED, ERRORED, MISSING, STORED_COUNTS, SUCCEEDED, BatchClient, BatchItem, BatchLimits, BatchResult, BatchState,
)
from accord.worker.budget import MemoryBudgetLedger
from accord.worker.rate_limiter import LocalRateLimiter
from accord.worker.execute import (
    ACTIVE_REQUEST_STATUSES, ExecutionContext, Job, _cost, answer_fields, estimate_tokens, finish_request, load_jobs,
    provider_request, response_cost, store_rating,
)
from accord.worker.answers import generation_fields, prefetch_answers, store_answers
from accord.worker.provider_pool import ProviderPool
from accord.worker.providers.base import ProviderError, ProviderRequest

log = logging.getLogger("accord.worker.batch")

CHUNK_PREFIX = "batch:"
STOPPED_RUN_STATUSES = (RunStatus.cancelled.value, RunStatus.budget_exhausted.value)
CANCELLING_STATUSES = ("cancelling", "canceling", "cancelled", "canceled")
_ID_BATCH = 900              # bound on bind parameters per IN (...) query
MESSAGE_CACHE_SIZE = 200_000   # rendered prompts kept per context


def chunk_tag(batch_id: int) -> str:
    """``RatingRequest.chunk_id`` of the requests a live batch holds."""
    return f"{CHUNK_PREFIX}{batch_id}"


def batch_key(batch: ProviderBatch) -> str:
    """The name accord gives a provider batch (OpenAI metadata, input file name)."""
    return f"accord-run{batch.run_id}-batch{batch.id}"


@dataclass
class TickReport:
    """What one pass over a run's batches did."""

    assembled: int = 0          # batches created (rows)
    submitted: int = 0          # batches handed to a provider (or adopted after a restart)
    polled: int = 0
    ended: int = 0
    collected: int = 0
    stored: int = 0             # ratings stored from batch results
    released: int = 0           # requests sent back to pending for a later batch
    failed: int = 0
    cancelled: int = 0
    errors: list[str] = field(default_factory=list)

    def merge(self, other: TickReport) -> None:
        for name in ("assembled", "submitted", "polled", "ended", "collected", "stored", "released", "failed",
                     "cancelled"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)


@dataclass
class BatchContext:
    """What the batch steps need: the database, the providers (their SDK clients are shared with the batch
    clients; repair calls go through them in realtime), per-provider limit overrides, and the attempt cap."""

    engine: Engine
    providers: ProviderPool
    limits: dict[str, BatchLimits] = field(default_factory=dict)
    max_attempts: int = 4
    execution: ExecutionContext | None = None
    _clients: dict[int, BatchClient | None] = field(default_factory=dict)
    _messages: dict[int, list[dict[str, str]]] = field(default_factory=dict)   # request id -> rendered prompt

    def __post_init__(self) -> None:
        if self.execution is None:
            # realtime calls (models without a batch API, repairs) are paced like any embedded call
            self.execution = ExecutionContext(engine=self.engine, providers=self.providers,
                                              limiter=LocalRateLimiter(), budget=MemoryBudgetLedger(),
                                              max_attempts=self.max_attempts)

    def client(self, spec: ModelSpec) -> BatchClient | None:
        if spec.id not in self._clients:
            provider = self.providers.get(spec)
            self._clients[spec.id] = batch_client_for(provider, self.limits.get(spec.provider))  # type: ignore[index]  # a stored row's id is set (flushed or loaded)
        return self._clients[spec.id]  # type: ignore[index]  # a stored row's id is set (flushed or loaded)

    def messages(self, job: Job) -> list[dict[str, str]]:
        """The rendered prompt of a request (rendered once per context: assembling, submitting and
        collecting a batch all need it)."""
        key = job.request.id
        found = self._messages.get(key)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        if found is None:
            found = job.render()
            if len(self._messages) >= MESSAGE_CACHE_SIZE:
                self._messages.clear()
            self._messages[key] = found  # type: ignore[index]  # a stored row's id is set (flushed or loaded)
        return found


# ------------------------------------------------------------------------------------------------ reading
def answers_from_cache(engine: Engine, run_id: int) -> int:
    """Pending subjects' requests whose call was answered before (an original answer under the same cache key):
    store a copy of that answer (zero cost, ``cache_hit``) with its judge requests, as the realtime path does, so
    a batch campaign asks no subject twice either. Returns how many were stored."""
    with Session(engine) as session:
        originals = select(col(Answer.cache_key)).where(col(Answer.cache_hit).is_(False))
        ids = list(session.execute(select(col(RatingRequest.id)).where(
            col(RatingRequest.run_id) == run_id, col(RatingRequest.stage) == "generate",
            col(RatingRequest.status) == RequestStatus.pending.value,
            col(RatingRequest.cache_key).in_(originals))).scalars())
        if not ids:
            return 0
        jobs, _ = load_jobs(session, ids)
        found = prefetch_answers(session, sorted({j.request.cache_key for j in jobs}))
    hits = [(job, {**found[job.request.cache_key], "cost_usd": 0.0, "latency_ms": 0.0}, True, job.request.attempts)
            for job in jobs if job.request.cache_key in found]
    return len(store_answers(engine, hits))


def live_batches(engine: Engine, run_id: int, statuses: Iterable[str] = LIVE_BATCH_STATUSES) -> list[ProviderBatch]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.execute(select(ProviderBatch).where(
            col(ProviderBatch.run_id) == run_id, col(ProviderBatch.status).in_(list(statuses)))
            .order_by(col(ProviderBatch.id))).scalars())


def batch_request_ids(engine: Engine, batch_id: int) -> list[int]:
    with Session(engine) as session:
        return list(session.execute(select(col(ProviderBatchRequest.request_id)).where(
            col(ProviderBatchRequest.batch_id) == batch_id).order_by(col(ProviderBatchRequest.request_id))).scalars())


def _jobs(engine: Engine, request_ids: list[int]) -> list[Job]:
    jobs: list[Job] = []
    for start in range(0, len(request_ids), _ID_BATCH):
        with Session(engine, expire_on_commit=False) as session:
            jobs.extend(load_jobs(session, request_ids[start:start + _ID_BATCH])[0])
    return jobs


def _estimated_cost(job: Job, messages: list[dict[str, str]]) -> float:
    """Upper bound of one batch call: the prompt estimate and the output cap, at the discounted price."""
    cap = int(job.params.get("max_tokens") or 16)
    return _cost(job.spec, estimate_tokens(messages, 0), cap, discount=job.spec.batch_discount)


def _budget_room(session: Session, run: Run) -> float | None:
    """Budget left once the cost so far and every live batch's reservation are counted; None: no budget."""
    if run.budget_usd is None:
        return None
    reserved = session.execute(select(func.coalesce(func.sum(ProviderBatch.estimated_cost_usd), 0.0)).where(
        col(ProviderBatch.run_id) == run.id, col(ProviderBatch.status).in_(LIVE_BATCH_STATUSES))).scalar_one()
    return float(run.budget_usd) - float(run.cost_usd or 0.0) - float(reserved or 0.0)


# --------------------------------------------------------------------------------------------- assembling
def _held() -> Exists:
    """The request is in a live batch (correlated on ``rating_request.id``)."""
    return exists().where(col(ProviderBatchRequest.request_id) == col(RatingRequest.id),
                          col(ProviderBatchRequest.batch_id) == col(ProviderBatch.id),
                          col(ProviderBatch.status).in_(LIVE_BATCH_STATUSES))


def _claimable(run_id: int, model_spec_id: int, limit: int) -> Select[int | None]:
    return (select(col(RatingRequest.id)).where(col(RatingRequest.run_id) == run_id,
                                           col(RatingRequest.model_spec_id) == model_spec_id,
                                           col(RatingRequest.status) == RequestStatus.pending.value, ~_held())
            .order_by(col(RatingRequest.id)).limit(limit))


def assemble_batches(bctx: BatchContext, run_id: int, model_spec_id: int) -> TickReport:
    """Put the run's pending requests for one model into new batch rows (status ``preparing``), each within
    the provider's request and byte limits and, together with the live batches, within the run's budget.
    Marks the run ``budget_exhausted`` when nothing more fits and no batch is live."""
    report = TickReport()
    engine = bctx.engine
    with Session(engine, expire_on_commit=False) as session:
        spec = session.get(ModelSpec, model_spec_id)
    if spec is None:
        return report
    client = bctx.client(spec)
    if client is None:
        return report
    limits = client.limits
    while True:
        with Session(engine, expire_on_commit=False) as session:
            run = session.get(Run, run_id)
            if run is None or run.status != RunStatus.running.value:
                return report
            room = _budget_room(session, run)
            ids = list(session.execute(_claimable(run_id, model_spec_id, limits.max_requests)).scalars())
        if not ids:
            return report
        chosen: list[int] = []
        size, estimate = 0, 0.0
        over_budget = False
        for job in _jobs(engine, ids):
            messages = bctx.messages(job)
            item_size = client.encoded_size(BatchItem(str(job.request.id), provider_request(job, messages)))
            cost = _estimated_cost(job, messages)
            if room is not None and estimate + cost > room:
                over_budget = True
                break
            if size + item_size > limits.max_bytes and chosen:
                break
            chosen.append(job.request.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
            size += item_size
            estimate += cost
        if not chosen:
            if over_budget and not live_batches(engine, run_id):
                _exhaust_budget(engine, run_id)
            return report
        claimed = _claim(engine, run_id, spec, chosen, size, estimate)
        if claimed == 0:
            return report                       # another process took them meanwhile
        report.assembled += 1
        if over_budget:
            return report                       # the rest waits until live batches settle their cost
        if len(chosen) == len(ids) and len(ids) < limits.max_requests:
            return report                       # every pending request is in a batch now


def _claim(engine: Engine, run_id: int, spec: ModelSpec, ids: list[int], size: int, estimate: float) -> int:
    """One transaction: the batch row, the requests pending -> queued under its tag, the mapping rows."""
    now = utcnow()
    with Session(engine) as session:
        batch = ProviderBatch(run_id=run_id, model_spec_id=spec.id, provider=spec.provider,  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                              status=BatchStatus.preparing.value, bytes=size, estimated_cost_usd=estimate,
                              created_at=now, updated_at=now)
        session.add(batch)
        session.flush()
        tag = chunk_tag(batch.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        for start in range(0, len(ids), _ID_BATCH):
            part = ids[start:start + _ID_BATCH]
            session.execute(update(RatingRequest).where(
                col(RatingRequest.id).in_(part), col(RatingRequest.status) == RequestStatus.pending.value,
                ~_held()).values(status=RequestStatus.queued.value, chunk_id=tag, leased_until=None,
                        attempts=RatingRequest.attempts + 1, updated_at=now))
        claimed = list(session.execute(select(col(RatingRequest.id)).where(
            col(RatingRequest.chunk_id) == tag, col(RatingRequest.status) == RequestStatus.queued.value)).scalars())
        if not claimed:
            session.rollback()
            return 0
        session.execute(insert(ProviderBatchRequest), [{"batch_id": batch.id, "request_id": rid} for rid in claimed])
        batch.request_count = len(claimed)
        session.add(batch)
        session.commit()
        return len(claimed)


def _exhaust_budget(engine: Engine, run_id: int) -> None:
    with Session(engine) as session:
        session.execute(update(Run).where(col(Run.id) == run_id, col(Run.status) == RunStatus.running.value)
                        .values(status=RunStatus.budget_exhausted.value))
        session.commit()


# ---------------------------------------------------------------------------------------------- submitting
def _update_batch(engine: Engine, batch_id: int, **values: object) -> None:
    with Session(engine) as session:
        session.execute(update(ProviderBatch).where(col(ProviderBatch.id) == batch_id)
                        .values(updated_at=utcnow(), **values))
        session.commit()


def _known_external_ids(engine: Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.execute(select(col(ProviderBatch.external_id)).where(
            col(ProviderBatch.external_id).is_not(None))).scalars())


def _held_jobs(bctx: BatchContext, batch: ProviderBatch) -> list[Job]:
    """The batch's requests that still wait for an answer (queued under its tag, or put back to pending by
    a stray lease release while the batch was live)."""
    tag = chunk_tag(batch.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
    jobs = _jobs(bctx.engine, batch_request_ids(bctx.engine, batch.id))  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
    return [j for j in jobs if j.request.chunk_id == tag or j.request.status == RequestStatus.pending.value]


def _batch_client(bctx: BatchContext, batch: ProviderBatch) -> BatchClient | None:
    """The batch client of the batch's model, or None when the model is gone or has no batch API."""
    with Session(bctx.engine, expire_on_commit=False) as session:
        spec = session.get(ModelSpec, batch.model_spec_id)
    return bctx.client(spec) if spec is not None else None


async def submit_batch(bctx: BatchContext, batch: ProviderBatch, *, resend: bool = True) -> TickReport:
    """Send a ``preparing`` batch to its provider; for a ``submitting`` one, adopt the provider's batch if
    the earlier attempt created it, else send it again (``resend=False``: abandon it instead, for a run that
    was stopped)."""
    report = TickReport()
    engine = bctx.engine
    client = _batch_client(bctx, batch)
    if client is None:
        abandon_batch(bctx, batch, f"model {batch.model_spec_id} has no batch API", report, retry=False)
        return report
    key = batch_key(batch)
    if batch.status == BatchStatus.submitting.value:
        try:
            found = await client.find(key, batch.request_count, batch.created_at, _known_external_ids(engine))
        except ProviderError as err:
            report.errors.append(f"batch {batch.id}: looking for an earlier submission failed: {err}")
            _update_batch(engine, batch.id, error=str(err)[:2000])  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
            return report
        if found is not None:
            log.info("batch %s: adopting provider batch %s created by an earlier attempt", batch.id, found)
            _update_batch(engine, batch.id, external_id=found, status=BatchStatus.submitted.value,  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                          submitted_at=utcnow(), error=None)
            report.submitted += 1
            return report
    if not resend:
        abandon_batch(bctx, batch, f"run {_run_status(engine, batch.run_id)}", report, retry=True, kind=CANCELED)
        return report
    jobs = _held_jobs(bctx, batch)
    if not jobs:
        _mark_collected(engine, batch.id, {})  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        return report
    items = [BatchItem(str(job.request.id), provider_request(job, bctx.messages(job))) for job in jobs]
    _update_batch(engine, batch.id, status=BatchStatus.submitting.value, request_count=len(items))  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
    try:
        submitted = await client.submit(items, key)
    except ProviderError as err:
        if err.retryable:           # it may have reached the provider: the next pass looks before resending
            report.errors.append(f"batch {batch.id}: submission failed, will retry: {err}")
            _update_batch(engine, batch.id, error=str(err)[:2000])  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        else:                       # refused as a whole (auth, unknown model, bad file): trying again won't help
            abandon_batch(bctx, batch, str(err), report, retry=False)
        return report
    except ValueError as err:
        abandon_batch(bctx, batch, str(err), report, retry=True)
        return report
    _update_batch(engine, batch.id, external_id=submitted.external_id, input_file_id=submitted.input_file_id,  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                  provider_status=submitted.provider_status, status=BatchStatus.submitted.value,
                  submitted_at=utcnow(), error=None)
    report.submitted += 1
    return report


def abandon_batch(bctx: BatchContext, batch: ProviderBatch, error: str, report: TickReport, *, retry: bool,
                  kind: str = ERRORED) -> None:
    """A batch that will never run (refused as a whole, or its run was stopped before it was sent): its
    requests go back to pending (``retry``), fail, or are cancelled when the run was stopped."""
    report.errors.append(f"batch {batch.id}: {error}")
    for job in _held_jobs(bctx, batch):
        _settle(bctx, job, kind, error, retryable=retry, run_status=_run_status(bctx.engine, batch.run_id),
                report=report)
    _update_batch(bctx.engine, batch.id, status=BatchStatus.abandoned.value, error=error[:2000],  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                  collected_at=utcnow())


# ------------------------------------------------------------------------------------ polling, collecting
def _run_status(engine: Engine, run_id: int) -> str:
    with Session(engine) as session:
        return str(session.execute(select(col(Run.status)).where(col(Run.id) == run_id)).scalar_one())


async def poll_batch(bctx: BatchContext, batch: ProviderBatch) -> tuple[BatchState | None, TickReport]:
    """Ask the provider how a submitted batch is doing; record it; cancel it if the run was stopped."""
    report = TickReport()
    engine = bctx.engine
    with Session(engine, expire_on_commit=False) as session:
        spec = session.get(ModelSpec, batch.model_spec_id)
    client = bctx.client(spec) if spec is not None else None
    if client is None or batch.external_id is None:
        return None, report
    try:
        state = await client.poll(batch.external_id)
    except ProviderError as err:
        report.errors.append(f"batch {batch.id}: polling failed: {err}")
        return None, report
    report.polled += 1
    values: dict[str, object] = {"provider_status": state.provider_status, **{n: state.counts[n] for n in STORED_COUNTS},
                                 "output_file_id": state.output_file_id, "error_file_id": state.error_file_id}
    if state.ended:
        values.update(status=BatchStatus.ended.value, ended_at=utcnow(), error=state.error)
        report.ended += 1
    _update_batch(engine, batch.id, **values)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
    if not state.ended and state.provider_status not in CANCELLING_STATUSES \
            and _run_status(engine, batch.run_id) in STOPPED_RUN_STATUSES:
        try:
            await client.cancel(batch.external_id)
        except ProviderError as err:    # e.g. already finalizing: its results will still be collected
            report.errors.append(f"batch {batch.id}: cancel refused: {err}")
    return state, report


def _stored_state(batch: ProviderBatch) -> BatchState:
    return BatchState(external_id=batch.external_id or "", provider_status=batch.provider_status or "",
                      ended=True, counts=Counter({n: getattr(batch, n) for n in STORED_COUNTS}),
                      output_file_id=batch.output_file_id, error_file_id=batch.error_file_id, error=batch.error)


async def collect_batch(bctx: BatchContext, batch: ProviderBatch, state: BatchState | None = None) -> TickReport:
    """Store an ended batch's results and settle every request it held; safe to repeat."""
    report = TickReport()
    engine = bctx.engine
    client = _batch_client(bctx, batch)
    if client is None:
        return report
    state = state or _stored_state(batch)
    jobs = _held_jobs(bctx, batch)
    calls: dict[str, tuple[Job, list[dict[str, str]], ProviderRequest]] = {}
    for job in jobs:
        messages = bctx.messages(job)
        calls[str(job.request.id)] = (job, messages, provider_request(job, messages))
    results: dict[str, BatchResult] = {}
    if calls:
        try:
            for result in await client.results(state, {cid: call[2] for cid, call in calls.items()}):
                results[result.custom_id] = result
        except Exception as err:  # noqa: BLE001 - any failure here is retried on the next tick
            report.errors.append(f"batch {batch.id}: downloading results failed, will retry: "
                                 f"{type(err).__name__}: {err}")
            return report
    run_status = _run_status(engine, batch.run_id)
    outcomes: dict[int, tuple[str, str | None]] = {}
    for custom_id, (job, messages, _) in calls.items():
        got = results.get(custom_id)
        if got is not None and got.kind == SUCCEEDED and got.response is not None:
            if job.generates:   # a subject's answer (stored with its judge requests)
                fields = generation_fields(job, got.response,
                                           response_cost(job.spec, got.response, job.spec.batch_discount))
            else:
                fields = await answer_fields(bctx.execution, job, messages, got.response,  # type: ignore[arg-type]  # __post_init__ sets execution
                                             discount=job.spec.batch_discount)
            fields["provider_batch_id"] = batch.id
            if store_rating(bctx.execution, job, fields, cache_hit=False, attempts=job.request.attempts):  # type: ignore[arg-type]  # __post_init__ sets execution
                report.stored += 1
            outcomes[job.request.id] = (SUCCEEDED, None)  # type: ignore[index]  # a stored row's id is set (flushed or loaded)
            continue
        kind = got.kind if got is not None else MISSING
        error = (got.error if got is not None else None) or state.error or \
            f"batch {batch.external_id} ended ({state.provider_status}) without a result for this request"
        retryable = got.retryable if got is not None else True
        _settle(bctx, job, kind, error, retryable=retryable, run_status=run_status, report=report)
        outcomes[job.request.id] = (kind, error)  # type: ignore[index]  # a stored row's id is set (flushed or loaded)
    _mark_collected(engine, batch.id, outcomes)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
    report.collected += 1
    return report


def _settle(bctx: BatchContext, job: Job, kind: str, error: str, *, retryable: bool, run_status: str,
            report: TickReport) -> None:
    """A request the batch did not answer: fail it (permanent error, or attempts used up), cancel it (the
    run was stopped), or send it back to pending for the next batch."""
    req = job.request
    if kind == ERRORED and not retryable:
        if finish_request(bctx.engine, req, RequestStatus.failed.value, error, req.attempts):
            report.failed += 1
        return
    if run_status in STOPPED_RUN_STATUSES:
        if finish_request(bctx.engine, req, RequestStatus.cancelled.value, f"run {run_status}", req.attempts):
            report.cancelled += 1
        return
    if req.attempts >= bctx.max_attempts:
        message = f"{error} (gave up after {req.attempts} batch submissions)"
        if finish_request(bctx.engine, req, RequestStatus.failed.value, message, req.attempts):
            report.failed += 1
        return
    with Session(bctx.engine) as session:
        n = session.execute(update(RatingRequest).where(
            col(RatingRequest.id) == req.id, col(RatingRequest.status).in_(ACTIVE_REQUEST_STATUSES))  # type: ignore[attr-defined]  # DML: a CursorResult (rowcount)
            .values(status=RequestStatus.pending.value, chunk_id=None, leased_until=None,
                    last_error=error[:2000], updated_at=utcnow())).rowcount
        session.commit()
    report.released += int(bool(n))


def _mark_collected(engine: Engine, batch_id: int, outcomes: dict[int, tuple[str, str | None]]) -> None:
    with Session(engine) as session:
        for request_id, (kind, error) in outcomes.items():
            session.execute(update(ProviderBatchRequest).where(
                col(ProviderBatchRequest.batch_id) == batch_id, col(ProviderBatchRequest.request_id) == request_id)
                .values(outcome=kind, error=(error or None) and error[:2000]))
        session.execute(update(ProviderBatch).where(col(ProviderBatch.id) == batch_id)
                        .values(status=BatchStatus.collected.value, collected_at=utcnow(), updated_at=utcnow()))
        session.commit()
