"""Turn a campaign into a run: register its models and templates, expand its rating requests in bulk,
and answer from the response cache every request whose call has been made before.

requests = items x models x templates x personas x samples. Each request carries a deterministic cache
key (provider, model, endpoint, rendered messages, decoding params, allowed labels, sample index).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from jinja2 import TemplateError
from sqlalchemy import bindparam, func, insert, select, text
from sqlmodel.sql.sqltypes import UTCDateTime
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from accord.analysis.group_means import numeric_values
from accord.models.db import session_scope
from accord.models.prices import ModelPrice, lookup_price
from accord.models.projects import owner_id, project_cache_scope
from accord.models.schema import (
    Annotator, Campaign, Dataset, HumanRating, Item, JudgeAssignment, ModelSpec, PromptTemplate, RatingRequest, Run,
    PERSONA_KEY_MAX, RATING_CACHED_FIELDS, RunStatus, utcnow,
)
from accord.scheduler.dataset_source import DatasetSourceError, ensure_dataset
from accord.scheduler.campaign_spec import CampaignSpec, CampaignSpecError, ModelEntry, check_request_count, repeated
from accord.scheduler.stages import (
    GenerationRequest, StageError, Stages, generation_requests, placeholder_answers, resolve_stages,
)
from accord.worker.decoding import request_decoding
from accord.worker.prompt_templates import (
    ResolvedTemplate, cache_key, item_variables, load_template, render_messages,
)

INSERT_BATCH = 5000


class CampaignError(ValueError):
    """A campaign that cannot run against this database (unknown dataset, dimension, item ids, ...)."""


@dataclass
class RunPlan:
    run_id: int
    campaign_id: int
    total: int
    cached: int


def model_spec_hash(entry: ModelEntry, project_id: int) -> str:
    doc = entry.model_dump(mode="json", exclude={"name"})
    doc["alias"] = entry.name
    doc["project_id"] = project_id
    doc["effective_price"] = dataclasses.asdict(effective_price(entry))
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def effective_price(entry: ModelEntry) -> ModelPrice:
    """The campaign's price for the model if it gives one, else the price table's (local models are free)."""
    if entry.price is not None:
        p = entry.price
        return ModelPrice(p.input, p.output, p.cached_input, p.batch_discount, source="campaign")
    if entry.provider == "local":
        return ModelPrice(source="local")
    return lookup_price(entry.provider, entry.model or "")


def upsert_model_spec(session: Session, entry: ModelEntry, project_id: int) -> ModelSpec:
    h = model_spec_hash(entry, project_id)
    row: ModelSpec | None = session.execute(select(ModelSpec).where(col(ModelSpec.spec_hash) == h)).scalar_one_or_none()
    if row is not None:
        return row
    price = effective_price(entry)
    row = ModelSpec(
        project_id=project_id, name=entry.name, provider=entry.provider, model=entry.model or "",
        base_url=entry.base_url, api_key_env=entry.api_key_env,
        params={"decoding": entry.decoding.model_dump(exclude_none=True) if entry.decoding else {},
                "path": entry.path},
        rpm=entry.rpm, tpm=entry.tpm, max_concurrency=entry.max_concurrency,
        price_input_per_mtok=price.input, price_output_per_mtok=price.output,
        price_cached_input_per_mtok=price.cached_input, batch_discount=price.batch_discount, spec_hash=h,
    )
    session.add(row)
    session.flush()
    return row


def upsert_template(session: Session, t: ResolvedTemplate) -> PromptTemplate:
    h = t.content_hash
    row: PromptTemplate | None = session.execute(select(PromptTemplate).where(
        col(PromptTemplate.name) == t.name, col(PromptTemplate.version) == t.version, col(PromptTemplate.content_hash) == h)
    ).scalar_one_or_none()
    if row is not None:
        return row
    row = PromptTemplate(name=t.name, version=t.version, response_format=t.response_format, system=t.system,
                         user=t.user, output_spec=t.output_spec, content_hash=h)
    session.add(row)
    session.flush()
    return row


def find_dataset(session: Session, name: str, project_id: int) -> Dataset:
    q = select(Dataset).where(col(Dataset.name) == name, col(Dataset.project_id) == project_id)
    ds: Dataset | None = session.execute(q).scalar_one_or_none()
    if ds is None:
        mine = select(col(Dataset.name)).where(col(Dataset.project_id) == project_id)
        names = session.execute(mine).scalars().all()
        raise CampaignError(f"dataset: no dataset named {name!r}; imported: {', '.join(names) or 'none'} "
                            "(import one with `accord import`)")
    return ds


def resolve_dimension(session: Session, ds: Dataset, dimension: str | None) -> str | None:
    dims = list(ds.dimensions or [])
    if dimension is None:
        if len(dims) > 1:
            raise CampaignError(f"dimension: dataset {ds.name!r} has several ({', '.join(dims)}); name one")
        return dims[0] if dims else None
    if dims and dimension not in dims:
        raise CampaignError(f"dimension: {dimension!r} is not in dataset {ds.name!r} (it has: {', '.join(dims)})")
    return dimension


def select_items(session: Session, ds: Dataset, spec: CampaignSpec) -> list[Item]:
    items = list(session.execute(select(Item).where(col(Item.dataset_id) == ds.id).order_by(col(Item.id))).scalars())
    sel = spec.items
    if sel.ids:
        by_ext = {i.external_id: i for i in items}
        missing = [x for x in sel.ids if x not in by_ext]
        if missing:
            raise CampaignError(f"items.ids: not in dataset {ds.name!r}: {', '.join(missing[:10])}")
        items = [by_ext[x] for x in sel.ids]
    if sel.limit is not None and sel.limit < len(items):
        if sel.seed is not None:
            items = sorted(random.Random(sel.seed).sample(items, sel.limit), key=lambda i: i.id or 0)
        else:
            items = items[: sel.limit]
    if not items:
        raise CampaignError(f"items: dataset {ds.name!r} has no items to rate")
    return items


def _known_attributes(session: Session, ds: Dataset) -> set[str]:
    rows = session.execute(select(col(Annotator.attributes)).where(col(Annotator.dataset_id) == ds.id)).scalars().all()
    return set().union(*(r.keys() for r in rows if r)) if rows else set()


def check_group_attributes(session: Session, ds: Dataset, spec: CampaignSpec) -> None:
    """analysis.group_attributes and analysis.bins must name attributes the dataset's annotators have."""
    wanted = [part.strip() for name in spec.analysis.group_attributes or [] for part in name.split("&")]
    wanted += list(spec.analysis.bins)
    if not wanted:
        return
    known = _known_attributes(session, ds)
    unknown = [a for a in dict.fromkeys(wanted) if a not in known]
    if unknown:
        raise CampaignError(f"analysis: no annotator of {ds.name!r} has attribute(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(known)) or 'none'})")
    if spec.analysis.bins:
        rows = session.execute(select(col(Annotator.attributes)).where(col(Annotator.dataset_id) == ds.id)).scalars().all()
        for attribute in spec.analysis.bins:
            values = pd.Series([(r or {}).get(attribute) for r in rows], dtype=object)
            if numeric_values(values) is None:
                raise CampaignError(f"analysis.bins: attribute {attribute!r} of {ds.name!r} is not numeric; bin "
                                    "only numeric attributes (or list it in group_attributes as it is)")


