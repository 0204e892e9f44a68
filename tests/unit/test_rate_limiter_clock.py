"""The rate limiter's algorithm with the clock driven by the test: exact admission sequences, the same for the
in-process store (embedded mode) and the Redis scripts (distributed mode, when Redis is reachable)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from accord.models.schema import ModelSpec
from accord.worker.providers.base import ProviderError
from accord.worker.rate_limiter import LocalRateLimiter, RateLimiter, RedisRateLimiter

REDIS_URL = "redis://127.0.0.1:6379/12"


class Clock:
    """Milliseconds that move only when the test (or the limiter's sleep) moves them."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds * 1000.0


@pytest.fixture(params=["memory", "redis"])
def make(request):  # type: ignore[no-untyped-def]
    clients = []

    def build(clock: Clock, **options) -> RateLimiter:  # type: ignore[no-untyped-def]
        if request.param == "memory":
            return LocalRateLimiter(clock=clock, sleep=clock.sleep, **options)
        redis = pytest.importorskip("redis")
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        try:
            client.ping()
        except redis.RedisError:
            pytest.skip("Redis is not reachable on 127.0.0.1:6379 (make test starts it)")
        clients.append(client)
        return RedisRateLimiter(client, clock=clock, sleep=clock.sleep, key_prefix=f"t:{uuid.uuid4().hex}", **options)

    yield build
    for client in clients:
        client.close()


def spec(rpm: int | None = None, tpm: int | None = None) -> ModelSpec:
    return ModelSpec(name="m", provider="openai", model=f"m-{uuid.uuid4().hex[:8]}", rpm=rpm, tpm=tpm, spec_hash="x")


def test_requests_are_reserved_one_interval_apart(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock, headroom=0.97, max_reserve_s=2.0)
    s = spec(rpm=600)                                  # 10/s, paced at 9.7/s: 103.09 ms apart
    interval = 60000 / (600 * 0.97)
    waits = [limiter.reserve(s, 10) for _ in range(20)]
    assert all(granted for granted, _ in waits)
    assert [w for _, w in waits] == pytest.approx([i * interval / 1000 for i in range(20)])
    granted, wait = limiter.reserve(s, 10)             # the 21st slot is more than 2 s ahead: not reserved
    assert not granted and wait == pytest.approx(20 * interval / 1000)
    clock.now += 1000.0                                # a second later the same slot is 1 s away
    granted, wait = limiter.reserve(s, 10)
    assert granted and wait == pytest.approx(20 * interval / 1000 - 1.0)


class CountingStore:
    """The limiter's store with its calls counted (one reservation per admission is the contract)."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.errors = store.errors
        self.reserves = 0

    def reserve(self, *args):  # type: ignore[no-untyped-def]
        self.reserves += 1
        return self.store.reserve(*args)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)


def test_late_wakeups_reserve_again_and_any_second_holds_the_limit(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock)                               # headroom 0.985: 10.15 ms apart at 6,000/min
    limiter.store = CountingStore(limiter.store)
    s = spec(rpm=6000)                                  # at most 100 sends in any second
    lateness = limiter.lateness_ms(s)
    assert lateness == pytest.approx(100 * 60000 / (6000 * 0.985) - 1000)   # 15.2 ms
    late = {7: 40.0, 8: 40.0, 30: 15.0, 31: 200.0, 55: 16.0}   # admission -> how late its wakeup is (ms)
    sent: list[float] = []
    overshot: list[float] = []

    async def one(n: int) -> None:
        overshoot = late.get(n, 0.0)
        original = limiter.sleep

        async def sleep(seconds: float) -> None:   # this caller's first sleep overshoots by `overshoot` ms
            nonlocal overshoot
            await original(seconds)
            clock.now += overshoot
            overshot.append(overshoot)
            overshoot = 0.0

        limiter.sleep = sleep
        await limiter.acquire(s, 10)
        limiter.sleep = original
        sent.append(clock.now)

    async def go() -> None:
        for n in range(300):                            # one caller after the other, each from its own time
            await one(n)

    asyncio.run(go())
    late_beyond = sum(1 for ms in overshot if ms > lateness)
    assert sorted(ms for ms in overshot if ms) == [15.0, 16.0, 40.0, 40.0]   # (the others found no wait)
    assert late_beyond == 3                             # 15 ms late is within the lateness: sent
    assert limiter.store.reserves == 300 + late_beyond  # one store step per admission, one more per late wakeup
    assert limiter.stats.window_waits == late_beyond
    assert max(sum(1 for t in sent if start <= t < start + 1000) for start in sent) <= 100


def test_any_second_holds_the_limit_when_every_wakeup_is_late(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock, max_reserve_s=0.5)
    s = spec(rpm=1200)                                  # at most 20 sends in any second

    async def late_sleep(seconds: float) -> None:       # every wakeup 0-60 ms late, in a fixed pattern
        clock.sleeps.append(seconds)
        clock.now += seconds * 1000.0 + (len(clock.sleeps) * 37) % 61

    limiter.sleep = late_sleep
    sent: list[float] = []

    async def one() -> None:
        await limiter.acquire(s, 10)
        sent.append(clock.now)

    async def go() -> None:
        await asyncio.gather(*(one() for _ in range(100)))

    asyncio.run(go())
    assert len(sent) == 100
    assert max(sum(1 for t in sent if start <= t < start + 1000) for start in sent) <= 20


def test_a_429_blocks_the_group_and_slows_it_down(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock, headroom=1.0, decrease=0.5, cooldown_s=1.0, recover_s=10.0)
    s = spec(rpm=600)                                   # 100 ms apart at full rate
    limiter.observe(s, error=ProviderError("HTTP 429", retryable=True, retry_after=1.5, status=429))
    granted, wait = limiter.reserve(s, 10)              # nobody sends before retry-after
    assert granted and wait == pytest.approx(1.5)
    granted, wait = limiter.reserve(s, 10)              # then at half the rate: 200 ms apart
    assert granted and wait == pytest.approx(1.7)
    limiter.observe(s, error=ProviderError("HTTP 429", retryable=True, retry_after=0.0, status=429))
    assert limiter.state(s)["factor"] == pytest.approx(0.5)   # within the cooldown: not halved again
    clock.now += 10_000.0                               # recovered linearly over recover_s
    granted, first = limiter.reserve(s, 10)
    granted, second = limiter.reserve(s, 10)
    assert second - first == pytest.approx(0.1)


def test_tokens_per_minute_pace_calls_and_usage_corrects_the_estimate(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock, headroom=1.0)
    s = spec(tpm=60_000)                                # 1,000 tokens per second
    assert limiter.reserve(s, 500) == (True, 0.0)
    assert limiter.reserve(s, 500) == (True, pytest.approx(0.5))
    granted, wait = limiter.reserve(s, 10)
    assert wait == pytest.approx(1.0)


def test_low_limits_keep_clear_of_arrival_jitter(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock, headroom=0.97, jitter_s=0.05)
    s = spec(rpm=50)                                   # one second holds under one request: no burst to borrow
    assert limiter.request_interval_ms(s) == pytest.approx(60000 / 50 + 50)
    assert limiter.request_interval_ms(spec(rpm=6000)) == pytest.approx(60000 / (6000 * 0.97))


def test_acquire_sleeps_exactly_until_each_slot(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock, headroom=1.0, max_reserve_s=0.25)
    s = spec(rpm=1200)                                 # 50 ms apart, 20 in any second

    async def go() -> list[float]:
        sent = []
        for _ in range(30):
            await limiter.acquire(s, 10)
            sent.append(clock.now)
        return sent

    sent = asyncio.run(go())
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert gaps == pytest.approx([50.0] * 29)
    assert max(sum(1 for t in sent if start <= t < start + 1000) for start in sent) <= 20


def test_calls_that_ask_together_share_one_store_step(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock, headroom=1.0)
    limiter.store = CountingStore(limiter.store)
    s = spec(rpm=600)                                   # 100 ms apart
    slept: list[float] = []

    async def still(seconds: float) -> None:            # sleeps that take no time: nobody wakes up late
        slept.append(seconds)

    limiter.sleep = still

    async def go() -> None:
        await asyncio.gather(*(limiter.acquire(s, 10) for _ in range(10)))

    asyncio.run(go())
    assert limiter.store.reserves == 1                  # ten calls started together: one reservation step
    assert sorted(slept) == pytest.approx([i * 0.1 for i in range(1, 10)])   # the same times as one by one
    assert limiter.stats.acquired == 10
