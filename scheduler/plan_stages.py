"""``accord plan`` for the subjects and judges stages: one row per stage and model. Subjects: every generation
request rendered with its item (answers already in the cache cost nothing). Judges: one request per answer
the subjects will give (if every generation succeeds) x judge x template x sample, its input estimated with
an answer as long as the generation template's output cap allows, its output at the judge's cap; none is
counted as cached (the answers are not known yet), so the judges' figure is an upper bound. Pairwise judges:
k (k - 1) requests per item, generation template and sample (k subjects), listwise judges one, each showing
answers of that length."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlmodel import Session, col

from accord.models.schema import Answer
from accord.scheduler.campaign_spec import CampaignSpec
from accord.scheduler.expand import Expansion, effective_price
from accord.scheduler.stages import generation_requests, judge_calls_per_group, placeholder_answers
from accord.worker.decoding import request_decoding
from accord.worker.execute import estimate_tokens
from accord.worker.prompt_templates import COMPARISON_FORMATS, item_variables, render_messages
from accord.worker.stage_decoding import stage_base_decoding

if TYPE_CHECKING:
    from accord.scheduler.plan import ModelPlan

CHARS_PER_TOKEN = 3.5          # the same ratio as estimate_tokens
DEFAULT_ANSWER_TOKENS = 256    # an open answer's assumed length when nothing caps it
_KEY_BATCH = 900


def _cached_answers(session: Session, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), _KEY_BATCH):
        found.update(session.execute(select(col(Answer.cache_key)).where(
            col(Answer.cache_key).in_(keys[i:i + _KEY_BATCH]), col(Answer.cache_hit).is_(False))).scalars())
    return found


def stage_plans(session: Session, spec: CampaignSpec, expansion: "Expansion", default_output_cap: int,
                make_plan: "type[ModelPlan]") -> list["ModelPlan"]:
    out: list[ModelPlan] = []
    if spec.subjects is None:
        return out
    stages = expansion.stages
    plans = {m.name: make_plan(model=m.name, provider=m.provider, rpm=m.rpm, tpm=m.tpm, stage="subjects",
                               price_source=effective_price(m).source) for m in spec.subjects.models}
    rows = [(g.model.name, g.cache_key, estimate_tokens(g.messages, 0),
             int(g.decoding.get("max_tokens") or default_output_cap))
            for g in generation_requests(spec, stages, expansion.items, expansion.cache_scope)]
    cached = _cached_answers(session, [k for _, k, _, _ in rows]) if spec.cache is True else set()
    tally(plans, rows, cached)
    for m in spec.subjects.models:
        price = effective_price(m)
        plans[m.name].cost_usd = (plans[m.name].input_tokens * price.input + plans[m.name].output_tokens * price.output) / 1e6
    out.extend(plans.values())
    if spec.judges is None:
        return out
    doc = spec.model_dump(mode="json")
    k = len(spec.subjects.models)
    gen_base, judge_base = stage_base_decoding(doc, "generate"), stage_base_decoding(doc, "judge")
    for judge in spec.judges.models:
        p = make_plan(model=judge.name, provider=judge.provider, rpm=judge.rpm, tpm=judge.tpm, stage="judges",
                      price_source=effective_price(judge).source)
        judge_decoding = judge.decoding.model_dump(exclude_none=True) if judge.decoding else {}
        for subject in spec.subjects.models:
            subject_decoding = subject.decoding.model_dump(exclude_none=True) if subject.decoding else {}
            for gen in stages.judged:
                cap = request_decoding(gen_base, subject_decoding, gen.max_tokens, 0).get("max_tokens")
                placeholder = "x" * int((cap or DEFAULT_ANSWER_TOKENS) * CHARS_PER_TOKEN)
                for tmpl in stages.judge_templates:
                    out_cap = int(request_decoding(judge_base, judge_decoding, tmpl.max_tokens, 0).get("max_tokens")
                                  or default_output_cap)
                    # A comparison's requests are counted once per group, under the first subject's caps.
                    if tmpl.response_format in COMPARISON_FORMATS and subject is not spec.subjects.models[0]:
                        continue
                    per_group = judge_calls_per_group(tmpl, k) if tmpl.response_format in COMPARISON_FORMATS else 1
                    for item in expansion.items:
                        messages = render_messages(tmpl, item.content, **placeholder_answers(tmpl, k, placeholder),
                                                   item=item_variables(item.external_id, item.content, item.meta))
                        n = spec.subjects.samples * spec.judges.samples * per_group
                        p.requests += n
                        p.input_tokens += n * estimate_tokens(messages, 0)
                        p.output_tokens += n * out_cap
        price = effective_price(judge)
        p.cost_usd = (p.input_tokens * price.input + p.output_tokens * price.output) / 1e6
        out.append(p)
    return out


def tally(plans: dict[str, ModelPlan], rows: list[tuple[str, str, int, int]], cached: set[str]) -> None:
    """Count (model name, cache key, input tokens, output tokens) rows into the models' plans: a request whose
    key is cached costs nothing."""
    for name, key, tokens_in, tokens_out in rows:
        p = plans[name]
        p.requests += 1
        if key in cached:
            p.cached += 1
            continue
        p.input_tokens += tokens_in
        p.output_tokens += tokens_out