def dimension_scale(session: Session, ds: Dataset, dimension: str | None) -> dict[str, Any] | None:
    """The dimension's scale recorded at import ({"min", "max", "source"}), else its observed range."""
    if dimension is None:
        return None
    recorded = ((ds.import_info or {}).get("scales") or {}).get(dimension)
    if recorded:
        return dict(recorded)
    low, high = session.execute(select(func.min(col(HumanRating.value)), func.max(col(HumanRating.value)))
                             .join(Item, col(Item.id) == col(HumanRating.item_id))
                             .where(col(Item.dataset_id) == ds.id, col(HumanRating.dimension) == dimension)).one()
    if low is None:
        return None
    return {"min": float(low), "max": float(high), "source": "observed"}


def check_scales(session: Session, ds: Dataset, dimension: str | None, templates: list[ResolvedTemplate]) -> None:
    """Stop a run whose templates rate on another scale than the people did (a 0..1 template against a 1..5
    dataset): with a label map the ranges must be equal, with observed ratings the template must reach every
    value people gave."""
    scale = dimension_scale(session, ds, dimension)
    if scale is None:
        return
    low, high = float(scale["min"]), float(scale["max"])
    for t in templates:
        values = [float(v) for v in t.labels.values()]
        if not values:
            continue
        t_low, t_high = min(values), max(values)
        same = abs(t_low - low) < 1e-9 and abs(t_high - high) < 1e-9
        covers = t_low <= low + 1e-9 and t_high >= high - 1e-9
        if (scale.get("source") == "label_map" and not same) or not covers:
            raise CampaignError(
                f"templates: {t.name!r} rates on {t_low:g}..{t_high:g} but dimension {dimension!r} of dataset "
                f"{ds.name!r} is on {low:g}..{high:g}; use a template whose output.labels are on {low:g}..{high:g}, "
                f"or re-import the dataset with a --label-map onto {t_low:g}..{t_high:g} "
                "(analysis.check_scale: false compares them anyway)")


