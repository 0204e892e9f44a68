"""Subjects' answers: the fields of an answer from a provider response, cached answers, and storing answers
with their judge requests.

``store_answers`` is the answer-side twin of ``execute.store_ratings``: one transaction inserts the answers
(``ON CONFLICT (request_id) DO NOTHING``, so an answer is never stored twice), marks their generate requests
done, inserts the judge requests of each answer stored now (``judge_requests.judge_rows``) and of the pairs
and lists of answers they complete (``comparisons.comparison_rows``, after locking the run rows so concurrent
workers see each other's answers) and updates the run's counters (``total`` grows by the judge requests)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from accord.models.schema import Answer, RatingRequest, Run, RunStatus, utcnow
from accord.worker.comparisons import comparison_plans, comparison_rows, lock_runs
from accord.worker.judge_requests import judge_rows, load_judge_plans
from accord.worker.parsing import parse_answer
from accord.worker.providers.base import ProviderResponse
from accord.worker.request_rows import conflict_insert, mark_done

if TYPE_CHECKING:
    from accord.worker.execute import Job

# Fields copied from an original answer into a cache hit.
ANSWER_CACHED_FIELDS = ("text", "label", "value", "status", "finish_reason", "model_snapshot", "decoding",
                        "input_tokens", "output_tokens")


def generation_fields(job: "Job", response: ProviderResponse, cost_usd: float) -> dict[str, Any]:
    """An answer's fields. A template with labels (multiple choice) has its choice parsed, never guessed; a
    free-text answer is ``ok`` unless it is empty or was cut off (``truncated``, still judged). No repair
    calls: a subject's answer is the data under study."""
    text_ = response.text or ""
    label = value = None
    if job.template.labels:
        parsed = parse_answer(text_, job.template.labels, finish_reason=response.finish_reason,
                              pattern=job.template.pattern)
        label, value, status = parsed.label, parsed.value, parsed.status
    elif not text_.strip():
        status = "empty"
    elif response.finish_reason == "length":
        status = "truncated"
    else:
        status = "ok"
    return {"text": text_, "label": label, "value": value, "status": status,
            "finish_reason": response.finish_reason, "model_snapshot": response.model_snapshot,
            "decoding": job.params, "input_tokens": response.input_tokens, "output_tokens": response.output_tokens,
            "latency_ms": response.latency_ms, "cost_usd": cost_usd}


