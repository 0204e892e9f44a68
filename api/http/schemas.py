"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI document).

The read schemas of stored rows follow SQLModel's base/table/read pattern: ``accord.models.schema`` declares
each field the table and the API share once, in ``XBase``; the table ``X(XBase, table=True)`` adds its keys
and internal fields, and ``XOut(XBase, RowOut)`` here adds only what the API adds (the ``id``, joined names,
derived figures). A table field missing from ``XBase`` is one the API does not show (owner project ids,
hashes, scheduling internals); where the API renames or reshapes a table field, the schema says so."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, computed_field
from pydantic.config import JsonDict
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel
from sqlmodel._compat import SQLModelConfig  # a SQLModel's model_config type (sqlmodel does not export it)

from accord.analysis.catalogue import MetricName, find_metric
from accord.models.schema import (
    CampaignBase,
    DatasetBase,
    ItemBase,
    MetricBase,
    ModelSpecBase,
    RatingRequestBase,
    RunBase,
)

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: int | None = Field(default=None, description="Pass as 'after' to get the next page; null at the end.")


class Health(BaseModel):
    status: str


def _without_defaults(schema: JsonDict) -> None:
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for prop in properties.values():
            if isinstance(prop, dict):
                prop.pop("default", None)


class Read(SQLModel):
    """A read schema over table fields: a response always carries every field, so the OpenAPI document lists
    them all as required and shows no defaults (a default in a table base is one for writing rows, not an
    optional response field)."""

    model_config = SQLModelConfig(json_schema_serialization_defaults_required=True,
                                  json_schema_extra=_without_defaults)


class RowOut(Read):
    """What a read schema adds to a table base: the row's id. Listed last among a schema's bases, so that
    ``id`` comes first in the JSON (pydantic orders fields from the last base to the class itself)."""

    id: int


# -- datasets -------------------------------------------------------------------------------------------
class DatasetOut(DatasetBase, RowOut):
    """A dataset (its label map, in ``DatasetDetail``, is shown only for one dataset; its owner project and
    import notes are not shown)."""


class DatasetCreated(DatasetOut):
    n_items: int
    n_annotators: int
    n_ratings: int
    warnings: list[str]


class Spread(BaseModel):
    min: float
    median: float
    max: float


class DatasetDetail(DatasetOut):
    label_map: dict[str, Any]
    n_items: int
    n_annotators: int
    n_ratings: int
    ratings_per_dimension: dict[str, int]
    ratings_per_item: Spread
    ratings_per_annotator: Spread
    items_without_ratings: int
    attributes: dict[str, dict[str, int]] = Field(description="Annotators per value of each attribute.")
    annotators_missing_attribute: dict[str, int]
    n_runs: int


class ItemOut(ItemBase, RowOut):
    """An item; the table's ``meta`` is named ``metadata`` here, as in the item files."""

    meta: dict[str, Any] = SQLField(alias="metadata")


# -- templates ------------------------------------------------------------------------------------------
class TemplateVersionOut(BaseModel):
    version: str
    response_format: str
    labels: dict[str, float]
    persona: bool
    params: dict[str, Any]
    created_at: datetime | None = None
    document: dict[str, Any] | None = Field(default=None, description="The template file's fields.")


class TemplateOut(BaseModel):
    name: str
    source: Literal["bundled", "custom"]
    latest_version: str
    versions: list[TemplateVersionOut]