def personas_for(session: Session, ds: Dataset, spec: CampaignSpec) -> list[dict[str, str]]:
    if spec.personas is None:
        return []
    out: list[dict[str, str]] = [dict(p) for p in spec.personas.explicit]
    attrs = spec.personas.from_attributes
    if attrs:
        rows = session.execute(select(col(Annotator.attributes)).where(col(Annotator.dataset_id) == ds.id)).scalars().all()
        known = set().union(*(r.keys() for r in rows)) if rows else set()
        unknown = [a for a in attrs if a not in known]
        if unknown:
            raise CampaignError(f"personas.from_attributes: no annotator in {ds.name!r} has attribute(s) "
                                f"{', '.join(unknown)} (known: {', '.join(sorted(known)) or 'none'})")
        combos = sorted({tuple((a, str(r[a])) for a in attrs) for r in rows if all(r.get(a) not in (None, "") for a in attrs)})
        out.extend(dict(c) for c in combos)
    seen, unique = set(), []
    for p in out:
        key = persona_key(p)
        if len(key) > PERSONA_KEY_MAX:
            raise CampaignError(f"personas: the persona {key[:60]!r}... is longer than {PERSONA_KEY_MAX} characters "
                                "as attribute=value pairs; use fewer or shorter attributes")
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def persona_key(persona: dict[str, str]) -> str:
    return "&".join(f"{k}={persona[k]}" for k in sorted(persona))


@dataclass
class ExpandedRequest(GenerationRequest):
    """One rating request as the expansion produces it, before it is a row: a rendered request with the
    persona it is rated as (None without one)."""

    persona: dict[str, str] | None = None


@dataclass
class Expansion:
    """A campaign resolved against the database: what it would rate, with what, under which personas."""

    dataset: Dataset
    dimension: str | None
    items: list[Item]
    personas: list[dict[str, str]]
    templates: list[ResolvedTemplate]
    project_id: int
    cache_scope: str   # the project's (accord.models.projects.cache_scope): shared within it, never across
    stages: Stages = dataclasses.field(default_factory=Stages)

    def count(self, spec: CampaignSpec) -> int:
        per_item = sum(len(self.personas) if t.persona else 1 for t in self.templates)
        return len(self.items) * len(spec.models) * per_item * spec.samples

    def requests(self, spec: CampaignSpec) -> Iterator[ExpandedRequest]:
        """items x models x templates x personas x samples, with rendered messages and cache keys."""
        campaign_decoding = spec.decoding.model_dump(exclude_none=True)
        for item in self.items:
            for entry, tmpl in itertools.product(spec.models, self.templates):
                model_decoding = entry.decoding.model_dump(exclude_none=True) if entry.decoding else {}
                persona_list: list[dict[str, str] | None] = list(self.personas) if tmpl.persona else [None]
                for persona in persona_list:
                    messages = render_messages(tmpl, item.content, persona,
                                               item=item_variables(item.external_id, item.content, item.meta))
                    for s in range(spec.samples):
                        dec = request_decoding(campaign_decoding, model_decoding, tmpl.max_tokens, s)
                        key = cache_key(entry.provider, entry.model or "", entry.base_url, messages, dec,
                                        list(tmpl.labels), s, entry.path, scope=self.cache_scope)
                        yield ExpandedRequest(item, entry, tmpl, s, messages, dec, key, persona)


