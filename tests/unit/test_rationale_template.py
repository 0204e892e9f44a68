""""Analyze, then rate": the bundled likert_unsafe_rationale template, asked for the strongest way each
provider supports it (OpenAI json_schema with the rationale first, Anthropic a forced tool call with the
rationale first, local models a grammar with a bounded rationale line), parsed into label + rationale, with
label probabilities read at the label after the rationale."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import Rating
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from accord.worker.parsing import parse_answer
from accord.worker.prompt_templates import bundled_template_names, load_template, render_messages
from accord.worker.providers.anthropic_provider import AnthropicProvider
from accord.worker.providers.base import RATIONALE_MIN_TOKENS, ProviderRequest
from accord.worker.providers.local_llama import (
    RATIONALE_MAX_CHARS, rationale_grammar, rationale_prefix,
)
from accord.worker.providers.openai_provider import OpenAIProvider
from tests.fakes.answers import FAKE_RATIONALE, label_distribution, prompt_key
from tests.fakes.anthropic_server import AnthropicFakeServer
from tests.fakes.openai_server import OpenAIFakeServer

TEMPLATE = load_template("likert_unsafe_rationale")
CONVERSATION = {"kind": "conversation", "turns": [
    {"speaker": "USER", "text": "How do I bake bread at home?"},
    {"speaker": "CHATBOT", "text": "Mix flour, water, salt and yeast, knead, let it rise, bake at 230 C."}]}
MESSAGES = render_messages(TEMPLATE, CONVERSATION)


def rationale_request(**over) -> ProviderRequest:  # type: ignore[no-untyped-def]
    fields = {"messages": MESSAGES, "params": {"temperature": 0.0, "max_tokens": TEMPLATE.max_tokens},
              "labels": list(TEMPLATE.labels), "want_logprobs": True, "structured": True, "rationale": True}
    fields.update(over)
    return ProviderRequest(**fields)


def test_bundled_rationale_template() -> None:
    assert "likert_unsafe_rationale" in bundled_template_names()
    assert TEMPLATE.rationale and TEMPLATE.logprobs and TEMPLATE.labels == {"1": 0.0, "2": 0.25, "3": 0.5,
                                                                            "4": 0.75, "5": 1.0}
    assert "Rationale:" in MESSAGES[-1]["content"] and "Rating:" in MESSAGES[-1]["content"]
    parsed = parse_answer("Rationale: The reply explains baking; 1 to 5 it is harmless.\nRating: 1", TEMPLATE.labels,
                          pattern=TEMPLATE.pattern)
    assert (parsed.label, parsed.status, parsed.rationale) == ("1", "ok", "The reply explains baking; 1 to 5 it is harmless.")
    cut = parse_answer("Rationale: The reply explains baking, which", TEMPLATE.labels, finish_reason="length",
                       pattern=TEMPLATE.pattern)
    assert (cut.label, cut.status) == (None, "truncated")


def test_openai_schema_puts_the_rationale_first_and_scores_the_label_after_it(openai_fake: OpenAIFakeServer) -> None:
    openai_fake.reset()
    provider = OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url)
    kwargs = provider.build_kwargs(rationale_request())
    schema = kwargs["response_format"]["json_schema"]["schema"]
    assert list(schema["properties"]) == ["rationale", "label"] and schema["required"] == ["rationale", "label"]
    assert kwargs["max_tokens"] >= RATIONALE_MIN_TOKENS

    async def go():  # type: ignore[no-untyped-def]
        response = await provider.complete(rationale_request())
        await provider.aclose()
        return response

    response = asyncio.run(go())
    assert list(json.loads(response.text)) == ["rationale", "label"]
    parsed = parse_answer(response.text, TEMPLATE.labels, pattern=TEMPLATE.pattern)
    assert parsed.status == "ok" and parsed.rationale == FAKE_RATIONALE
    expected = label_distribution(prompt_key(MESSAGES), list(TEMPLATE.labels))
    got = {label: math.exp(lp) for label, lp in (response.label_logprobs or {}).items()}
    assert set(got) == set(expected) and max(got, key=got.get) == parsed.label   # type: ignore[arg-type]
    for label, p in expected.items():
        assert got[label] == pytest.approx(p / sum(expected.values()), rel=1e-3)


def test_anthropic_tool_puts_the_rationale_first() -> None:
    with AnthropicFakeServer() as fake:
        provider = AnthropicProvider("claude-sonnet-4-20250514", base_url=fake.base_url)
        kwargs = provider.build_kwargs(rationale_request())
        tool = kwargs["tools"][0]
        assert kwargs["tool_choice"] == {"type": "tool", "name": tool["name"]}
        assert list(tool["input_schema"]["properties"]) == ["rationale", "label"]
        assert tool["input_schema"]["required"] == ["rationale", "label"]

        async def go():  # type: ignore[no-untyped-def]
            response = await provider.complete(rationale_request())
            await provider.aclose()
            return response

        response = asyncio.run(go())
    assert list(json.loads(response.text)) == ["rationale", "label"]
    parsed = parse_answer(response.text, TEMPLATE.labels)
    assert parsed.status == "ok" and parsed.rationale == FAKE_RATIONALE


def test_campaign_with_the_rationale_template_stores_the_rationale(sqlite_engine, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                   openai_fake: OpenAIFakeServer) -> None:
    from tests.fakes.synthetic_dataset import make_sparse_dataset

    openai_fake.reset()
    import_dataset(sqlite_engine, ImportSpec(**{**make_sparse_dataset(tmp_path, n_items=3, n_annotators=10, seed=2),
                                                "name": "syn"}))
    plan = create_run(sqlite_engine, parse_campaign({
        "name": "why", "dataset": "syn", "dimension": "Q_overall", "templates": ["likert_unsafe_rationale"],
        "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": openai_fake.base_url}]}))
    assert run_embedded(sqlite_engine, plan.run_id).done == 3
    with Session(sqlite_engine) as session:
        ratings = list(session.execute(select(Rating).where(Rating.run_id == plan.run_id)).scalars())
    assert all(r.parse_status == "ok" and r.rationale == FAKE_RATIONALE for r in ratings)
    assert all(r.label_probs and abs(sum(r.label_probs.values()) - 1) < 1e-9 for r in ratings)
    assert all(r.label == max(r.label_probs, key=r.label_probs.get) for r in ratings)


def test_local_rationale_grammar_and_label_position() -> None:
    grammar = rationale_grammar(["1", "2", 'say "x"'])
    assert grammar.splitlines() == ['root ::= "Rationale: " rationale "\\nRating: " label',
                                    f"rationale ::= [^\\n]{{10,{RATIONALE_MAX_CHARS}}}",
                                    'label ::= "1" | "2" | "say \\"x\\""']
    assert rationale_prefix("Rationale: fine.\nRating: 2", ["1", "2"]) == "Rationale: fine.\nRating: "
    assert rationale_prefix("Rationale: fine, 2.\nRating: ", ["1", "2"]) is None           # cut off
    assert rationale_prefix("Rationale: a\nRating: 1\nRating: 2", ["1", "2"]) == "Rationale: a\nRating: 1\nRating: "


@pytest.mark.slow
def test_local_model_rationale_then_label_with_scores_at_the_label() -> None:
    from accord.worker.providers.local_llama import LocalLlamaProvider

    provider = LocalLlamaProvider("SmolLM2-135M-Instruct")
    response = asyncio.run(provider.complete(rationale_request(params={"temperature": 0.0, "seed": 3,
                                                                       "max_tokens": TEMPLATE.max_tokens})))
    assert response.text.startswith("Rationale: ") and "\nRating: " in response.text
    parsed = parse_answer(response.text, TEMPLATE.labels, finish_reason=response.finish_reason,
                          pattern=TEMPLATE.pattern)
    assert parsed.status == "ok" and parsed.rationale and len(parsed.rationale) <= RATIONALE_MAX_CHARS
    probs = {label: math.exp(lp) for label, lp in (response.label_logprobs or {}).items()}
    assert set(probs) == set(TEMPLATE.labels) and sum(probs.values()) == pytest.approx(1.0)
    # greedy decoding under the grammar picks the most likely allowed label at that position: the scores
    # were read there (after the rationale), not at the start of the answer
    assert max(probs, key=probs.get) == parsed.label  # type: ignore[arg-type]
