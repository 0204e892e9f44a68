"""Campaigns over the API: parse and validate the campaign document (the CLI's, as JSON or YAML), apply the
server's policy, store it, preview its plan, and create its runs.

Policy (a campaign is submitted by a tenant but executes with the server's credentials):
- provider credentials are never accepted (the campaign spec rejects ``api_key``; problems never echo input);
- ``api_key_env`` must name one of the server's allowed variables, ``base_url`` one of its allowed endpoints,
  so a campaign can neither read arbitrary environment variables nor send the server's keys elsewhere;
- no server file paths: ``models[].path`` is refused, ``templates[].path`` too (custom templates are
  created with ``POST /api/v1/templates`` and named like bundled ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from accord.api.http.auth import Principal
from accord.api.http.config import ApiSettings
from accord.api.http.problems import ProblemError, invalid, validation_errors
from accord.api.http.store import dataset_by_name
from accord.api.http.template_store import TemplateStore
from accord.models.schema import Campaign, Dataset, Item, Run
from accord.models.yaml_loader import DocumentLimitError, json_loads, safe_load, yaml_error_text
from accord.scheduler.campaign_spec import (
    CampaignSpec,
    CampaignSpecError,
    check_request_count,
    parse_campaign,
)
from accord.scheduler.expand import CampaignError, RunPlan, create_run, personas_for, resolve_campaign
from accord.scheduler.plan import plan_campaign as estimate_plan
from accord.scheduler.stages import StageError, resolve_stages
from accord.worker.prompt_templates import (
    TemplateRenderError,
    TemplateSpecError,
    bundled_template_names,
    load_template,
    render_messages,
)
from pydantic import ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col


@dataclass
class ValidatedCampaign:
    spec: CampaignSpec            # as stored (custom templates by name, pinned version)
    exec_spec: CampaignSpec       # as executed (custom templates by their file)
    dataset_id: int
    dataset_name: str
    dimension: str | None
    n_items: int
    n_personas: int
    total: int

    def stored_document(self) -> dict[str, Any]:
        doc = self.spec.model_dump(mode="json")
        doc["dimension"] = self.dimension
        return doc


def parse_document(body: bytes, content_type: str) -> Any:
    """The request body as a document: JSON, or YAML when the content type says so."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid("body: not UTF-8 text", field="body") from None
    if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
        try:
            return safe_load(text)
        except yaml.YAMLError as err:
            raise invalid(f"body: not valid YAML: {yaml_error_text(err)}", field="body") from None
    if ctype not in ("application/json", "") and not ctype.endswith("+json"):
        raise ProblemError(415, f"send JSON (application/json) or YAML (application/yaml), not {ctype!r}",
                           errors=[{"field": "body", "message": "unsupported media type"}])
    try:
        return json_loads(text)
    except json.JSONDecodeError as err:
        raise invalid(f"body: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})",
                      field="body") from None
    except DocumentLimitError as err:
        raise invalid(f"body: {err}", field="body") from None


def _spec_errors(document: Any) -> list[dict[str, str]]:
    try:
        CampaignSpec.model_validate(document)
    except ValidationError as err:
        return validation_errors(list(err.errors()))
    return []


