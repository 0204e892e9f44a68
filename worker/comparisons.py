"""Pairwise and listwise judge requests: answers of one item compared in one call.

The answers compared belong to one *group*: the same run, item, generation template and sample index, one per
subject model. A pairwise judge is asked about every ordered pair of two subjects' answers (both orders, so its
position bias can be measured), as soon as both answers exist; a listwise judge orders the group's usable answers
once every subject of the run has settled it — answered (usably or not) or failed for good — and at least two
answers are usable (a failed subject's generation triggers the check too: ``complete_after_failure``). The
order of a list is fixed per group by a hash of the group and the subjects (``list_order``), so which subject is
shown first varies across items rather than following the campaign's order, and is the same in every run.

``comparison_rows`` runs inside ``store_answers``' transaction after the run rows are locked, so two workers
storing the two halves of a pair cannot both miss each other; each comparison (``answer_comparison``, unique per
run and order) is inserted with its judge requests, so no pair or list is created or asked twice, also after a
crash."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from itertools import permutations
from typing import Any

from accord.models.schema import Answer, AnswerComparison, Item, RatingRequest, RequestStatus, Run
from accord.worker.decoding import request_decoding
from accord.worker.judge_requests import JUDGED_STATUSES, JudgePlan, load_judge_plans
from accord.worker.prompt_templates import cache_key, item_variables, render_messages
from sqlalchemy import select
from sqlmodel import Session, col

KINDS = {"pairwise": "pair", "listwise": "list"}


@dataclass(frozen=True)
class GroupAnswer:
    answer_id: int
    subject_id: int
    text: str


def list_order(answers: list[GroupAnswer], group: str) -> tuple[GroupAnswer, ...]:
    """The order a listwise judge sees a group's answers in: by a hash of the group (item, generation template,
    sample) and each answer's subject — not the campaign's order of subjects, varying across items, and the same
    in every run, so a rerun's identical lists are answered from the cache."""
    return tuple(sorted(answers, key=lambda a: hashlib.sha256(f"{group}:{a.subject_id}".encode()).hexdigest()))


def group_orders(kind: str, answers: list[GroupAnswer], settled: int, n_subjects: int, group: str = ""
                 ) -> list[tuple[GroupAnswer, ...]]:
    """The comparisons a group's usable ``answers`` make: every ordered pair (``pair``), or the one list once
    ``settled`` (subjects with an answer of any status or a failed generation) reaches ``n_subjects`` (``list``)."""
    if kind == "pair":
        return list(permutations(sorted(answers, key=lambda a: a.answer_id), 2))
    if settled >= n_subjects and len(answers) >= 2:
        return [list_order(answers, group)]
    return []


def answers_key(kind: str, order: tuple[GroupAnswer, ...]) -> str:
    return f"{kind}:" + ",".join(str(a.answer_id) for a in order)


def comparison_plans(plans: list[JudgePlan]) -> list[JudgePlan]:
    return [p for p in plans if p.template.response_format in KINDS]