def resolve_campaign(session: Session, spec: CampaignSpec, project_id: int) -> Expansion:
    """Check the campaign against the database (dataset, dimension, items, personas, templates)."""
    templates = [load_template(t.name, t.path, t.version, t.params) for t in spec.templates]
    dupes = repeated([t.name for t in templates])
    if dupes:  # template files of the same name; bundled ones are refused by the spec's validation already
        raise CampaignError(f"templates: template names must be unique; repeated: {', '.join(dupes)} (rename one "
                            "in its file, or give them different params.option_order)")
    try:
        stages = resolve_stages(spec)
    except StageError as e:
        raise CampaignError(str(e)) from None
    ds = find_dataset(session, spec.dataset, project_id)
    dimension = resolve_dimension(session, ds, spec.dimension) if spec.models else spec.dimension
    check_group_attributes(session, ds, spec)
    if spec.models and spec.analysis.check_scale:
        check_scales(session, ds, dimension, templates)
    personas = personas_for(session, ds, spec)
    # The request count from counts alone, before any item is loaded or any request expanded.
    n_items = len(spec.items.ids) if spec.items.ids else int(session.execute(
        select(func.count()).select_from(Item).where(col(Item.dataset_id) == ds.id)).scalar_one())
    if spec.items.limit is not None:
        n_items = min(n_items, spec.items.limit)
    try:
        check_request_count(spec, n_items, len(personas) if any(t.persona for t in templates) else 0,
                            [t.persona for t in templates], stages.request_count(spec, n_items))
    except CampaignSpecError as err:
        raise CampaignError(str(err)) from None
    items = select_items(session, ds, spec)
    for t in templates:
        if t.persona and not personas:
            raise CampaignError(f"templates: {t.name!r} is persona-conditioned; add 'personas' to the campaign")
    return Expansion(ds, dimension, items, personas, templates, project_id,
                     project_cache_scope(session, project_id), stages)


def _insert_generation_requests(session: Session, spec: CampaignSpec, expansion: Expansion, run_id: int,
                                model_ids: dict[str, int], template_ids: dict[str, int], now: Any) -> int:
    rows = ({
        "run_id": run_id, "stage": "generate", "item_id": g.item.id, "model_spec_id": model_ids[g.model.name],
        "template_id": template_ids[g.template.content_hash], "persona_key": "", "persona": {},
        "sample_index": g.sample_index, "status": "pending", "attempts": 0, "updated_at": now,
        "cache_key": g.cache_key,
    } for g in generation_requests(spec, expansion.stages, expansion.items, expansion.cache_scope))
    try:
        return _insert_requests(session, rows)
    except StageError as e:
        raise CampaignError(str(e)) from None


def _insert_requests(session: Session, rows: Iterable[dict[str, Any]]) -> int:
    """Insert rating_request rows, INSERT_BATCH at a time; returns how many."""
    total = 0
    pending = iter(rows)
    while batch := list(itertools.islice(pending, INSERT_BATCH)):
        session.execute(insert(RatingRequest), batch)
        total += len(batch)
    return total


def _insert_judge_assignments(session: Session, spec: CampaignSpec, expansion: Expansion, run_id: int,
                              model_ids: dict[str, int], template_ids: dict[str, int]) -> None:
    if spec.judges is None:
        return
    answers_of = sorted(template_ids[t.content_hash] for t in expansion.stages.judged)
    for tmpl in expansion.stages.judge_templates:    # a template that cannot render fails now, not mid-run
        for item in expansion.items:
            try:
                render_messages(tmpl, item.content, item=item_variables(item.external_id, item.content, item.meta),
                                **placeholder_answers(tmpl, len(spec.subjects.models) if spec.subjects else 0, ""))
            except TemplateError as e:
                raise CampaignError(f"judges.templates: {tmpl.name!r} cannot be rendered for item "
                                    f"{item.external_id!r}: {e}") from None
    for entry in spec.judges.models:
        for tmpl in expansion.stages.judge_templates:
            session.add(JudgeAssignment(run_id=run_id, model_spec_id=model_ids[entry.name],
                                        template_id=template_ids[tmpl.content_hash], samples=spec.judges.samples,
                                        answers_of=answers_of))
    session.flush()


