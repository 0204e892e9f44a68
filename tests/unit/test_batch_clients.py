"""The OpenAI and Anthropic batch clients against the local wire servers, through the official SDKs:
submission (one JSONL line / request per call with the realtime body), the lifecycles, partial results
matched by custom_id, whole-batch failures, cancellation, limits, and finding a batch after a crash."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from accord.worker.batch import batch_client_for
from accord.worker.batch.anthropic_batch import AnthropicBatchClient
from accord.worker.batch.base import CANCELED, ERRORED, EXPIRED, SUCCEEDED, BatchItem, BatchLimits
from accord.worker.batch.openai_batch import OpenAIBatchClient
from accord.worker.providers.anthropic_provider import AnthropicProvider
from accord.worker.providers.base import ProviderRequest
from accord.worker.providers.openai_provider import OpenAIProvider
from tests.fakes.anthropic_server import AnthropicFakeServer
from tests.fakes.openai_server import OpenAIFakeServer

LABELS = ["1", "2", "3", "4", "5"]


def request(i: int, **over) -> ProviderRequest:  # type: ignore[no-untyped-def]
    fields = {"messages": [{"role": "system", "content": "You rate safety."},
                           {"role": "user", "content": f"Rate item {i}. Answer 1-5."}],
              "params": {"temperature": 0.0, "max_tokens": 4}, "labels": LABELS, "want_logprobs": True,
              "structured": True}
    fields.update(over)
    return ProviderRequest(**fields)


def items(n: int, start: int = 0) -> list[BatchItem]:
    return [BatchItem(str(100 + i), request(i)) for i in range(start, start + n)]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _poll_until_ended(client, external_id: str, limit: int = 20):  # type: ignore[no-untyped-def]
    seen = []
    for _ in range(limit):
        state = await client.poll(external_id)
        seen.append(state.provider_status)
        if state.ended:
            return state, seen
    raise AssertionError(f"batch {external_id} did not end: {seen}")


# ------------------------------------------------------------------------------------------------- OpenAI
def test_openai_batch_lifecycle_partial_results_matched_by_custom_id(openai_fake: OpenAIFakeServer) -> None:
    openai_fake.reset(batch_errored_next=1, batch_expired_next=1)
    provider = OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url)
    client = batch_client_for(provider)
    assert isinstance(client, OpenAIBatchClient)
    batch = items(5)

    async def go():  # type: ignore[no-untyped-def]
        submitted = await client.submit(batch, "accord-run1-batch1")
        state, seen = await _poll_until_ended(client, submitted.external_id)
        results = await client.results(state, {b.custom_id: b.request for b in batch})
        await provider.aclose()
        return submitted, state, seen, results

    submitted, state, seen, results = run(go())
    assert submitted.provider_status == "validating" and submitted.input_file_id
    assert seen == ["validating", "in_progress", "finalizing", "expired"]   # an expired request expires it
    assert (state.counts["succeeded"], state.counts["errored"], state.counts["processing"]) == (3, 2, 0)
    kinds = {r.custom_id: r.kind for r in results}
    assert sorted(kinds) == ["100", "101", "102", "103", "104"]
    assert kinds["100"] == ERRORED and kinds["101"] == EXPIRED       # file order: errored first, then expired
    assert [kinds[c] for c in ("102", "103", "104")] == [SUCCEEDED] * 3
    errored = next(r for r in results if r.kind == ERRORED)
    assert errored.retryable and "HTTP 500" in (errored.error or "")
    for r in results:
        if r.kind == SUCCEEDED:
            assert r.response is not None and json.loads(r.response.text)["label"] in LABELS   # json_schema answer
            assert r.response.model_snapshot == "gpt-4o-mini-2024-07-18"
            assert r.response.label_logprobs and set(r.response.label_logprobs) <= set(LABELS)
            assert r.response.input_tokens > 0


def test_openai_input_file_carries_the_realtime_body(openai_fake: OpenAIFakeServer) -> None:
    openai_fake.reset()
    provider = OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url)
    client = OpenAIBatchClient(provider)
    batch = items(2)

    async def go() -> None:
        await client.submit(batch, "accord-run7-batch3")
        await provider.aclose()

    run(go())
    with openai_fake.state.batches.lock:
        upload = next(f for f in openai_fake.state.batches.files.values() if f["purpose"] == "batch")
    lines = [json.loads(line) for line in upload["content"].decode().splitlines()]
    assert upload["filename"] == "accord-run7-batch3.jsonl"
    assert [line["custom_id"] for line in lines] == ["100", "101"]
    assert {line["method"] for line in lines} == {"POST"} and {line["url"] for line in lines} == {"/v1/chat/completions"}
    assert lines[0]["body"] == provider.request_body(batch[0].request)
    assert lines[0]["body"]["response_format"]["type"] == "json_schema" and lines[0]["body"]["logprobs"] is True
    created = openai_fake.state.batches.ordered()[0]
    assert created.meta["metadata"] == {"accord_batch": "accord-run7-batch3"}


def test_openai_whole_batch_failure_and_one_model_per_batch(openai_fake: OpenAIFakeServer) -> None:
    openai_fake.reset(batch_fail_next=1, batch_polls_per_state=0)
    provider = OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url)
    client = OpenAIBatchClient(provider)

    async def go():  # type: ignore[no-untyped-def]
        failed = await client.submit(items(2), "k1")
        state = await client.poll(failed.external_id)
        # two models in one file: the API refuses the batch at validation
        other = OpenAIProvider("gpt-4o", base_url=openai_fake.base_url)
        mixed = [items(1)[0], BatchItem("999", request(9))]
        content = b"\n".join([client.encode(mixed[0]), OpenAIBatchClient(other).encode(mixed[1])])
        upload = await provider.client.files.create(file=("mixed.jsonl", content), purpose="batch")
        created = await provider.client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                                       completion_window="24h")
        mixed_state = await client.poll(created.id)
        await other.aclose()
        await provider.aclose()
        return state, mixed_state

    state, mixed_state = run(go())
    assert state.ended and state.provider_status == "failed" and "injected" in (state.error or "")
    assert mixed_state.provider_status == "failed" and "same model" in (mixed_state.error or "")


def test_openai_limits_refuse_oversized_batches_before_upload(openai_fake: OpenAIFakeServer) -> None:
    openai_fake.reset()
    provider = OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url)
    client = OpenAIBatchClient(provider, BatchLimits(max_requests=2, max_bytes=10_000_000))
    tiny = OpenAIBatchClient(provider, BatchLimits(max_requests=100, max_bytes=100))

    async def go() -> list[str]:
        messages = []
        for batch_client, batch in ((client, items(3)), (tiny, items(1))):
            try:
                await batch_client.submit(batch, "k")
            except ValueError as err:
                messages.append(str(err))
        await provider.aclose()
        return messages

    too_many, too_big = run(go())
    assert "3 requests" in too_many and "exceed the limits" in too_many and "bytes exceed" in too_big
    assert openai_fake.stats()["files_uploaded"] == 0


def test_openai_find_recovers_a_batch_by_its_metadata_key(openai_fake: OpenAIFakeServer) -> None:
    openai_fake.reset()
    provider = OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url)
    client = OpenAIBatchClient(provider)
    since = datetime.now(timezone.utc) - timedelta(seconds=5)

    async def go():  # type: ignore[no-untyped-def]
        first = await client.submit(items(1), "accord-run1-batch1")
        second = await client.submit(items(1), "accord-run1-batch2")
        found = await client.find("accord-run1-batch1", 1, since, set())
        missing = await client.find("accord-run1-batch9", 1, since, set())
        owned = await client.find("accord-run1-batch2", 1, since, {second.external_id})
        await provider.aclose()
        return first, found, missing, owned

    first, found, missing, owned = run(go())
    assert found == first.external_id and missing is None and owned is None


def test_openai_cancel_walks_cancelling_then_cancelled(openai_fake: OpenAIFakeServer) -> None:
    openai_fake.reset(batch_polls_per_state=3)
    provider = OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url)
    client = OpenAIBatchClient(provider)

    async def go():  # type: ignore[no-untyped-def]
        submitted = await client.submit(items(2), "k")
        await client.cancel(submitted.external_id)
        state, seen = await _poll_until_ended(client, submitted.external_id)
        results = await client.results(state, {b.custom_id: b.request for b in items(2)})
        await provider.aclose()
        return state, seen, results

    state, seen, results = run(go())
    assert seen[-1] == "cancelled" and "cancelling" in seen
    assert results == [] and state.counts["succeeded"] == 0          # nothing ran: the runner resubmits or cancels them


def test_fake_state_timing_in_seconds(openai_fake: OpenAIFakeServer) -> None:
    openai_fake.reset(batch_state_seconds=0.4)
    provider = OpenAIProvider("gpt-4o-mini", base_url=openai_fake.base_url)
    client = OpenAIBatchClient(provider)

    async def go():  # type: ignore[no-untyped-def]
        submitted = await client.submit(items(1), "k")
        immediately = (await client.poll(submitted.external_id)).provider_status
        await asyncio.sleep(0.6)                      # states at 0.4, 0.8, 1.2 s after creation
        later = (await client.poll(submitted.external_id)).provider_status
        await asyncio.sleep(0.8)
        done = (await client.poll(submitted.external_id)).provider_status
        await provider.aclose()
        return immediately, later, done

    assert run(go()) == ("validating", "in_progress", "completed")


# ---------------------------------------------------------------------------------------------- Anthropic
def test_anthropic_message_batch_lifecycle_and_result_types(anthropic_fake: AnthropicFakeServer) -> None:
    anthropic_fake.reset(batch_errored_next=1, batch_error_status=400, batch_expired_next=1,
                         batch_polls_per_state=2)
    provider = AnthropicProvider("claude-3-5-haiku-latest", base_url=anthropic_fake.base_url)
    client = batch_client_for(provider)
    assert isinstance(client, AnthropicBatchClient)
    batch = items(4)

    async def go():  # type: ignore[no-untyped-def]
        submitted = await client.submit(batch, "k")
        state, seen = await _poll_until_ended(client, submitted.external_id)
        results = await client.results(state, {b.custom_id: b.request for b in batch})
        await provider.aclose()
        return submitted, state, seen, results

    submitted, state, seen, results = run(go())
    assert submitted.external_id.startswith("msgbatch_") and submitted.provider_status == "in_progress"
    assert seen == ["in_progress", "in_progress", "ended"]
    assert (state.counts["succeeded"], state.counts["errored"], state.counts["expired"],
            state.counts["processing"]) == (2, 1, 1, 0)
    by_id = {r.custom_id: r for r in results}
    assert by_id["100"].kind == ERRORED and not by_id["100"].retryable     # invalid_request_error: permanent
    assert "invalid_request_error" in (by_id["100"].error or "")
    assert by_id["101"].kind == EXPIRED
    for cid in ("102", "103"):
        response = by_id[cid].response
        assert by_id[cid].kind == SUCCEEDED and response is not None
        assert json.loads(response.text)["label"] in LABELS                 # the forced tool call's input
        assert response.model_snapshot == "claude-3-5-haiku-20241022"
    sent = anthropic_fake.state.batches.ordered()[0].lines
    assert sent[0] == {"custom_id": "100", "params": provider.request_body(batch[0].request)}
    assert sent[0]["params"]["tool_choice"] == {"type": "tool", "name": "record_rating"}
    assert sent[0]["params"]["temperature"] == 0.0                           # extra_body merged into params


def test_anthropic_cancel_and_transient_errors(anthropic_fake: AnthropicFakeServer) -> None:
    anthropic_fake.reset(batch_polls_per_state=2, batch_errored_next=1, batch_error_status=529)
    provider = AnthropicProvider("claude-sonnet-4-20250514", base_url=anthropic_fake.base_url)
    client = AnthropicBatchClient(provider)

    async def go():  # type: ignore[no-untyped-def]
        cancelled = await client.submit(items(2), "k1")
        await client.cancel(cancelled.external_id)
        c_state, c_seen = await _poll_until_ended(client, cancelled.external_id)
        c_results = await client.results(c_state, {b.custom_id: b.request for b in items(2)})
        other = await client.submit(items(2, start=5), "k2")
        o_state, _ = await _poll_until_ended(client, other.external_id)
        o_results = await client.results(o_state, {b.custom_id: b.request for b in items(2, start=5)})
        await provider.aclose()
        return c_state, c_seen, c_results, o_results

    c_state, c_seen, c_results, o_results = run(go())
    assert "canceling" in c_seen and c_state.counts["cancelled"] == 2
    assert {r.kind for r in c_results} == {CANCELED}
    overloaded = next(r for r in o_results if r.kind == ERRORED)
    assert overloaded.retryable and "overloaded_error" in (overloaded.error or "")


def test_anthropic_limits_and_create_errors(anthropic_fake: AnthropicFakeServer) -> None:
    anthropic_fake.reset(batch_max_requests=2, batch_fail_next=1)
    provider = AnthropicProvider("claude-sonnet-4-20250514", base_url=anthropic_fake.base_url)
    roomy = AnthropicBatchClient(provider, BatchLimits(max_requests=10, max_bytes=10_000_000))
    from accord.worker.providers.base import ProviderError

    async def go():  # type: ignore[no-untyped-def]
        errors = []
        for batch in (items(1), items(3)):
            try:
                await roomy.submit(batch, "k")
            except ProviderError as err:
                errors.append(err)
        await provider.aclose()
        return errors

    transient, too_many = run(go())
    assert transient.retryable and transient.status == 500
    assert not too_many.retryable and too_many.status == 400 and "at most 2" in str(too_many)
    with pytest.raises(ValueError, match="exceed the limits"):      # refused before any HTTP call
        run(AnthropicBatchClient(provider, BatchLimits(max_requests=1, max_bytes=10**6)).submit(items(2), "k"))


def test_anthropic_find_picks_the_unowned_batch_of_the_right_size(anthropic_fake: AnthropicFakeServer) -> None:
    anthropic_fake.reset()
    provider = AnthropicProvider("claude-sonnet-4-20250514", base_url=anthropic_fake.base_url)
    client = AnthropicBatchClient(provider)
    since = datetime.now(timezone.utc)

    async def go():  # type: ignore[no-untyped-def]
        three = await client.submit(items(3), "a")
        owned = await client.submit(items(2), "b")
        found = await client.find("c", 3, since, {owned.external_id})
        none_of_size = await client.find("c", 7, since, set())
        all_owned = await client.find("c", 2, since, {owned.external_id})
        await provider.aclose()
        return three, found, none_of_size, all_owned

    three, found, none_of_size, all_owned = run(go())
    assert found == three.external_id and none_of_size is None and all_owned is None


def test_local_models_have_no_batch_client() -> None:
    class Local:
        kind = "local"

    assert batch_client_for(Local()) is None  # type: ignore[arg-type]