class TemplateDocument(BaseModel):
    """A prompt template (the fields of a template YAML file). Omit ``version`` for the next number.

    Not derived from the ``prompt_template`` table: that stores a rendered version (``output_spec``,
    ``content_hash``), this is the file's document, with the API's own limits on its fields."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str | None = Field(default=None, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    response_format: Literal["likert", "binary", "multiple_choice", "open_ended"]
    system: str = Field(default="", max_length=100_000)
    user: str = Field(min_length=1, max_length=100_000)
    output: dict[str, Any] = Field(default_factory=dict)
    options: list[dict[str, Any]] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    persona: bool = False


# -- model specs ----------------------------------------------------------------------------------------
class ModelSpecOut(ModelSpecBase, RowOut):
    """A model spec (its owner project, spec hash, cached-input price and batch discount are not shown)."""


# -- campaigns ------------------------------------------------------------------------------------------
class CampaignDocument(BaseModel):
    """The campaign document the CLI takes (see ``accord.scheduler.campaign_spec``), as JSON. YAML is
    accepted with ``Content-Type: application/yaml``. Provider credentials are never accepted.

    Not derived from ``CampaignBase``: the document is what the table stores whole in ``spec``; the table's
    other fields (dataset id, spec hash) are derived from it."""

    model_config = ConfigDict(extra="allow")
    name: str
    dataset: str
    models: list[dict[str, Any]]
    templates: list[Any]


class CampaignOut(CampaignBase, RowOut):
    """A campaign (its owner project is not shown), with its dataset's name and its runs."""

    dataset: str
    run_ids: list[int]


class CampaignValidation(BaseModel):
    valid: bool
    campaign: dict[str, Any]
    dataset_id: int
    dimension: str | None
    n_items: int


class PlanModel(BaseModel):
    model: str
    provider: str
    requests: int
    cached: int
    to_send: int
    input_tokens: int = Field(description="Estimated from the rendered prompts (cache hits excluded).")
    output_tokens: int = Field(description="At the output cap (an upper bound).")
    cost_usd: float
    price_source: str
    minutes_at_limits: float | None = Field(description="Lower bound on duration set by the rate limits.")


class PlanOut(BaseModel):
    total: int
    cached: int = Field(description="Requests the response cache already answers.")
    to_send: int
    n_items: int
    n_models: int
    n_templates: int
    n_personas: int
    samples: int
    input_tokens: int
    output_tokens: int
    cost_usd: float = Field(description="Estimated spend (an upper bound: output tokens at their cap).")
    budget_usd: float | None
    exceeds_budget: bool
    by_model: list[PlanModel]


class RunStart(BaseModel):
    """Options of a new run. ``budget_usd`` is not taken from ``RunBase``: a request must give a positive,
    finite budget, stricter than the column's."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    budget_usd: float | None = Field(default=None, gt=0, description="Overrides the campaign's budget.")
    start: bool = Field(default=True, description="false: create the run (pending) without executing it yet.")


# -- runs -----------------------------------------------------------------------------------------------
class FailureKind(BaseModel):
    kind: str
    count: int
    example: str


class RunOut(RunBase, RowOut):
    """A run (its owner project and priority are not shown; ``cost_usd`` is rounded to 6 decimals), with its
    campaign's name and dataset and the figures derived from its counts."""

    campaign: str
    dataset_id: int
    remaining: int
    fraction_done: float
    rate_per_s: float | None = Field(description="Requests finished per second since the start (cache hits excluded).")
    eta_s: float | None
    report_ready: bool