def create_run(engine: Engine, spec: CampaignSpec, *, project_id: int | None = None, mode: str = "embedded",
               budget_override: float | None = None) -> RunPlan:
    """Register the campaign, create its run, insert every rating request, answer cached ones. One transaction
    (after importing the campaign's ``dataset_import`` when its dataset is not there yet). ``project_id``
    None: the ``local`` project."""
    project_id = owner_id(engine, project_id)
    try:
        ensure_dataset(engine, spec, project_id)
    except DatasetSourceError as e:
        raise CampaignError(str(e)) from None
    with session_scope(engine) as session:
        expansion = resolve_campaign(session, spec, project_id)
        spec_doc = spec.model_dump(mode="json")
        spec_doc["dimension"] = expansion.dimension
        campaign = Campaign(project_id=project_id, name=spec.name, spec=spec_doc, spec_hash=spec.spec_hash(),
                            dataset_id=expansion.dataset.id)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        session.add(campaign)
        session.flush()
        run = Run(campaign_id=campaign.id, project_id=project_id, status=RunStatus.pending.value, mode=mode,  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                  priority=spec.priority, budget_usd=budget_override if budget_override is not None else spec.budget_usd)
        session.add(run)
        session.flush()
        model_ids = {m.name: upsert_model_spec(session, m, project_id).id for m in spec.all_models()}
        template_ids = {t.name: upsert_template(session, t).id for t in expansion.templates}
        stage_template_ids = {t.content_hash: upsert_template(session, t).id
                              for t in [*expansion.stages.subject_templates, *expansion.stages.judge_templates]}

        now = utcnow()
        total = _insert_requests(session, ({
            "run_id": run.id, "item_id": r.item.id, "model_spec_id": model_ids[r.model.name],
            "template_id": template_ids[r.template.name],
            "persona_key": persona_key(r.persona) if r.persona else "", "persona": r.persona or {},
            "sample_index": r.sample_index, "status": "pending", "attempts": 0, "updated_at": now,
            "cache_key": r.cache_key,
        } for r in expansion.requests(spec)))
        # Subjects' requests now; judges' requests as each answer is stored (their count adds to run.total then).
        total += _insert_generation_requests(session, spec, expansion, run.id, model_ids, stage_template_ids, now)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        _insert_judge_assignments(session, spec, expansion, run.id, model_ids, stage_template_ids)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        run.total = total
        session.add(run)
        session.flush()
        cached = answer_from_cache(session, run.id) if spec.cache is True else 0  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
        return RunPlan(run_id=run.id, campaign_id=campaign.id, total=total, cached=cached)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)


# Set-based cache fill: for every pending request of the run whose cache key has an original (non-copied)
# rating, insert a copy marked as a cache hit and mark the request done. Works on SQLite and PostgreSQL.
# It copies the same answer fields as the per-request path (RATING_CACHED_FIELDS; the SQL is built from that
# constant list, never from input).
_CACHE_COPY = text(f"""
INSERT INTO rating (request_id, run_id, cache_key, {", ".join(RATING_CACHED_FIELDS)},
                    latency_ms, cost_usd, cache_hit, source_rating_id, created_at)
SELECT rr.id, rr.run_id, rr.cache_key, {", ".join("src." + f for f in RATING_CACHED_FIELDS)},
       0.0, 0.0, :true, src.id, :now
FROM rating_request rr
JOIN rating src ON src.id = (SELECT min(r2.id) FROM rating r2 WHERE r2.cache_key = rr.cache_key AND r2.cache_hit = :false)
WHERE rr.run_id = :run_id AND rr.status IN ('pending', 'queued') AND rr.stage <> 'generate'
  AND NOT EXISTS (SELECT 1 FROM rating r3 WHERE r3.request_id = rr.id)
""").bindparams(bindparam("now", type_=UTCDateTime()))
_CACHE_MARK_DONE = text("""
UPDATE rating_request SET status = 'done', updated_at = :now
WHERE run_id = :run_id AND status IN ('pending', 'queued')
  AND EXISTS (SELECT 1 FROM rating r WHERE r.request_id = rating_request.id)
""").bindparams(bindparam("now", type_=UTCDateTime()))


def answer_from_cache(session: Session, run_id: int) -> int:
    now = utcnow()
    result = session.execute(_CACHE_COPY, {"run_id": run_id, "now": now, "true": True, "false": False})
    n = result.rowcount or 0  # type: ignore[attr-defined]  # DML: a CursorResult
    if n:
        session.execute(_CACHE_MARK_DONE, {"run_id": run_id, "now": now})
        session.execute(text("UPDATE run SET done = done + :n, cached = cached + :n WHERE id = :run_id"),
                        {"n": n, "run_id": run_id})
    return n


def human_rating_count(session: Session, dataset_id: int) -> int:
    count: int = session.execute(select(func.count()).select_from(HumanRating).join(Item).where(
        col(Item.dataset_id) == dataset_id)).scalar_one()
    return count