def _policy_errors(spec: CampaignSpec, settings: ApiSettings) -> list[dict[str, str]]:
    errors = []
    allowed_urls = {u.rstrip("/") for u in settings.allowed_base_urls}
    if spec.dataset_import is not None:
        errors.append({"field": "dataset_import", "message": "server file paths are not accepted over the API; "
                                                             "upload the dataset and name it in 'dataset'"})
    models = [(f"models.{i}", m) for i, m in enumerate(spec.models)]
    bundled = set(bundled_template_names())
    for stage_name in ("subjects", "judges"):
        stage = getattr(spec, stage_name)
        if stage is None:
            continue
        models += [(f"{stage_name}.models.{i}", m) for i, m in enumerate(stage.models)]
        for j, t in enumerate(stage.templates):
            if t.path is not None or t.name not in bundled:
                errors.append({"field": f"{stage_name}.templates.{j}",
                               "message": "over the API, subjects and judges use bundled templates only (for now)"})
    for where, m in models:
        if m.path is not None:
            errors.append({"field": f"{where}.path",
                           "message": "server file paths are not accepted over the API; omit 'path' to use the "
                                      "server's local model"})
        if m.base_url is not None and m.base_url.rstrip("/") not in allowed_urls:
            errors.append({"field": f"{where}.base_url",
                           "message": "this endpoint is not allowed on this server (ask the operator to add it to "
                                      "ACCORD_API_ALLOWED_BASE_URLS)"})
        if m.api_key_env is not None and m.api_key_env not in settings.allowed_key_envs:
            errors.append({"field": f"{where}.api_key_env",
                           "message": f"must be one of the server's credential variables: "
                                      f"{', '.join(settings.allowed_key_envs) or 'none'}"})
        elif m.api_key_env is not None and m.provider != "local":
            # Each credential goes only to the endpoints it is bound to, whatever else is allowed.
            endpoint = m.base_url.rstrip("/") if m.base_url else m.provider
            bound = {e.rstrip("/") for e in settings.key_endpoints.get(m.api_key_env, [])}
            if endpoint not in bound:
                target = "this endpoint" if m.base_url else f"the {m.provider} API"
                errors.append({"field": f"{where}.api_key_env",
                               "message": f"{m.api_key_env} may not be sent to {target} on this server (ask the "
                                          "operator to bind it in ACCORD_API_KEY_ENDPOINTS)"})
    for j, t in enumerate(spec.templates):
        if t.path is not None:
            errors.append({"field": f"templates.{j}.path",
                           "message": "file paths are not accepted over the API; create a custom template with "
                                      "POST /api/v1/templates and refer to it by name"})
    return errors


def validate_campaign(engine: Engine, settings: ApiSettings, templates: TemplateStore, principal: Principal,
                      document: Any) -> ValidatedCampaign:
    """Everything that can be checked before a run exists; raises a 422 problem naming the field."""
    project_id = principal.project_id
    try:
        spec = parse_campaign(document, "campaign")
    except CampaignSpecError as err:
        errors = _spec_errors(document) if isinstance(document, dict) else [
            {"field": "body", "message": "a campaign must be a JSON object of fields"}]
        detail = str(err).removeprefix("campaign: ")
        raise invalid(detail, errors=errors or [{"field": "body", "message": detail}]) from None
    errors = _policy_errors(spec, settings)
    if errors:
        raise invalid(f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)
    # Templates: bundled by name, custom (this project's) by name pinned to a version.
    exec_spec = spec.model_copy(deep=True)
    bundled = set(bundled_template_names())
    persona_templates: list[bool] = []
    for j, (ref, exec_ref) in enumerate(zip(spec.templates, exec_spec.templates)):
        assert ref.name is not None
        try:
            if ref.name in bundled:
                persona_templates.append(load_template(ref.name, None, ref.version, ref.params).persona)
                continue
            stored = templates.find(principal.namespace, ref.name, ref.version)
            if stored is None:
                known = sorted(bundled | set(templates.names(principal.namespace)))
                what = f"version {ref.version!r} of " if ref.version else ""
                raise invalid(f"templates.{j}.name: no {what}template {ref.name!r}; known: {', '.join(known)}",
                              field=f"templates.{j}.name")
            ref.version = stored.version
            exec_ref.name = None
            exec_ref.path = str(stored.path)
            exec_ref.version = stored.version
            persona_templates.append(load_template(None, str(stored.path), stored.version, ref.params).persona)
        except TemplateSpecError as err:
            message = str(err).replace(str(templates.root), "templates")
            raise invalid(f"templates.{j}: {message}", field=f"templates.{j}") from None
    with Session(engine) as session:
        ds = dataset_by_name(session, project_id, spec.dataset)
        if ds is None:
            names = session.execute(select(col(Dataset.name)).where(col(Dataset.project_id) == project_id)
                                    .order_by(col(Dataset.name))).scalars().all()
            raise invalid(f"dataset: no dataset named {spec.dataset!r} in this project; uploaded: "
                          f"{', '.join(names) or 'none'}", field="dataset")
        try:
            # The request count, from counts alone, before anything is expanded or loaded.
            n_items = len(spec.items.ids) if spec.items.ids else session.execute(
                select(func.count()).select_from(Item).where(col(Item.dataset_id) == ds.id)).scalar_one()
            if spec.items.limit is not None:
                n_items = min(n_items, spec.items.limit)
            n_personas = len(personas_for(session, ds, exec_spec)) if any(persona_templates) else 0
            try:
                stage_requests = resolve_stages(exec_spec).request_count(exec_spec, n_items)
            except StageError as err:
                raise CampaignError(str(err)) from None
            try:
                check_request_count(spec, n_items, n_personas, persona_templates, stage_requests)
            except CampaignSpecError as err:
                raise invalid(str(err), field="body") from None
            expansion = resolve_campaign(session, exec_spec, project_id)
        except (CampaignError, TemplateSpecError) as err:
            message = str(err).replace(str(templates.root), "templates")
            field = message.split(":", 1)[0] if ":" in message and " " not in message.split(":", 1)[0] else "body"
            raise invalid(message, field=field) from None
    # Every template must render (within the sandbox's limits) on an item of this dataset.
    sample_persona = expansion.personas[0] if expansion.personas else None
    for j, tmpl in enumerate(expansion.templates):
        try:
            render_messages(tmpl, expansion.items[0].content, sample_persona if tmpl.persona else None)
        except TemplateRenderError as err:
            raise invalid(f"templates.{j}: {err}", field=f"templates.{j}") from None
    return ValidatedCampaign(spec=spec, exec_spec=exec_spec, dataset_id=ds.id, dataset_name=ds.name,  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
                             dimension=expansion.dimension, n_items=len(expansion.items),
                             n_personas=len(expansion.personas), total=expansion.count(exec_spec))


