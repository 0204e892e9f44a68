"""Parse repair: an unparseable answer gets a follow-up call (the conversation, the model's answer, and an
instruction to answer with one label); the rating keeps both texts, the final answer's parse status, and
the tokens and cost of every call. Never a default label. Through the embedded runner and the batch path,
against the OpenAI wire server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.schema import Rating
from accord.scheduler.batch_dispatch import run_batches
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from accord.worker.execute import REPAIR_INSTRUCTION, repair_messages
from tests.fakes.answers import count_tokens
from tests.fakes.openai_server import OpenAIFakeServer
from tests.fakes.synthetic_dataset import make_sparse_dataset

UNCLEAR = "Somewhere between 2 and 4, it is hard to say."


@pytest.fixture(scope="module")
def fake() -> Iterator[OpenAIFakeServer]:
    with OpenAIFakeServer() as server:
        yield server


@pytest.fixture
def db(sqlite_engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    kwargs = make_sparse_dataset(tmp_path, n_items=3, n_annotators=10, seed=3)
    import_dataset(sqlite_engine, ImportSpec(**{**kwargs, "name": "syn"}))
    return sqlite_engine


def rate_one(db, fake: OpenAIFakeServer, texts: list[str], **over) -> Rating:  # type: ignore[no-untyped-def]
    """Rate one item once, the fake answering ``texts`` in order; the stored rating."""
    fake.reset(next_texts=texts)
    doc = {"name": "repair", "dataset": "syn", "dimension": "Q_overall", "items": {"limit": 1}, "cache": False,
           "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": fake.base_url,
                       "price": {"input": 1.0, "output": 2.0, "batch_discount": 0.5}, "batch_api": True}],
           "templates": ["likert_unsafe"], **over}
    plan = create_run(db, parse_campaign(doc))
    if doc.get("dispatch") == "batch":
        progress = run_batches(db, plan.run_id, poll_seconds=0)
    else:
        progress = run_embedded(db, plan.run_id, backoff_initial=0.01)
    assert (progress.status, progress.done) == ("completed", 1)
    with Session(db) as session:
        return session.execute(select(Rating).where(Rating.run_id == plan.run_id)).scalar_one()


def chat_bodies(fake: OpenAIFakeServer) -> list[dict]:  # type: ignore[type-arg]
    return [e["body"] for e in fake.stats()["request_log"] if e["path"] == "/v1/chat/completions"]


def usage_tokens(fake: OpenAIFakeServer) -> int:
    from tests.fakes.openai_server import prompt_token_count

    return sum(prompt_token_count(body) for body in chat_bodies(fake))


def test_repair_messages_carry_the_answer_and_the_labels() -> None:
    base = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    out = repair_messages(base, "maybe 2?", ["1", "2", "3"])
    assert out[:2] == base and out[2] == {"role": "assistant", "content": "maybe 2?"}
    assert out[3]["role"] == "user" and out[3]["content"] == REPAIR_INSTRUCTION.format(labels="1, 2, 3")
    assert repair_messages(base, "  ", ["a"])[2]["content"] == "(no answer)"     # never an empty turn
    assert base == [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]


def test_unparseable_answer_is_repaired_and_both_texts_kept(db, fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    rating = rate_one(db, fake, [UNCLEAR, "3"])
    assert (rating.raw_text, rating.repair_text, rating.repaired) == (UNCLEAR, "3", True)
    assert (rating.label, rating.value, rating.parse_status) == ("3", 0.5, "ok")
    bodies = chat_bodies(fake)
    assert len(bodies) == 2
    first, repair = bodies
    assert repair["messages"][:-2] == first["messages"]
    assert repair["messages"][-2] == {"role": "assistant", "content": UNCLEAR}
    assert "1, 2, 3, 4, 5" in repair["messages"][-1]["content"]
    assert list(repair["response_format"]["json_schema"]["schema"]["properties"]) == ["label"]
    assert rating.input_tokens == usage_tokens(fake)                        # both calls counted
    assert rating.output_tokens == count_tokens(UNCLEAR) + count_tokens("3")
    assert rating.cost_usd == pytest.approx((rating.input_tokens * 1.0 + rating.output_tokens * 2.0) / 1e6)


def test_failed_repair_stays_unparseable_never_a_default_label(db, fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    rating = rate_one(db, fake, [UNCLEAR, "Either 2 or 4."])
    assert (rating.label, rating.value, rating.parse_status, rating.repaired) == (None, None, "unparseable", False)
    assert (rating.raw_text, rating.repair_text) == (UNCLEAR, "Either 2 or 4.")
    assert len(chat_bodies(fake)) == 2


def test_repair_attempts_zero_disables_and_two_allows_a_second_try(db, fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    off = rate_one(db, fake, [UNCLEAR], repair_attempts=0)
    assert (off.parse_status, off.repair_text, off.repaired) == ("unparseable", None, False)
    assert len(chat_bodies(fake)) == 1
    twice = rate_one(db, fake, [UNCLEAR, "Hmm, 2 or 4.", "4"], repair_attempts=2, name="twice")
    assert (twice.label, twice.repair_text, twice.repaired, twice.raw_text) == ("4", "4", True, UNCLEAR)
    bodies = chat_bodies(fake)
    assert len(bodies) == 3
    assert [m["content"] for m in bodies[2]["messages"] if m["role"] == "assistant"] == [UNCLEAR, "Hmm, 2 or 4."]


def test_refusals_and_clean_answers_are_not_repaired(db, fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    refusal = "I'm sorry, but I can't help with rating this conversation."
    refused = rate_one(db, fake, [refusal])
    assert (refused.parse_status, refused.label, refused.repair_text) == ("refused", None, None)
    assert len(chat_bodies(fake)) == 1
    clean = rate_one(db, fake, ["Rating: 2"], name="clean")
    assert (clean.parse_status, clean.label, clean.repaired) == ("ok", "2", False)
    assert len(chat_bodies(fake)) == 1


def test_batch_answers_are_repaired_in_realtime_at_the_full_price(db, fake: OpenAIFakeServer) -> None:  # type: ignore[no-untyped-def]
    rating = rate_one(db, fake, [UNCLEAR, "5"], dispatch="batch")
    assert (rating.raw_text, rating.repair_text, rating.label, rating.repaired) == (UNCLEAR, "5", "5", True)
    assert rating.provider_batch_id is not None
    repair_call = chat_bodies(fake)
    assert len(repair_call) == 1 and repair_call[0]["messages"][-2]["content"] == UNCLEAR
    repair_in = usage_tokens(fake)
    batch_in = rating.input_tokens - repair_in
    batch_out, repair_out = count_tokens(UNCLEAR), count_tokens("5")
    expected = (batch_in * 1.0 + batch_out * 2.0) / 1e6 * 0.5 + (repair_in * 1.0 + repair_out * 2.0) / 1e6
    assert rating.output_tokens == batch_out + repair_out and rating.cost_usd == pytest.approx(expected)
