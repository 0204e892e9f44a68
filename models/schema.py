"""The relational schema: datasets of human ratings, campaigns of LLM rating requests, their results.

Every table is a SQLModel class; the same definitions run on SQLite (embedded) and PostgreSQL
(production). Alembic migrations in ``models/migrations`` create and evolve them.

Uniqueness constraints carry the two invariants of the system:
- a human rating is stored once per item x annotator x dimension;
- a rating request exists once per run x stage x item x model x template x persona x sample (a judge's
  request once per answer x judge x template x persona x sample), and has at most one ``Rating``
  (``Rating.request_id`` is unique) or ``Answer`` (``Answer.request_id`` is unique), so a retried chunk can
  never store twice, no subject is asked twice and no answer judged twice.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any, Optional, TypeVarTuple

from sqlalchemy import JSON, BigInteger, Column, Index, Select, Text, UniqueConstraint, text, false
from sqlmodel import Field, SQLModel, col


def utcnow() -> datetime:
    """Now, timezone-aware in UTC (SQLModel's UTCDateTime columns refuse naive datetimes)."""
    return datetime.now(timezone.utc)


def json_column(name: str | None = None, nullable: bool = False) -> Any:
    if name:
        return Field(default_factory=dict, sa_column=Column(name, JSON, nullable=nullable))
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=nullable))


class Project(SQLModel, table=True):
    """Who owns datasets, campaigns, runs and model specs: a tenant of the HTTP API, and the project the CLI
    works in (``local`` unless ``--project`` names another; see ``accord.models.projects``). Every such row has
    one (migration 0007 gave the CLI's older rows to ``local``)."""

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=200)
    cache_scope: Optional[str] = Field(default=None, max_length=64, description=(
        "The response cache's scope of the project's requests; NULL: 'project:<id>'. Only the project that "
        "adopted the CLI's project-less rows (migration 0007) has '', the scope their answers were cached in."))
    created_at: datetime = Field(default_factory=utcnow)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    prefix: str = Field(index=True, max_length=16, description="First characters of the key, for display.")
    key_hash: str = Field(unique=True, max_length=128, description="SHA-256 of the key; the key itself is never stored.")
    name: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: Optional[datetime] = None


