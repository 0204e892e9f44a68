"""The subjects and judges stages of a campaign, resolved against the database at run creation.

Subjects: one ``generate`` request per item x subject model x generation template x sample, rendered with
the item's fields (``item.*``); its result is an ``Answer``. Judges: one ``judge_assignment`` row per judge
model x rating template, naming the generation templates whose answers it judges; the judge requests
themselves are created when each answer is stored (``accord.worker.judge_requests``), in the same transaction.
Pairwise and listwise judges (``COMPARISON_FORMATS``) rate answers of one item together: a pairwise judge each
ordered pair of answers from two subjects (both orders), a listwise judge the k subjects' answers at once
(``accord.worker.comparisons``); ``judge_count`` counts them too, before anything is expanded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError

from accord.models.schema import Item
from accord.scheduler.campaign_spec import CampaignSpec, ModelEntry
from accord.worker.decoding import request_decoding
from accord.worker.prompt_templates import (
    COMPARISON_FORMATS, ResolvedTemplate, cache_key, item_variables, load_template, render_messages,
)
from accord.worker.stage_decoding import stage_base_decoding


class StageError(ValueError):
    """A subjects/judges stage that cannot run; the message names the field."""


@dataclass
class GenerationRequest:
    """One request as the expansion renders it, before it is a row: a subject's generation as it is, an item
    rating with its persona (``expand.ExpandedRequest``)."""

    item: Item
    model: ModelEntry
    template: ResolvedTemplate
    sample_index: int
    messages: list[dict[str, str]]
    decoding: dict[str, Any]
    cache_key: str


@dataclass
class Stages:
    """The resolved templates of the subjects and judges stages (empty when the campaign has none)."""

    subject_templates: list[ResolvedTemplate] = field(default_factory=list)
    judge_templates: list[ResolvedTemplate] = field(default_factory=list)
    judged: list[ResolvedTemplate] = field(default_factory=list)   # subject templates whose answers are judged

    def generation_count(self, spec: CampaignSpec, n_items: int) -> int:
        if spec.subjects is None:
            return 0
        return n_items * len(spec.subjects.models) * len(self.subject_templates) * spec.subjects.samples

    def judged_answer_count(self, spec: CampaignSpec, n_items: int) -> int:
        """Answers the judges will rate if every generation succeeds."""
        if spec.subjects is None or spec.judges is None:
            return 0
        return n_items * len(spec.subjects.models) * len(self.judged) * spec.subjects.samples

    def request_count(self, spec: CampaignSpec, n_items: int) -> int:
        """Requests of both stages if every generation succeeds (for the per-run request limit)."""
        return self.generation_count(spec, n_items) + self.judge_count(spec, n_items)

    def judge_count(self, spec: CampaignSpec, n_items: int) -> int:
        """Judge requests if every generation succeeds: one per answer and per-answer judge call, one per ordered
        pair of two subjects' answers (k (k - 1) per item, template and sample) and pairwise judge call, one per
        item, template and sample and listwise judge call."""
        if spec.judges is None or spec.subjects is None:
            return 0
        k = len(spec.subjects.models)
        groups = n_items * len(self.judged) * spec.subjects.samples
        total = 0
        for t in self.judge_templates:
            per = groups * judge_calls_per_group(t, k) if t.response_format in COMPARISON_FORMATS else \
                self.judged_answer_count(spec, n_items)
            total += per * len(spec.judges.models) * spec.judges.samples
        return total


def resolve_stages(spec: CampaignSpec) -> Stages:
    out = Stages()
    if spec.subjects is None:
        return out
    out.subject_templates = [load_template(t.name, t.path, t.version, t.params) for t in spec.subjects.templates]
    _unique_names("subjects.templates", out.subject_templates)
    for t in out.subject_templates:
        if t.persona:
            raise StageError(f"subjects.templates: {t.name!r} is persona-conditioned; subjects answer as themselves")
    if spec.judges is None:
        return out
    out.judge_templates = [load_template(t.name, t.path, t.version, t.params) for t in spec.judges.templates]
    _unique_names("judges.templates", out.judge_templates)
    for t in out.judge_templates:
        if t.response_format in COMPARISON_FORMATS and len(spec.subjects.models) < 2:
            raise StageError(f"judges.templates: {t.name!r} is {t.response_format}; it compares the answers of "
                             f"two or more subjects (subjects.models has {len(spec.subjects.models)})")
        if t.response_format == "listwise" and len(spec.subjects.models) > 26:
            raise StageError(f"judges.templates: {t.name!r} is listwise; it orders at most 26 answers "
                             f"(subjects.models has {len(spec.subjects.models)})")
        if not t.labels and t.response_format != "listwise":
            raise StageError(f"judges.templates: {t.name!r} is open_ended; a judge's template needs labels")
        if t.persona:
            raise StageError(f"judges.templates: {t.name!r} is persona-conditioned; not supported for judges yet")
    by_name = {t.name: t for t in out.subject_templates}
    if spec.judges.answers_of is not None:
        unknown = [n for n in spec.judges.answers_of if n not in by_name]
        if unknown:
            raise StageError(f"judges.answers_of: no subjects template named {', '.join(map(repr, unknown))} "
                             f"(they are: {', '.join(by_name)})")
        out.judged = [by_name[n] for n in spec.judges.answers_of]
    else:
        out.judged = [t for t in out.subject_templates if t.response_format == "open_ended"]
        if not out.judged:
            raise StageError("judges.answers_of: no subjects template is open_ended; name the templates whose "
                             "answers the judges rate")
    return out


def placeholder_answers(template: ResolvedTemplate, n_subjects: int, text: str) -> dict[str, Any]:
    """``render_messages`` arguments standing for the answers a judge template will see: one answer, or the
    two of a pair, or the ``n_subjects`` of a list, each ``text`` (to check rendering or estimate tokens)."""
    if template.response_format == "pairwise":
        return {"answers": [text, text]}
    if template.response_format == "listwise":
        return {"answers": [text] * max(2, n_subjects)}
    return {"answer": text}


def judge_calls_per_group(template: ResolvedTemplate, n_subjects: int) -> int:
    """Judge requests per answer (per-answer judges), or per item, generation template and sample (pairwise:
    every ordered pair of two subjects' answers; listwise: one list)."""
    if template.response_format == "pairwise":
        return n_subjects * (n_subjects - 1)
    return 1


def _unique_names(where: str, templates: list[ResolvedTemplate]) -> None:
    names = [t.name for t in templates]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StageError(f"{where}: listed twice: {', '.join(dupes)}")


def generation_requests(spec: CampaignSpec, stages: Stages, items: list[Item], scope: str) -> Iterator[GenerationRequest]:
    """items x subjects x generation templates x samples, rendered with the item's fields, with cache keys."""
    if spec.subjects is None:
        return
    base = stage_base_decoding(spec.model_dump(mode="json"), "generate")
    for item in items:
        variables = item_variables(item.external_id, item.content, item.meta)
        for entry in spec.subjects.models:
            model_decoding = entry.decoding.model_dump(exclude_none=True) if entry.decoding else {}
            for tmpl in stages.subject_templates:
                try:
                    messages = render_messages(tmpl, item.content, item=variables)
                except TemplateError as e:
                    raise StageError(f"subjects.templates: {tmpl.name!r} cannot be rendered for item "
                                     f"{item.external_id!r}: {e}") from None
                for s in range(spec.subjects.samples):
                    dec = request_decoding(base, model_decoding, tmpl.max_tokens, s)
                    key = cache_key(entry.provider, entry.model or "", entry.base_url, messages, dec,
                                    list(tmpl.labels), s, entry.path, scope=scope)
                    yield GenerationRequest(item, entry, tmpl, s, messages, dec, key)
