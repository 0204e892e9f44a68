"""The distributed mode's pure parts: slot allocation across runs (priority, fair share, per-run cap),
the in-flight allowance from observed completions, rate-limit header parsing."""

from __future__ import annotations

import pytest
from accord.scheduler.dispatcher import Candidate, GroupFlow, SpecInfo, allocate, group_capacity
from accord.worker.rate_limiter import exhausted_for, limit_group, parse_reset


def cands(*rows: tuple[int, int, int]) -> list[Candidate]:
    """(run id, priority, chunks in flight) -> candidates of one spec each."""
    return [Candidate(run_id=r, spec_id=100 + r, group="g", priority=p, in_flight=n, run_in_flight=n) for r, p, n in rows]


def test_equal_priority_runs_share_slots_fairly() -> None:
    picks = allocate(cands((1, 0, 6), (2, 0, 0), (3, 0, 0)), free=8, per_run_cap=32)
    got = [p.run_id for p in picks]
    # the two idle runs catch up with the busy one first, then everyone takes turns
    assert got.count(2) == got.count(3) == 4
    assert got.count(1) == 0


def test_a_small_run_is_not_starved_behind_a_large_one() -> None:
    big, small = cands((1, 0, 20), (2, 0, 1))
    picks = allocate([big, small], free=3, per_run_cap=32)
    assert [p.run_id for p in picks] == [2, 2, 2]


def test_priority_wins_then_per_run_cap_leaves_room_for_others() -> None:
    picks = allocate(cands((1, 0, 0), (2, 5, 0)), free=10, per_run_cap=4)
    got = [p.run_id for p in picks]
    assert got[:4] == [2, 2, 2, 2]          # high priority first, up to its cap
    assert got[4:] == [1, 1, 1, 1]          # then the other run, up to its cap
    assert len(got) == 8                    # both capped: 2 slots stay free


def test_exhausted_candidates_leave_the_draw() -> None:
    asked: list[int] = []

    def exhausted(c: Candidate) -> bool:
        asked.append(c.run_id)
        return c.run_id == 2     # run 2 has nothing pending

    picks = allocate(cands((1, 0, 3), (2, 0, 0)), free=2, per_run_cap=32, exhausted=exhausted)
    assert [p.run_id for p in picks] == [1, 1]
    assert asked.count(2) == 1


def test_group_capacity_follows_the_rate() -> None:
    spec = SpecInfo(id=1, provider="openai", group="g", rpm=6000, tpm=None)
    assert group_capacity([spec], chunk_size=16, ahead_seconds=6, max_chunks=64) == 38   # 100/s x 6 s / 16
    slow = SpecInfo(id=2, provider="openai", group="g", rpm=60, tpm=None)
    assert group_capacity([spec, slow], chunk_size=16, ahead_seconds=6, max_chunks=64) == 2   # the lowest rpm rules
    free = SpecInfo(id=3, provider="local", group="h", rpm=None, tpm=None)
    assert group_capacity([free], chunk_size=16, ahead_seconds=6, max_chunks=64) == 64


def test_group_flow_allowance_tracks_completions() -> None:
    flow = GroupFlow(low=4, at=0.0, tau=1.0)
    assert flow.allowance(ahead_seconds=5, capacity=40) == 4          # nothing observed yet: start low
    load = 0
    t = 0.0
    for _ in range(50):                                                # 10 chunks complete per second
        flow.sent += 1
        load += 1
        t += 0.1
        load -= 1
        flow.update(load, now=t)
    assert flow.rate == pytest.approx(10.0, rel=0.05)
    assert flow.allowance(ahead_seconds=2, capacity=40) == 20
    assert flow.allowance(ahead_seconds=10, capacity=40) == 40         # never above the rate-based capacity
    assert flow.allowance(ahead_seconds=10, capacity=3) == 3           # nor above a capacity below `low`


def test_pickup_window_grows_with_slow_chunks_within_bounds() -> None:
    flow = GroupFlow(low=4, at=0.0)
    assert flow.pickup_window(base=10, cap=60) == 60                   # nothing came back yet: the cap
    flow.rate, flow.load = 6.0, 38                                     # fast chunks: 38 in flight, 6/s back
    assert flow.pickup_window(base=10, cap=60) == 10                   # about 6 s of queue: the base holds
    flow.rate, flow.load, flow.sent = 0.1, 3, 1                        # a local model: one chunk per 10 s
    assert flow.pickup_window(base=10, cap=60) == pytest.approx(60)    # 1.5 x 4 / 0.1 = 60 s
    flow.rate = 0.2
    assert flow.pickup_window(base=10, cap=60) == pytest.approx(30)
    flow.rate = 0.01
    assert flow.pickup_window(base=10, cap=60) == 60                   # never beyond the cap


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("6m0s", 360.0), ("120ms", 0.12), ("1.5s", 1.5), ("2", 2.0), ("1h2m3s", 3723.0), ("", None),
    ("soon", None),
])
def test_parse_reset(text: str, seconds: float | None) -> None:
    assert parse_reset(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_parse_reset_rfc3339_time() -> None:
    assert parse_reset("2030-01-01T00:00:10Z", now=1893456000.0) == pytest.approx(10.0)


def test_exhausted_for_reads_openai_and_anthropic_headers() -> None:
    assert exhausted_for({"x-ratelimit-remaining-requests": "12", "x-ratelimit-reset-requests": "1s"}) is None
    assert exhausted_for({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "250ms",
                          "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2s"}) == pytest.approx(2.0)
    assert exhausted_for({"anthropic-ratelimit-requests-remaining": "0",
                          "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z"}) > 0


def test_limit_group_is_what_the_provider_limit_applies_to() -> None:
    from accord.models.schema import ModelSpec

    a = ModelSpec(name="a", provider="openai", model="gpt-4o-mini", rpm=100, spec_hash="1")
    b = ModelSpec(name="b", provider="openai", model="gpt-4o-mini", rpm=500, spec_hash="2")   # another alias
    c = ModelSpec(name="c", provider="openai", model="gpt-4o", spec_hash="3")
    d = ModelSpec(name="d", provider="openai", model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1", spec_hash="4")
    assert limit_group(a) == limit_group(b)
    assert len({limit_group(a), limit_group(c), limit_group(d)}) == 3
