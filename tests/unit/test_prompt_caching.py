"""Prompt caching: Anthropic gets ``cache_control`` on a system prompt long enough to be cached; both
providers report cached input tokens (OpenAI ``prompt_tokens_details.cached_tokens``, Anthropic
``cache_read_input_tokens`` / ``cache_creation_input_tokens``); ratings are priced with the cached-input
price and the cache-write surcharge. Against the wire servers through the SDKs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import ModelSpec, Rating
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from accord.worker.execute import CACHE_WRITE_MULTIPLIER, _cost
from accord.worker.prompt_templates import BEGIN, END
from accord.worker.providers.anthropic_provider import (
    CACHE_MIN_TOKENS, CACHE_MIN_TOKENS_HAIKU, CHARS_PER_TOKEN, AnthropicProvider, cache_breakpoint, rating_tool,
    system_blocks,
)
from accord.worker.providers.base import ProviderRequest, ProviderResponse
from accord.worker.providers.openai_provider import OpenAIProvider
from tests.fakes.answers import count_tokens
from tests.fakes.anthropic_server import AnthropicFakeServer
from tests.fakes.openai_server import OpenAIFakeServer

# A codebook-style system prompt of ~1,500 words (~2,400 estimated tokens): long enough to cache on most
# models (1,024 tokens), and on Haiku (2,048).
CODEBOOK = " ".join(f"Rule {i}: a response that gives operational detail for harm type {i % 7} is unsafe."
                    for i in range(110))
LABELS = ["1", "2", "3", "4", "5"]


def chars_for(tokens: int) -> str:
    return "x" * int(tokens * CHARS_PER_TOKEN)


def test_system_prompt_gets_cache_control_only_when_long_enough() -> None:
    assert system_blocks("short", None, "claude-sonnet-4") == "short"
    long_text = chars_for(CACHE_MIN_TOKENS + 10)
    blocks = system_blocks(long_text, None, "claude-sonnet-4")
    assert blocks == [{"type": "text", "text": long_text, "cache_control": {"type": "ephemeral"}}]
    assert system_blocks(long_text, None, "claude-3-5-haiku-20241022") == long_text     # Haiku needs 2,048
    assert isinstance(system_blocks(chars_for(CACHE_MIN_TOKENS_HAIKU + 10), None, "claude-3-5-haiku"), list)
    assert system_blocks(long_text, None, "claude-sonnet-4", enabled=False) == long_text
    # the tools come before the system prompt in the cached prefix, so they count toward its length
    almost = chars_for(CACHE_MIN_TOKENS - 40)
    assert system_blocks(almost, None, "claude-sonnet-4") == almost
    assert isinstance(system_blocks(almost, [rating_tool(LABELS, True)] * 3, "claude-sonnet-4"), list)


def test_shared_instructions_before_the_content_are_cached_with_the_system_prompt() -> None:
    head = chars_for(CACHE_MIN_TOKENS) + "\n\n"
    user = head + f"{BEGIN}\nUSER: hi\n{END}\n\nRate 1-5."
    messages = [{"role": "user", "content": user}]
    system, out = cache_breakpoint("Be careful.", messages, None, "claude-sonnet-4")
    assert system == "Be careful."                       # one breakpoint, after the instructions, covers the system
    assert out == [{"role": "user", "content": [
        {"type": "text", "text": head, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": user[len(head):]}]}]
    assert "".join(b["text"] for b in out[0]["content"]) == user                 # the same text, split
    assert messages == [{"role": "user", "content": user}]                        # the input is left alone
    short = [{"role": "user", "content": f"Rate this.\n{BEGIN}\nx\n{END}"}]
    assert cache_breakpoint("Be careful.", short, None, "claude-sonnet-4") == ("Be careful.", short)
    long_system = chars_for(CACHE_MIN_TOKENS + 10)
    system, out = cache_breakpoint(long_system, short, None, "claude-sonnet-4")   # long system, short instructions:
    assert system == long_system and out[0]["content"][0]["cache_control"]       # the breakpoint still goes last
    bare = [{"role": "user", "content": f"{BEGIN}\nx\n{END}"}]                  # no instructions before the content
    system, out = cache_breakpoint(long_system, bare, None, "claude-sonnet-4")
    assert isinstance(system, list) and system[0]["cache_control"] and out == bare
    assert cache_breakpoint("s", messages, None, "claude-sonnet-4", enabled=False) == ("s", messages)


def test_cost_prices_cached_reads_and_cache_writes() -> None:
    spec = ModelSpec(name="m", provider="anthropic", model="m", spec_hash="h", price_input_per_mtok=3.0,
                     price_output_per_mtok=15.0, price_cached_input_per_mtok=0.3)
    assert _cost(spec, 1000, 10) == pytest.approx((1000 * 3.0 + 10 * 15.0) / 1e6)
    read = _cost(spec, 1000, 10, cached_input_tokens=800)
    assert read == pytest.approx((200 * 3.0 + 800 * 0.3 + 10 * 15.0) / 1e6)
    write = _cost(spec, 1000, 10, cache_write_tokens=800)
    assert write == pytest.approx((200 * 3.0 + 800 * 3.0 * CACHE_WRITE_MULTIPLIER + 10 * 15.0) / 1e6)
    assert _cost(spec, 1000, 10, cached_input_tokens=800, discount=0.5) == pytest.approx(read * 0.5)
    no_cached_price = ModelSpec(name="m", provider="openai", model="m", spec_hash="h2", price_input_per_mtok=2.0)
    assert _cost(no_cached_price, 1000, 0, cached_input_tokens=1000) == pytest.approx(2000 / 1e6)
    assert _cost(spec, 100, 0, cached_input_tokens=500) == pytest.approx(100 * 0.3 / 1e6)   # clamped


def ask_twice(provider, request: ProviderRequest) -> list[ProviderResponse]:  # type: ignore[no-untyped-def]
    async def go() -> list[ProviderResponse]:
        out = [await provider.complete(request), await provider.complete(request)]
        await provider.aclose()
        return out

    return asyncio.run(go())


def request(user: str = "Rate item 1.") -> ProviderRequest:
    return ProviderRequest(messages=[{"role": "system", "content": CODEBOOK}, {"role": "user", "content": user}],
                           params={"max_tokens": 4}, labels=LABELS, structured=True)


def test_anthropic_reports_cache_writes_then_reads(anthropic_fake: AnthropicFakeServer) -> None:
    anthropic_fake.reset()
    provider = AnthropicProvider("claude-sonnet-4-20250514", base_url=anthropic_fake.base_url)
    first, second = ask_twice(provider, request())
    system_tokens = count_tokens(CODEBOOK)
    assert (first.cache_write_tokens, first.cached_input_tokens) == (system_tokens, 0)
    assert (second.cache_write_tokens, second.cached_input_tokens) == (0, system_tokens)
    assert first.input_tokens == second.input_tokens > system_tokens               # totals include cached parts
    body = anthropic_fake.stats()["request_log"][0]["body"]
    assert body["system"] == [{"type": "text", "text": CODEBOOK, "cache_control": {"type": "ephemeral"}}]
    off = AnthropicProvider("claude-sonnet-4-20250514", base_url=anthropic_fake.base_url, prompt_cache=False)
    plain = ask_twice(off, request("Rate item 2."))
    assert all(r.cached_input_tokens == r.cache_write_tokens == 0 for r in plain)
    assert anthropic_fake.stats()["request_log"][-1]["body"]["system"] == CODEBOOK


def test_anthropic_caches_long_template_instructions(anthropic_fake: AnthropicFakeServer) -> None:
    anthropic_fake.reset()
    provider = AnthropicProvider("claude-sonnet-4-20250514", base_url=anthropic_fake.base_url)

    def ask(item: str) -> ProviderRequest:
        return ProviderRequest(messages=[{"role": "system", "content": "You rate safety."},
                                         {"role": "user", "content": f"{CODEBOOK}\n\n{BEGIN}\n{item}\n{END}\nRate."}],
                               params={"max_tokens": 4}, labels=LABELS, structured=True)

    async def go() -> list[ProviderResponse]:
        out = [await provider.complete(ask("USER: one")), await provider.complete(ask("USER: two, longer"))]
        await provider.aclose()
        return out

    first, second = asyncio.run(go())
    shared = count_tokens("You rate safety." + CODEBOOK + "\n\n")
    assert (first.cache_write_tokens, second.cached_input_tokens) == (shared, shared)
    assert second.input_tokens > first.input_tokens                   # different items, one shared prefix
    body = anthropic_fake.stats()["request_log"][0]["body"]
    assert body["system"] == "You rate safety." and body["messages"][0]["content"][0]["cache_control"]


def test_openai_reports_cached_prompt_tokens(openai_fake: OpenAIFakeServer) -> None:
    openai_fake.reset()
    provider = OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url)
    first, second = ask_twice(provider, request())
    assert first.cached_input_tokens == 0
    assert second.cached_input_tokens > 1024 and second.cached_input_tokens % 128 == 0
    assert second.cached_input_tokens < second.input_tokens == first.input_tokens
    openai_fake.reset(omit_usage=True)                    # compatible servers without usage: zeros, no error
    bare = ask_twice(OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url), request())
    assert all((r.input_tokens, r.cached_input_tokens) == (0, 0) for r in bare)


def test_campaign_ratings_are_priced_with_the_cache(sqlite_engine, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    anthropic_fake: AnthropicFakeServer) -> None:
    from tests.fakes.synthetic_dataset import make_sparse_dataset

    anthropic_fake.reset()
    import_dataset(sqlite_engine, ImportSpec(**{**make_sparse_dataset(tmp_path, n_items=4, n_annotators=10, seed=5),
                                                "name": "syn"}))
    template = tmp_path / "codebook.yaml"
    template.write_text("name: codebook\nversion: '1'\nresponse_format: likert\nsystem: |\n  " + CODEBOOK +
                        "\nuser: |\n  {{ content }}\n  Rate 1-5.\noutput:\n  labels: {'1': 0, '2': 0.25, '3': 0.5,"
                        " '4': 0.75, '5': 1}\n  max_tokens: 4\n", encoding="utf-8")
    price = {"input": 3.0, "output": 15.0, "cached_input": 0.3}
    campaign = parse_campaign({
        "name": "cache", "dataset": "syn", "dimension": "Q_overall", "templates": [{"path": str(template)}],
        "models": [{"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-20250514",
                    "base_url": anthropic_fake.base_url, "max_concurrency": 1, "price": price}]})
    plan = create_run(sqlite_engine, campaign)
    progress = run_embedded(sqlite_engine, plan.run_id, concurrency=1, chunk_size=1)
    assert progress.done == 4
    with Session(sqlite_engine) as session:
        ratings = list(session.execute(select(Rating).where(Rating.run_id == plan.run_id)
                                       .order_by(Rating.id)).scalars())
    system_tokens = count_tokens(CODEBOOK)
    assert [(r.cache_write_tokens, r.cached_input_tokens) for r in ratings] == \
        [(system_tokens, 0)] + [(0, system_tokens)] * 3
    for r in ratings:
        fresh = r.input_tokens - r.cached_input_tokens - r.cache_write_tokens
        expected = (fresh * 3.0 + r.cached_input_tokens * 0.3 + r.cache_write_tokens * 3.0 * 1.25
                    + r.output_tokens * 15.0) / 1e6
        assert r.cost_usd == pytest.approx(expected)
    uncached = sum((r.input_tokens * 3.0 + r.output_tokens * 15.0) / 1e6 for r in ratings)
    assert progress.cost_usd == pytest.approx(sum(r.cost_usd for r in ratings)) and progress.cost_usd < 0.5 * uncached