def prefetch_answers(session: Session, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The first original (non-copied) answer stored for each cache key."""
    found: dict[str, dict[str, Any]] = {}
    if not keys:
        return found
    rows = session.execute(select(Answer).where(col(Answer.cache_key).in_(keys), col(Answer.cache_hit).is_(False))
                           .order_by(col(Answer.id))).scalars()
    for src in rows:
        if src.cache_key not in found:
            found[src.cache_key] = {**{f: getattr(src, f) for f in ANSWER_CACHED_FIELDS}, "source_answer_id": src.id}
    return found


def store_answers(engine: Engine, answers: list[tuple["Job", dict[str, Any], bool, int]]) -> dict[int, int]:
    """Store answers, mark their requests done and create their judge requests, in one transaction.
    Returns {request id: answer id} of the answers stored now."""
    if not answers:
        return {}
    now = utcnow()
    rows = []
    for job, fields, cache_hit, _ in answers:
        req = job.request
        rows.append({"request_id": req.id, "run_id": req.run_id, "item_id": req.item_id,
                     "model_spec_id": req.model_spec_id, "template_id": req.template_id,
                     "sample_index": req.sample_index, "cache_key": req.cache_key, "cache_hit": cache_hit,
                     "source_answer_id": fields.get("source_answer_id"), "created_at": now,
                     "text": fields.get("text") or "", "label": fields.get("label"), "value": fields.get("value"),
                     "status": fields["status"], "finish_reason": fields.get("finish_reason"),
                     "model_snapshot": fields.get("model_snapshot"), "decoding": fields.get("decoding") or {},
                     "input_tokens": int(fields.get("input_tokens") or 0),
                     "output_tokens": int(fields.get("output_tokens") or 0),
                     "latency_ms": float(fields.get("latency_ms") or 0.0),
                     "cost_usd": float(fields.get("cost_usd") or 0.0)})
    by_request = {job.request.id: (job, fields, cache_hit, attempts) for job, fields, cache_hit, attempts in answers}
    table = Answer.__table__  # type: ignore[attr-defined]  # SQLModel sets __table__ on table classes
    with Session(engine) as session:
        stmt = (conflict_insert(engine)(table).values(rows).on_conflict_do_nothing(index_elements=["request_id"])
                .returning(table.c.request_id, table.c.id))
        stored = {int(rid): int(aid) for rid, aid in session.execute(stmt).all()}
        if stored:
            mark_done(session.connection(), {rid: by_request[rid][3] for rid in stored}, now)
            run_ids = {by_request[rid][0].request.run_id for rid in stored}
            plans = load_judge_plans(session, run_ids)
            # A cancelled or exhausted run judges nothing more (an answer in flight at the cancel still lands).
            stopped = set(session.execute(select(col(Run.id)).where(col(Run.id).in_(run_ids), col(Run.status).in_(
                (RunStatus.cancelled.value, RunStatus.budget_exhausted.value)))).scalars())
            plans = {r: ([] if r in stopped else p) for r, p in plans.items()}
            comparing = sorted(r for r, p in plans.items() if comparison_plans(p))
            lock_runs(session, comparing)
            judge_requests: list[dict[str, Any]] = []
            runs: dict[int, list[float]] = {}
            for rid, answer_id in stored.items():
                job, fields, cache_hit, _ = by_request[rid]
                req = job.request
                new = judge_rows(plans[req.run_id], run_id=req.run_id, item_id=req.item_id,
                                 generation_template_id=req.template_id, answer_id=answer_id,
                                 answer_status=fields["status"], content=job.content, item=job.item,
                                 answer_text=fields.get("text") or "", now=now)
                judge_requests.extend(new)
                totals = runs.setdefault(req.run_id, [0, 0, 0.0, 0, 0, 0])
                totals[0] += 1
                totals[1] += int(cache_hit)
                totals[2] += float(fields.get("cost_usd") or 0.0)
                totals[3] += 0 if cache_hit else int(fields.get("input_tokens") or 0)
                totals[4] += 0 if cache_hit else int(fields.get("output_tokens") or 0)
                totals[5] += len(new)
            if judge_requests:
                session.connection().execute(RatingRequest.__table__.insert(), judge_requests)  # type: ignore[attr-defined]  # SQLModel sets __table__ on table classes
            for run_id in comparing:
                items = {by_request[rid][0].request.item_id: (by_request[rid][0].content, by_request[rid][0].item)
                         for rid in stored if by_request[rid][0].request.run_id == run_id}
                n_subjects = plans[run_id][0].n_subjects
                new_rows = comparison_rows(session, run_id, plans[run_id], n_subjects, items, now)
                if new_rows:
                    session.connection().execute(RatingRequest.__table__.insert(), new_rows)  # type: ignore[attr-defined]  # SQLModel sets __table__ on table classes
                    runs[run_id][5] += len(new_rows)
            for run_id, (done, cached, cost, it, ot, added) in runs.items():
                session.execute(
                    text("UPDATE run SET done = done + :d, cached = cached + :c, cost_usd = cost_usd + :cost, "
                         "input_tokens = input_tokens + :it, output_tokens = output_tokens + :ot, "
                         "total = total + :added WHERE id = :id"),
                    {"d": int(done), "c": int(cached), "cost": cost, "it": int(it), "ot": int(ot),
                     "added": int(added), "id": run_id})
        session.commit()
    return stored
