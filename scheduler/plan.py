"""``accord plan``: what a campaign would cost before anything is sent — requests, cache hits already
available, estimated tokens and dollars per model, expected duration at each model's rate limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from accord.models.projects import owner_id
from accord.models.schema import Rating
from accord.scheduler.campaign_spec import CampaignSpec
from accord.scheduler.dataset_source import DatasetSourceError, ensure_dataset
from accord.scheduler.expand import CampaignError, effective_price, resolve_campaign
from accord.scheduler.plan_stages import stage_plans, tally
from accord.worker.execute import estimate_tokens

_KEY_BATCH = 900          # bound on bind parameters per IN (...) query (SQLite's limit is 999 on old builds)
DEFAULT_OUTPUT_CAP = 16   # output tokens assumed when neither the campaign nor the template caps them


@dataclass
class ModelPlan:
    model: str
    provider: str
    requests: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    price_source: str = ""
    rpm: int | None = None
    tpm: int | None = None
    stage: str = "rate"       # rate (models rating items) | subjects | judges

    @property
    def to_call(self) -> int:
        return self.requests - self.cached

    @property
    def minutes_at_limits(self) -> float | None:
        """Lower bound on wall time set by the rate limits (None when the model has no limits)."""
        bounds = []
        if self.rpm:
            bounds.append(self.to_call / self.rpm)
        if self.tpm:
            bounds.append((self.input_tokens + self.output_tokens) / self.tpm)
        return max(bounds) if bounds else None


@dataclass
class CampaignPlan:
    name: str
    items: int
    personas: int
    models: list[ModelPlan] = field(default_factory=list)
    budget_usd: float | None = None

    @property
    def requests(self) -> int:
        return sum(m.requests for m in self.models)

    @property
    def cached(self) -> int:
        return sum(m.cached for m in self.models)

    @property
    def cost_usd(self) -> float:
        return sum(m.cost_usd for m in self.models)

    @property
    def exceeds_budget(self) -> bool:
        return self.budget_usd is not None and self.cost_usd > self.budget_usd


def _cached_keys(session: Session, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), _KEY_BATCH):
        batch = keys[i:i + _KEY_BATCH]
        found.update(session.execute(select(col(Rating.cache_key)).where(
            col(Rating.cache_key).in_(batch), col(Rating.cache_hit).is_(False))).scalars())
    return found


def plan_campaign(engine: Engine, spec: CampaignSpec, project_id: int | None = None,
                  budget_override: float | None = None) -> CampaignPlan:
    """Estimate without writing anything (but importing the campaign's ``dataset_import`` when its dataset is
    missing). Output tokens are counted at their cap (an upper bound), input
    tokens from the rendered prompts; requests whose answer is already cached cost nothing."""
    project_id = owner_id(engine, project_id)
    try:   # a campaign that names its dataset's import file plans before its first run
        ensure_dataset(engine, spec, project_id)
    except DatasetSourceError as e:
        raise CampaignError(str(e)) from None
    with Session(engine) as session:
        expansion = resolve_campaign(session, spec, project_id)
        plans = {m.name: ModelPlan(model=m.name, provider=m.provider, rpm=m.rpm, tpm=m.tpm,
                                   price_source=effective_price(m).source) for m in spec.models}
        prices = {m.name: effective_price(m) for m in spec.models}
        entries = {m.name: m for m in spec.models}
        use_cache = spec.cache is True
        # Streamed: requests are expanded and looked up in the cache a batch at a time, so memory stays
        # bounded whatever the campaign's size.
        batch: list[tuple[str, str, int, int]] = []

        def flush() -> None:
            tally(plans, batch, _cached_keys(session, [key for _, key, _, _ in batch]) if use_cache else set())
            batch.clear()

        for r in expansion.requests(spec):
            out_cap = int(r.decoding.get("max_tokens") or DEFAULT_OUTPUT_CAP)
            batch.append((r.model.name, r.cache_key, estimate_tokens(r.messages, 0), out_cap))
            if len(batch) >= _KEY_BATCH:
                flush()
        flush()
        for name, p in plans.items():
            price = prices[name]
            p.cost_usd = (p.input_tokens * price.input + p.output_tokens * price.output) / 1e6
            if spec.uses_batch_api(entries[name]):
                p.cost_usd *= 1 - price.batch_discount
        stage_rows = stage_plans(session, spec, expansion, DEFAULT_OUTPUT_CAP, ModelPlan)
    budget = budget_override if budget_override is not None else spec.budget_usd
    return CampaignPlan(name=spec.name, items=len(expansion.items), personas=len(expansion.personas),
                        models=[*plans.values(), *stage_rows], budget_usd=budget)