class DatasetBase(SQLModel):
    """A dataset's fields that the table and the HTTP API's ``DatasetOut`` share."""

    name: str = Field(max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    dimensions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    source: str = Field(default="", max_length=1000, description="Files it was imported from.")
    created_at: datetime = Field(default_factory=utcnow)


class Dataset(DatasetBase, table=True):
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_dataset_project_name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: Optional[int] = Field(default=None, foreign_key="project.id", index=True)
    label_map: dict[str, Any] = json_column()  # dimension -> {label: numeric value}
    # What the import left out or merged under its policies (duplicates, non-labels), and per dimension its
    # scale: {"dropped": {...}, "scales": {dimension: {"min", "max", "values", "source"}}}
    import_info: dict[str, Any] = json_column(nullable=True)


class ItemBase(SQLModel):
    """An item's fields that the table and the HTTP API's ``ItemOut`` share (``meta`` is not among them: the
    API calls it ``metadata``, a name SQLModel reserves for the table metadata)."""

    external_id: str = Field(max_length=200)
    content: dict[str, Any] = json_column()


class Item(ItemBase, table=True):
    """One thing to rate. ``content`` is {"kind": "conversation", "turns": [{"speaker", "text"}]}
    or {"kind": "text", "text": ...}; ``meta`` holds metadata such as harm type, category, subject model."""

    __table_args__ = (UniqueConstraint("dataset_id", "external_id", name="uq_item_dataset_external"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    meta: dict[str, Any] = json_column("metadata")


class Annotator(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("dataset_id", "external_id", name="uq_annotator_dataset_external"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    external_id: str = Field(max_length=200)
    attributes: dict[str, Any] = json_column()


class HumanRating(SQLModel, table=True):
    __tablename__ = "human_rating"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id", "dimension", name="uq_human_rating_item_annotator_dim"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    annotator_id: int = Field(foreign_key="annotator.id", index=True)
    dimension: str = Field(max_length=200)
    value: Optional[float] = Field(default=None, description="Numeric value via the label map; NULL if the label maps to no value.")
    raw_label: str = Field(default="", max_length=500)


class ProviderKind(str, Enum):
    """The one list of provider kinds: campaigns name one per model, each has its provider class
    (``worker/providers/registry.py``) and its Celery queue (``worker/celery_app.py``)."""

    local = "local"
    openai = "openai"
    anthropic = "anthropic"


class ModelSpecBase(SQLModel):
    """A model spec's fields that the table and the HTTP API's ``ModelSpecOut`` share."""

    name: str = Field(max_length=200, description="The user's alias for this model in campaigns and reports.")
    provider: str = Field(max_length=50)
    model: str = Field(max_length=300)
    base_url: Optional[str] = Field(default=None, max_length=1000)
    api_key_env: Optional[str] = Field(default=None, max_length=200,
                                       description="The NAME of the environment variable holding the key.")
    params: dict[str, Any] = json_column()
    rpm: Optional[int] = None
    tpm: Optional[int] = None
    max_concurrency: int = 4
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)


class ModelSpec(ModelSpecBase, table=True):
    """A model as a rater: provider, name, endpoint, decoding, limits, prices.

    ``api_key_env`` is the *name* of the environment variable holding the key; the key is never stored."""

    __tablename__ = "model_spec"
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: Optional[int] = Field(default=None, foreign_key="project.id", index=True)
    price_cached_input_per_mtok: Optional[float] = None
    batch_discount: float = 0.0
    spec_hash: str = Field(index=True, unique=True, max_length=64, description=(
        "Hash of the campaign's model entry, its project and its effective price (scheduler.expand."
        "model_spec_hash); identical specs share a row."))


def endpoint_identity(spec: ModelSpec) -> str:
    """What one provider endpoint is: provider, model, base URL, API-key variable and (local) model file. The
    provider pool keeps a client and a concurrency cap per identity, the rate limiter a limit group (hashed)."""
    path = (spec.params or {}).get("path") or ""
    return f"{spec.provider}|{spec.model}|{spec.base_url or ''}|{spec.api_key_env or ''}|{path}"


class PromptTemplate(SQLModel, table=True):
    __tablename__ = "prompt_template"
    __table_args__ = (UniqueConstraint("name", "version", "content_hash", name="uq_template_name_version_hash"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    version: str = Field(max_length=50)
    response_format: str = Field(max_length=50, description="likert | binary | multiple_choice | open_ended")
    system: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    user: str = Field(sa_column=Column(Text, nullable=False))
    output_spec: dict[str, Any] = json_column()
    content_hash: str = Field(max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class CampaignBase(SQLModel):
    """A campaign's fields that the table and the HTTP API's ``CampaignOut`` share."""

    name: str = Field(max_length=200)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    spec: dict[str, Any] = json_column()  # the validated campaign document, stored whole
    spec_hash: str = Field(max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Campaign(CampaignBase, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: Optional[int] = Field(default=None, foreign_key="project.id", index=True)


class RunStatus(str, Enum):
    pending = "pending"
    running = "running"
    paused = "paused"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    budget_exhausted = "budget_exhausted"


TERMINAL_RUN_STATUSES = {RunStatus.completed, RunStatus.failed, RunStatus.cancelled, RunStatus.budget_exhausted}


class RunBase(SQLModel):
    """A run's fields that the table and the HTTP API's ``RunOut`` share."""

    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    status: str = Field(default=RunStatus.pending.value, max_length=30, index=True)
    mode: str = Field(default="embedded", max_length=30)
    total: int = 0
    done: int = 0
    failed: int = 0
    cached: int = 0
    cancelled: int = 0
    input_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    output_tokens: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    cost_usd: float = 0.0
    budget_usd: Optional[float] = None
    error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    postprocessed_at: Optional[datetime] = None


class Run(RunBase, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: Optional[int] = Field(default=None, foreign_key="project.id", index=True)
    priority: int = 0


class RequestStatus(str, Enum):
    pending = "pending"      # created, not yet handed to an executor
    queued = "queued"        # in a chunk sent to the broker (distributed) or an executor slot (embedded)
    done = "done"            # has its Rating
    failed = "failed"        # attempts exhausted or permanent error; last_error says why
    cancelled = "cancelled"  # run cancelled or out of budget before it was sent


class RequestStage(str, Enum):
    rate = "rate"            # a model rates an item (today's campaigns: models x templates)
    generate = "generate"    # a subject model answers the item's prompt; the result is an Answer
    judge = "judge"          # a judge model rates a subject's Answer; the result is a Rating


PERSONA_KEY_MAX = 500   # characters of a request's persona key (the campaign expansion refuses longer ones)


class RatingRequestBase(SQLModel):
    """A rating request's fields that the table and the HTTP API's ``RatingOut`` share."""

    persona_key: str = Field(default="", max_length=PERSONA_KEY_MAX, description="'' without persona, else a canonical attr=value list.")
    sample_index: int = 0
    status: str = Field(default=RequestStatus.pending.value, max_length=20)
    attempts: int = 0
    last_error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))


class RatingRequest(RatingRequestBase, table=True):
    __tablename__ = "rating_request"
    __table_args__ = (
        # A request about an item (a rating, or a subject's generation) exists once per run x stage x item x
        # model x template x persona x sample; a judge's request once per answer x judge x template x sample.
        Index("uq_request_item", "run_id", "stage", "item_id", "model_spec_id", "template_id", "persona_key",
              "sample_index", unique=True, postgresql_where=text("answer_id IS NULL AND comparison_id IS NULL"),
              sqlite_where=text("answer_id IS NULL AND comparison_id IS NULL")),
        Index("uq_request_answer", "answer_id", "model_spec_id", "template_id", "persona_key", "sample_index",
              unique=True, postgresql_where=text("answer_id IS NOT NULL"), sqlite_where=text("answer_id IS NOT NULL")),
        # A pairwise or listwise judge's request: once per comparison x judge x template x persona x sample.
        Index("uq_request_comparison", "comparison_id", "model_spec_id", "template_id", "persona_key",
              "sample_index", unique=True, postgresql_where=text("comparison_id IS NOT NULL"),
              sqlite_where=text("comparison_id IS NOT NULL")),
        Index("ix_request_run_status", "run_id", "status"),
        # Claims read the lowest pending ids of a run and model: only the pending part is indexed.
        Index("ix_request_pending_claim", "run_id", "model_spec_id", "id", postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    item_id: int = Field(foreign_key="item.id", index=True)
    model_spec_id: int = Field(foreign_key="model_spec.id", index=True)
    template_id: int = Field(foreign_key="prompt_template.id", index=True)
    persona: dict[str, Any] = json_column()
    stage: str = Field(default=RequestStage.rate.value, max_length=20, sa_column_kwargs={"server_default": "rate"},
                       description="rate (an item) | generate (a subject answers the item) | judge (rates an answer)")
    # No foreign key: answer.request_id already points here (one direction keeps the tables acyclic).
    answer_id: Optional[int] = Field(default=None, index=True,
                                     description="The Answer a judge request rates (judge stage only).")
    comparison_id: Optional[int] = Field(default=None, index=True,
                                         description="The AnswerComparison a pairwise/listwise judge request "
                                                     "orders (judge stage only; answer_id is then NULL).")
    cache_key: str = Field(max_length=64, index=True)
    chunk_id: Optional[str] = Field(default=None, max_length=64, index=True)
    leased_until: Optional[datetime] = None
    updated_at: datetime = Field(default_factory=utcnow)


class ImportedRating(SQLModel, table=True):
    """An existing judge model's label for an item, imported with the dataset (``--model-rating-col``): the
    analysis treats the rater like a model accord ran (template ``imported``, one sample) on every run over
    the dataset's items and dimension."""

    __tablename__ = "imported_rating"
    __table_args__ = (UniqueConstraint("item_id", "rater", "dimension", name="uq_imported_rating_item_rater_dim"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    rater: str = Field(max_length=200)
    dimension: str = Field(max_length=200)
    value: Optional[float] = None
    raw_label: str = Field(default="", max_length=500)


class ParseStatus(str, Enum):
    ok = "ok"
    refused = "refused"
    unparseable = "unparseable"
    truncated = "truncated"
    empty = "empty"


# The fields of a rating that a cache hit copies from its original (the per-request path in
# worker/execute.py and the set-based fill in scheduler/expand.py both copy these).
RATING_CACHED_FIELDS = (
    "raw_text", "label", "value", "weighted_value", "label_probs", "rationale", "parse_status",
    "finish_reason", "model_snapshot", "template_hash", "decoding", "input_tokens", "output_tokens",
    "cached_input_tokens", "cache_write_tokens", "repair_text", "repaired")


class Rating(SQLModel, table=True):
    """The answer to one rating request. A cache hit copies the stored answer (``cache_hit`` true,
    ``source_rating_id`` the original, zero cost) without calling the provider."""

    id: Optional[int] = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="rating_request.id", unique=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    cache_key: str = Field(max_length=64, index=True)
    raw_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    label: Optional[str] = Field(default=None, max_length=200)
    value: Optional[float] = None
    weighted_value: Optional[float] = Field(default=None, description="Probability-weighted score over the allowed labels.")
    label_probs: Optional[dict[str, Any]] = Field(default=None, sa_column=Column(JSON, nullable=True))
    rationale: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    parse_status: str = Field(max_length=20)
    finish_reason: Optional[str] = Field(default=None, max_length=50)
    model_snapshot: Optional[str] = Field(default=None, max_length=300)
    template_hash: Optional[str] = Field(default=None, max_length=64)
    decoding: dict[str, Any] = json_column()
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"},
                                     description="Input tokens read from the provider's prompt cache (part of input_tokens).")
    cache_write_tokens: int = Field(default=0, sa_column_kwargs={"server_default": "0"},
                                    description="Input tokens written to the prompt cache (Anthropic; part of input_tokens).")
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    cache_hit: bool = False
    source_rating_id: Optional[int] = None
    repair_text: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True),
                                       description="The answer to the parse-repair follow-up, when one was made.")
    repaired: bool = Field(default=False, sa_column_kwargs={"server_default": false()},
                           description="The label comes from the repair answer (raw_text stays the original).")
    provider_batch_id: Optional[int] = Field(default=None, index=True,
                                             description="The provider batch that answered it (batch dispatch).")
    created_at: datetime = Field(default_factory=utcnow)


class Answer(SQLModel, table=True):
    """A subject model's answer to an item under a generation template: the result of one ``generate``
    request (``request_id`` is unique, so an answer is never stored twice; nor is a subject asked twice, since
    the request exists once per run x item x subject x template x sample). ``label``/``value`` are the parsed
    choice when the generation template has labels (multiple choice), else NULL; ``status`` is the parse status
    (``ok`` for any non-empty free-text answer that was not cut off)."""

    __table_args__ = (
        UniqueConstraint("run_id", "item_id", "model_spec_id", "template_id", "sample_index",
                         name="uq_answer_run_item_subject_template_sample"),
    )
    id: Optional[int] = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="rating_request.id", unique=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    model_spec_id: int = Field(foreign_key="model_spec.id", index=True, description="The subject model.")
    template_id: int = Field(foreign_key="prompt_template.id", index=True, description="The generation template.")
    sample_index: int = 0
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    label: Optional[str] = Field(default=None, max_length=200)
    value: Optional[float] = None
    status: str = Field(max_length=20)
    finish_reason: Optional[str] = Field(default=None, max_length=50)
    model_snapshot: Optional[str] = Field(default=None, max_length=300)
    decoding: dict[str, Any] = json_column()
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    cache_key: str = Field(max_length=64, index=True)
    cache_hit: bool = False
    source_answer_id: Optional[int] = None
    created_at: datetime = Field(default_factory=utcnow)


class AnswerComparison(SQLModel, table=True):
    """Answers of one item shown together to a pairwise or listwise judge, in the order shown: ``answer_ids[k]``
    is labelled with the k-th capital letter (A, B, ...). Exists once per run and order (``answers_key``, the
    ids joined by commas), so a pair or list is never asked twice; it is created in the transaction that stores
    the answer completing it, with its judge requests."""

    __tablename__ = "answer_comparison"
    __table_args__ = (UniqueConstraint("run_id", "answers_key", name="uq_comparison_run_answers"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    kind: str = Field(max_length=20, description="pair | list")
    answer_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    answers_key: str = Field(max_length=500)


class HumanAnswerJudgment(SQLModel, table=True):
    """A person's judgment of a subject model's answer to an item: a rating (``kind`` rating, mapped like the
    dataset's ratings) or the answer's rank among the answers to the item (``kind`` rank, 1 = ranked first).
    Keyed to (item, subject model alias); ``answer_id`` is set when the import named a stored answer."""

    __tablename__ = "human_answer_judgment"
    __table_args__ = (UniqueConstraint("item_id", "subject", "annotator_id", "dimension", "kind",
                                       name="uq_human_answer_judgment"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    item_id: int = Field(foreign_key="item.id", index=True)
    subject: str = Field(max_length=200, description="The subject model's alias in the campaign.")
    answer_id: Optional[int] = Field(default=None, foreign_key="answer.id")
    annotator_id: int = Field(foreign_key="annotator.id", index=True)
    dimension: str = Field(max_length=200)
    kind: str = Field(max_length=20, description="rating | rank")
    value: Optional[float] = None
    raw_label: str = Field(default="", max_length=500)


class JudgeAssignment(SQLModel, table=True):
    """Which judge rates which answers of a run, under which template, how many times: the judge stage of a
    campaign resolved to rows. A judge request is created for each stored answer of a template in
    ``answers_of`` (generation template ids) and each sample, in the transaction that stores the answer."""

    __tablename__ = "judge_assignment"
    __table_args__ = (UniqueConstraint("run_id", "model_spec_id", "template_id", name="uq_judge_run_model_template"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    model_spec_id: int = Field(foreign_key="model_spec.id")
    template_id: int = Field(foreign_key="prompt_template.id")
    samples: int = 1
    answers_of: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class BatchStatus(str, Enum):
    """Where a provider batch is in accord's own lifecycle (the provider's raw status is kept beside it)."""

    preparing = "preparing"      # row and request mapping written; nothing sent yet
    submitting = "submitting"    # the create call is being made (a crash here is recovered by lookup)
    submitted = "submitted"      # the provider has it (validating / in_progress / finalizing / canceling)
    ended = "ended"              # the provider finished it; results not yet stored
    collected = "collected"      # results stored, failed requests sent back to pending or failed
    abandoned = "abandoned"      # never reached the provider (upload or create refused); requests released


LIVE_BATCH_STATUSES = (BatchStatus.preparing.value, BatchStatus.submitting.value, BatchStatus.submitted.value,
                       BatchStatus.ended.value)


class ProviderBatch(SQLModel, table=True):
    """One batch submitted to a provider's batch API (OpenAI Batch API, Anthropic Message Batches).

    A request belongs to at most one live batch at a time (its ``chunk_id`` is ``batch:<id>`` while the
    batch is live); ``provider_batch_request`` lists the requests of each batch and what became of them."""

    __tablename__ = "provider_batch"
    __table_args__ = (Index("ix_provider_batch_run_status", "run_id", "status"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    model_spec_id: int = Field(foreign_key="model_spec.id", index=True)
    provider: str = Field(max_length=50)
    external_id: Optional[str] = Field(default=None, max_length=200, unique=True,
                                       description="The provider's batch id, once created.")
    status: str = Field(default=BatchStatus.preparing.value, max_length=20)
    provider_status: Optional[str] = Field(default=None, max_length=50)
    input_file_id: Optional[str] = Field(default=None, max_length=200)
    output_file_id: Optional[str] = Field(default=None, max_length=200)
    error_file_id: Optional[str] = Field(default=None, max_length=200)
    request_count: int = 0
    bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    estimated_cost_usd: float = Field(default=0.0, description="Upper-bound cost reserved against the budget while live.")
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    cancelled: int = 0
    error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    submitted_at: Optional[datetime] = None
    ended_at: Optional[datetime] = None
    collected_at: Optional[datetime] = None
    updated_at: datetime = Field(default_factory=utcnow)


class ProviderBatchRequest(SQLModel, table=True):
    """A rating request inside a provider batch; ``outcome`` is set when the batch's results are stored:
    succeeded | errored | expired | canceled | missing."""

    __tablename__ = "provider_batch_request"
    batch_id: int = Field(foreign_key="provider_batch.id", primary_key=True)
    request_id: int = Field(foreign_key="rating_request.id", primary_key=True, index=True)
    outcome: Optional[str] = Field(default=None, max_length=20)
    error: Optional[str] = Field(default=None, sa_column=Column(Text, nullable=True))


class MetricBase(SQLModel):
    """One number of a run's post-processing, with its slice (e.g. 'all', 'gender=Woman'), its rater
    (model alias and template name, or '' for human-only metrics) and its uncertainty: the fields the table
    and the HTTP API's ``MetricOut`` share. ``name`` is one of ``accord.analysis.catalogue.MetricName``."""

    name: str = Field(max_length=200)
    slice: str = Field(default="all", max_length=500)
    model: str = Field(default="", max_length=200)
    template: str = Field(default="", max_length=200)
    value: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    pvalue: Optional[float] = None
    n: Optional[int] = None
    details: dict[str, Any] = json_column()


class Metric(MetricBase, table=True):
    """A stored metric of a run."""

    __table_args__ = (Index("ix_metric_run_name", "run_id", "name"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id")
    created_at: datetime = Field(default_factory=utcnow)


Row = TypeVarTuple("Row")   # a query's column types


def join_rater_context(q: Select[*Row], table: type[RatingRequest | JudgeAssignment]) -> Select[*Row]:
    """``q`` over rows of ``table`` (requests or judge assignments) joined to their model, template, run and
    the run's campaign."""
    return (q.join(ModelSpec, col(ModelSpec.id) == col(table.model_spec_id))
            .join(PromptTemplate, col(PromptTemplate.id) == col(table.template_id))
            .join(Run, col(Run.id) == col(table.run_id))
            .join(Campaign, col(Campaign.id) == col(Run.campaign_id)))