class ModelProgress(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model: str
    model_spec_id: int
    provider: str
    rpm_limit: int | None
    tpm_limit: int | None
    paced_rpm: float | None = Field(description="The pace the rate limiter keeps: 98.5% of the rpm limit.")
    total: int
    done: int
    failed: int
    cancelled: int
    remaining: int
    cached: int
    cost_usd: float
    calls_last_minute: int = Field(description="Provider calls answered in the last 60 s (cache hits excluded).")
    eta_s: float | None = Field(description="Remaining requests at the pace of the last minute.")
    failures_by_kind: list[FailureKind]
    limiter_rpm: float | None = Field(default=None, description="The pace the rate limiter admits this model's "
                                      "calls at now (slowed after a 429, recovering); null without an rpm limit.")
    limiter_factor: float | None = Field(default=None, description="1: full pace; below 1: slowed by a 429.")
    blocked_for_s: float | None = Field(default=None, description="How long a 429's retry-after still holds "
                                        "the model's calls.")
    provider_429s: int | None = Field(default=None, description="429 (or 529) answers this server's calls to the "
                                      "model's provider received since it started (embedded execution).")


class RunDetail(RunOut):
    failures_by_kind: list[FailureKind]
    outcomes: dict[str, int] = Field(description="Stored ratings per parse status (ok, refused, unparseable, ...).")
    models: list[str]
    templates: list[str]
    per_model: list[ModelProgress] = Field(default_factory=list, description="Progress, pace and cost per model.")


class RequestKeys(Read):
    """What names a rating request in the API: its id, its item's external id, its model's alias and its
    template's name (the table's ``id``, ``item_id``, ``model_spec_id`` and ``template_id``, resolved). Listed
    last among ``RatingOut``'s bases, so that these come first in the JSON."""

    request_id: int
    item_id: str
    model: str
    template: str


class RatingOut(RatingRequestBase, RequestKeys):
    """A rating request with its rating. The rating's fields are declared here rather than taken from the
    ``Rating`` table: they are null until the request is rated (the rows are an outer join), and only these
    of them are shown."""

    model_config = SQLModelConfig(protected_namespaces=())
    label: str | None
    value: float | None
    weighted_value: float | None
    parse_status: str | None
    raw_text: str | None
    cache_hit: bool | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    cost_usd: float | None
    model_snapshot: str | None


class MetricOut(MetricBase, RowOut):
    """A stored metric (the table's fields but its run's id) with its catalogue entry's display metadata."""

    def _entry(self) -> MetricName | None:
        return find_metric(self.name)

    @computed_field  # type: ignore[prop-decorator]  # pydantic's computed_field over a property
    @property
    def label(self) -> str | None:
        """What the metric measures, in words (null for a name the catalogue no longer lists)."""
        entry = self._entry()
        return entry.label if entry else None

    @computed_field  # type: ignore[prop-decorator]  # pydantic's computed_field over a property
    @property
    def direction(self) -> str | None:
        """Whether higher or lower is better, or neither."""
        entry = self._entry()
        return entry.direction.value if entry else None

    @computed_field  # type: ignore[prop-decorator]  # pydantic's computed_field over a property
    @property
    def section(self) -> str | None:
        """The report section the metric belongs to."""
        entry = self._entry()
        return entry.section.value if entry else None


# -- exploring results ----------------------------------------------------------------------------------
class MetricCell(BaseModel):
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None


class ItemRow(BaseModel):
    item_id: str
    n_human: int
    human_mean: float | None
    n_llm: int
    llm_mean: float | None
    disagreement: float | None = Field(description="Mean LLM rating minus mean human rating.")
    abs_disagreement: float | None
    group_gap: float | None = Field(description="Highest minus lowest annotator-group mean on the item.")
    gap_attribute: str | None
    gap_high: str | None
    gap_low: str | None
    metadata: dict[str, Any]


class ItemFilters(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model: str | None
    template: str | None
    attribute: str | None
    meta: dict[str, str]
    min_disagreement: float | None
    min_gap: float | None


class ItemTable(BaseModel):
    run_id: int
    total: int
    page: int
    per_page: int
    pages: int
    sort: str
    order: Literal["asc", "desc"]
    filters: ItemFilters
    attributes: list[str]
    meta_columns: list[str]
    meta_values: dict[str, list[str]]
    models: list[str]
    templates: list[str]
    items: list[ItemRow]


class ItemDetail(ItemOut):
    run_id: int
    dimension: str | None
    summary: ItemRow | None
    human: dict[str, Any] = Field(description="Counts per value overall and per annotator group.")
    ratings: list[dict[str, Any]] = Field(description="Every rating request of the item with its rating.")
    answers: list[dict[str, Any]] = Field(description="Subjects' answers with the judges' ratings of each.")


class MatrixRow(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    run_id: int
    model: str
    template: str
    subject: str
    cells: dict[str, MetricCell]


class RunSummary(BaseModel):
    id: int
    campaign: str
    status: str
    report_ready: bool


class Comparison(BaseModel):
    run_ids: list[int]
    runs: list[RunSummary]
    metrics: list[str]
    has_subjects: bool
    rows: list[MatrixRow]


class MetricDelta(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    name: str
    model: str
    template: str
    subject: str
    a: MetricCell | None
    b: MetricCell | None
    delta: float | None


class MovedItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    item_id: str
    model: str
    template: str
    a: float
    b: float
    delta: float
    n_a: int
    n_b: int


class RunDiff(BaseModel):
    run_a: int
    run_b: int
    metrics: list[MetricDelta]
    items: list[MovedItem]
