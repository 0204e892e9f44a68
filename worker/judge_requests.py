"""Judge requests for a stored answer: one per judge assignment of the run (judge model x rating template)
whose ``answers_of`` holds the answer's generation template, and per judge sample, rendered with the item's
fields and the answer, with the cache key of the call they will make. ``store_answers`` inserts them in the
transaction that stores the answer, so a judge can start as soon as an answer exists and a crash never leaves
an answer without its judge requests (nor creates them twice: ``uq_request_answer``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from accord.models.projects import cache_scope
from accord.models.schema import Campaign, JudgeAssignment, ModelSpec, Project, PromptTemplate, Run, join_rater_context
from accord.worker.decoding import request_decoding
from accord.worker.prompt_templates import COMPARISON_FORMATS, ResolvedTemplate, cache_key, render_messages
from accord.worker.stage_decoding import stage_base_decoding

JUDGED_STATUSES = ("ok", "truncated")   # an empty or refused answer has nothing to judge


@dataclass(frozen=True)
class JudgePlan:
    """One judge assignment, resolved: what ``judge_rows`` needs to render and key its requests."""

    model_spec_id: int
    template_id: int
    template: ResolvedTemplate
    samples: int
    answers_of: frozenset[int]
    provider: str
    model: str
    base_url: str | None
    path: str | None
    model_decoding: dict[str, Any]
    base_decoding: dict[str, Any]
    scope: str
    n_subjects: int = 0   # subject models of the run (a listwise judge waits for all their answers)


def load_judge_plans(session: Session, run_ids: set[int]) -> dict[int, list[JudgePlan]]:
    """The judge assignments of each run (an empty list for a run without judges)."""
    out: dict[int, list[JudgePlan]] = {r: [] for r in run_ids}
    if not run_ids:
        return out
    assignments = select(JudgeAssignment, ModelSpec, PromptTemplate, col(Campaign.spec), col(Run.project_id),
                         col(Project.cache_scope))
    rows = session.execute(
        join_rater_context(assignments, JudgeAssignment)
        .outerjoin(Project, col(Project.id) == col(Run.project_id))
        .where(col(JudgeAssignment.run_id).in_(run_ids))
        .order_by(col(JudgeAssignment.id))).all()
    for ja, spec, trow, campaign_doc, project_id, stored_scope in rows:
        tmpl = ResolvedTemplate.from_row(trow.name, trow.version, trow.response_format, trow.system, trow.user,
                                         trow.output_spec)
        out[ja.run_id].append(JudgePlan(
            model_spec_id=spec.id, template_id=trow.id, template=tmpl, samples=ja.samples,
            answers_of=frozenset(int(t) for t in ja.answers_of), provider=spec.provider, model=spec.model,
            base_url=spec.base_url, path=(spec.params or {}).get("path"),
            model_decoding=(spec.params or {}).get("decoding") or {},
            base_decoding=stage_base_decoding(campaign_doc, "judge"),
            scope=cache_scope(project_id, stored_scope),
            n_subjects=len(((campaign_doc or {}).get("subjects") or {}).get("models") or [])))
    return out


def judge_rows(plans: list[JudgePlan], *, run_id: int, item_id: int, generation_template_id: int, answer_id: int,
               answer_status: str, content: dict[str, Any], item: dict[str, Any], answer_text: str,
               now: Any) -> list[dict[str, Any]]:
    """The judge request rows for one stored answer (none if no judge rates answers of its template; pairwise
    and listwise judges rate answers together, ``accord.worker.comparisons``)."""
    if answer_status not in JUDGED_STATUSES:
        return []
    rows = []
    for plan in plans:
        if generation_template_id not in plan.answers_of or plan.template.response_format in COMPARISON_FORMATS:
            continue
        messages = render_messages(plan.template, content, item=item, answer=answer_text)
        for s in range(plan.samples):
            dec = request_decoding(plan.base_decoding, plan.model_decoding, plan.template.max_tokens, s)
            key = cache_key(plan.provider, plan.model, plan.base_url, messages, dec, list(plan.template.labels), s,
                            plan.path, scope=plan.scope)
            rows.append({"run_id": run_id, "stage": "judge", "answer_id": answer_id, "item_id": item_id,
                         "model_spec_id": plan.model_spec_id, "template_id": plan.template_id, "persona_key": "",
                         "persona": {}, "sample_index": s, "status": "pending", "attempts": 0, "updated_at": now,
                         "cache_key": key})
    return rows
