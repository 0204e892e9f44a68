"""The subjects and judges stages of a campaign, resolved against the database at run creation.

Subjects: one ``generate`` request per item x subject model x generation template x sample, rendered with
the item's fields (``item.*``); its result is an ``Answer``. Judges: one ``judge_assignment`` row per judge
model x rating template, naming the generation templates whose answers it judges; the judge requests
themselves are created when each answer is stored (``accord.worker.judge_requests``), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError

from accord.models.schema import Item
from accord.scheduler.campaign_spec import CampaignSpec, ModelEntry
from accord.worker.decoding import request_decoding
from accord.worker.prompt_templates import ResolvedTemplate, cache_key, item_variables, load_template, render_messages
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

    def judge_count(self, spec: CampaignSpec, n_items: int) -> int:
        if spec.judges is None:
            return 0
        per_answer = len(spec.judges.models) * len(self.judge_templates) * spec.judges.samples
        return self.judged_answer_count(spec, n_items) * per_answer


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
        if not t.labels:
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