def store_campaign(engine: Engine, project_id: int, v: ValidatedCampaign) -> Campaign:
    with Session(engine, expire_on_commit=False) as session:
        row = Campaign(project_id=project_id, name=v.spec.name, spec=v.stored_document(),
                       spec_hash=v.spec.spec_hash(), dataset_id=v.dataset_id)
        session.add(row)
        session.commit()
        return row


def revalidate(engine: Engine, settings: ApiSettings, templates: TemplateStore, principal: Principal,
               campaign: Campaign) -> ValidatedCampaign:
    """A stored campaign's document checked again against today's database (its dataset may be gone)."""
    assert campaign.project_id == principal.project_id
    return validate_campaign(engine, settings, templates, principal, dict(campaign.spec or {}))


def plan_campaign(engine: Engine, project_id: int, v: ValidatedCampaign,
                  budget_usd: float | None = None) -> dict[str, Any]:
    """Requests, cache hits, estimated tokens, dollars and duration per model of a run of this campaign,
    without writing anything (``accord plan``'s estimate)."""
    plan = estimate_plan(engine, v.exec_spec, project_id, budget_usd)
    by_model = [{"model": m.model, "provider": m.provider, "requests": m.requests, "cached": m.cached,
                 "to_send": m.to_call, "input_tokens": m.input_tokens, "output_tokens": m.output_tokens,
                 "cost_usd": round(m.cost_usd, 6), "price_source": m.price_source,
                 "minutes_at_limits": m.minutes_at_limits} for m in plan.models]
    return {"total": plan.requests, "cached": plan.cached, "to_send": plan.requests - plan.cached,
            "n_items": plan.items, "n_models": len(v.spec.models), "n_templates": len(v.spec.templates),
            "n_personas": plan.personas, "samples": v.spec.samples,
            "input_tokens": sum(m.input_tokens for m in plan.models),
            "output_tokens": sum(m.output_tokens for m in plan.models),
            "cost_usd": round(plan.cost_usd, 6), "budget_usd": plan.budget_usd,
            "exceeds_budget": plan.exceeds_budget, "by_model": by_model}


def create_campaign_run(engine: Engine, project_id: int, campaign: Campaign, v: ValidatedCampaign, mode: str,
                        budget_usd: float | None) -> RunPlan:
    """A new run of a stored campaign: the real expansion (``create_run``), attached to this campaign, in one
    transaction."""
    with engine.connect() as conn:
        with conn.begin():
            plan = create_run(conn, v.exec_spec, project_id=project_id, mode=mode,  # type: ignore[arg-type]  # a Connection binds the run's Session as an Engine does
                              budget_override=budget_usd)
            if plan.campaign_id != campaign.id:
                conn.execute(update(Run).where(col(Run.id) == plan.run_id).values(campaign_id=campaign.id))
                conn.execute(delete(Campaign).where(col(Campaign.id) == plan.campaign_id))
    return RunPlan(run_id=plan.run_id, campaign_id=campaign.id, total=plan.total, cached=plan.cached)  # type: ignore[arg-type]  # a stored row's id is set (flushed or loaded)