def comparison_rows(session: Session, run_id: int, plans: list[JudgePlan], n_subjects: int,
                    items: dict[int, tuple[dict[str, Any], dict[str, Any]]], now: Any) -> list[dict[str, Any]]:
    """Insert the comparisons the run's stored answers of ``items`` (item id -> content, template variables)
    now complete, and return the judge request rows for them (to insert in the same transaction). The caller
    holds the run's row lock."""
    plans = comparison_plans(plans)
    if not plans or not items:
        return []
    judged = set().union(*(p.answers_of for p in plans))
    rows = session.execute(
        select(col(Answer.id), col(Answer.item_id), col(Answer.model_spec_id), col(Answer.template_id),
               col(Answer.sample_index), col(Answer.text), col(Answer.status))
        .where(col(Answer.run_id) == run_id, col(Answer.item_id).in_(list(items)),
               col(Answer.template_id).in_(list(judged)))
        .order_by(col(Answer.id))).all()
    groups: dict[tuple[int, int, int], list[GroupAnswer]] = defaultdict(list)
    settled: dict[tuple[int, int, int], set[int]] = defaultdict(set)
    for aid, item_id, subject_id, template_id, sample, text_, status in rows:
        settled[(item_id, template_id, sample)].add(subject_id)
        if status in JUDGED_STATUSES:
            groups[(item_id, template_id, sample)].append(GroupAnswer(aid, subject_id, text_ or ""))
    if any(KINDS[p.template.response_format] == "list" for p in plans):
        for item_id, subject_id, template_id, sample in session.execute(
                select(col(RatingRequest.item_id), col(RatingRequest.model_spec_id),
                       col(RatingRequest.template_id), col(RatingRequest.sample_index))
                .where(col(RatingRequest.run_id) == run_id, col(RatingRequest.stage) == "generate",
                       col(RatingRequest.status) == RequestStatus.failed.value,
                       col(RatingRequest.item_id).in_(list(items)))).all():
            settled[(item_id, template_id, sample)].add(subject_id)
    existing = set(session.execute(select(col(AnswerComparison.answers_key)).where(
        col(AnswerComparison.run_id) == run_id, col(AnswerComparison.item_id).in_(list(items)))).scalars())
    out: list[dict[str, Any]] = []
    for (item_id, template_id, _sample), answers in sorted(groups.items()):
        content, variables = items[item_id]
        for kind in sorted({KINDS[p.template.response_format] for p in plans if template_id in p.answers_of}):
            for order in group_orders(kind, answers, len(settled[(item_id, template_id, _sample)]), n_subjects,
                                      f"{item_id}:{template_id}:{_sample}"):
                key = answers_key(kind, order)
                if key in existing:
                    continue
                existing.add(key)
                comparison = AnswerComparison(run_id=run_id, item_id=item_id, kind=kind,
                                              answer_ids=[a.answer_id for a in order], answers_key=key)
                session.add(comparison)
                session.flush()
                texts = [a.text for a in order]
                for plan in plans:
                    if KINDS[plan.template.response_format] != kind or template_id not in plan.answers_of:
                        continue
                    messages = render_messages(plan.template, content, item=variables, answers=texts)
                    for s in range(plan.samples):
                        dec = request_decoding(plan.base_decoding, plan.model_decoding, plan.template.max_tokens, s)
                        ck = cache_key(plan.provider, plan.model, plan.base_url, messages, dec,
                                       list(plan.template.labels), s, plan.path, scope=plan.scope)
                        out.append({"run_id": run_id, "stage": "judge", "answer_id": None,
                                    "comparison_id": comparison.id, "item_id": item_id,
                                    "model_spec_id": plan.model_spec_id, "template_id": plan.template_id,
                                    "persona_key": "", "persona": {}, "sample_index": s, "status": "pending",
                                    "attempts": 0, "updated_at": now, "cache_key": ck})
    return out


def lock_runs(session: Session, run_ids: list[int]) -> None:
    """Serialise comparison creation per run: a concurrent store waits here, then sees the other's answers.
    FOR NO KEY UPDATE: the answers' foreign keys hold KEY SHARE locks on the run row, which a plain FOR UPDATE
    would wait for (two stores would deadlock); NO KEY UPDATE still excludes another store."""
    if run_ids:
        session.execute(select(col(Run.id)).where(col(Run.id).in_(sorted(run_ids))).order_by(col(Run.id))
                        .with_for_update(key_share=True)).all()


def complete_after_failure(session: Session, run_id: int, item_id: int, now: Any) -> int:
    """A subject's generation failed for good: the lists its group was waiting for may now be complete. Creates
    them with their judge requests (in the caller's transaction) and returns how many requests were added."""
    plans = comparison_plans(load_judge_plans(session, {run_id})[run_id])
    if not any(KINDS[p.template.response_format] == "list" for p in plans):
        return 0
    stopped = session.execute(select(col(Run.status)).where(col(Run.id) == run_id)).scalar_one()
    if stopped in ("cancelled", "budget_exhausted"):
        return 0
    lock_runs(session, [run_id])
    item = session.execute(select(Item).where(col(Item.id) == item_id)).scalar_one()
    items = {item_id: (item.content, item_variables(item.external_id, item.content, item.meta))}
    rows = comparison_rows(session, run_id, plans, plans[0].n_subjects, items, now)
    if rows:
        session.connection().execute(RatingRequest.__table__.insert(), rows)  # type: ignore[attr-defined]  # SQLModel sets __table__ on table classes
    return len(rows)
