"""Pre-flight planning and the price table."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.prices import lookup_price
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from accord.scheduler.plan import plan_campaign
from tests.fakes.openai_server import OpenAIFakeServer
from tests.fakes.synthetic_dataset import make_sparse_dataset


def test_price_table_matches_snapshots_by_longest_prefix() -> None:
    assert lookup_price("openai", "gpt-4o-mini-2024-07-18").input == 0.15      # not gpt-4o's 2.50
    assert lookup_price("openai", "gpt-4o-2024-08-06").output == 10.0
    assert lookup_price("anthropic", "claude-3-5-haiku-20241022").output == 4.0
    unknown = lookup_price("openai", "my-finetune")
    assert (unknown.input, unknown.source) == (0.0, "none")


def test_user_price_table_overrides_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.models.settings import get_settings

    monkeypatch.setenv("ACCORD_HOME", str(tmp_path))
    get_settings.cache_clear()
    (tmp_path / "prices.yaml").write_text("openai:\n  gpt-4o-mini: {input: 1.0, output: 2.0}\n")
    p = lookup_price("openai", "gpt-4o-mini")
    assert (p.input, p.output, p.source) == (1.0, 2.0, "user table")
    get_settings.cache_clear()


def test_plan_counts_costs_and_cache(sqlite_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kwargs = make_sparse_dataset(tmp_path, n_items=6, n_annotators=20, seed=2)
    import_dataset(sqlite_engine, ImportSpec(**{**kwargs, "name": "syn"}))
    with OpenAIFakeServer() as server:
        doc = {"name": "p", "dataset": "syn", "samples": 2, "decoding": {"max_tokens": 32},
               "models": [{"name": "m", "provider": "openai", "model": "gpt-4o", "base_url": server.base_url, "rpm": 6},
                          {"name": "l", "provider": "local"}],
               "templates": ["binary_unsafe"], "budget_usd": 10}
        spec = parse_campaign(doc)
        plan = plan_campaign(sqlite_engine, spec)
        m, local = plan.models
        assert (m.requests, m.cached, m.output_tokens) == (12, 0, 12 * 32)
        assert m.input_tokens > 12 * 50
        assert m.cost_usd == pytest.approx((m.input_tokens * 2.5 + m.output_tokens * 10.0) / 1e6)
        assert m.price_source == "default table" and local.cost_usd == 0.0
        assert m.minutes_at_limits == pytest.approx(12 / 6)
        assert not plan.exceeds_budget
        assert plan_campaign(sqlite_engine, spec, budget_override=1e-6).exceeds_budget
        # After a run of the openai model alone, the same requests are cache hits in the plan.
        only_openai = parse_campaign({**doc, "models": doc["models"][:1]})
        run_embedded(sqlite_engine, create_run(sqlite_engine, only_openai).run_id)
        again = plan_campaign(sqlite_engine, spec)
        assert (again.models[0].cached, again.models[0].cost_usd) == (12, 0.0)
        assert again.models[1].cached == 0


def test_batch_discount_applies_per_model_that_uses_a_batch_api(sqlite_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kwargs = make_sparse_dataset(tmp_path, n_items=4, n_annotators=10, seed=4)
    import_dataset(sqlite_engine, ImportSpec(**{**kwargs, "name": "syn"}))
    models = [{"name": "api", "provider": "openai", "model": "gpt-4o"},                         # has a batch API
              {"name": "vllm", "provider": "openai", "model": "gpt-4o", "base_url": "http://127.0.0.1:9/v1"}]
    base = {"name": "b", "dataset": "syn", "models": models, "templates": ["binary_unsafe"]}
    realtime = {m.model: m.cost_usd for m in plan_campaign(sqlite_engine, parse_campaign(base)).models}
    auto = {m.model: m.cost_usd for m in plan_campaign(
        sqlite_engine, parse_campaign({**base, "dispatch": "auto", "deadline_hours": 48})).models}
    assert auto["api"] == pytest.approx(realtime["api"] * 0.5)     # gpt-4o batch discount: 50%
    assert auto["vllm"] == pytest.approx(realtime["vllm"])          # a compatible server has no batch API
    short = {m.model: m.cost_usd for m in plan_campaign(
        sqlite_engine, parse_campaign({**base, "dispatch": "auto", "deadline_hours": 2})).models}
    assert short["api"] == pytest.approx(realtime["api"])           # deadline too short for a 24 h batch
