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


def test_send_log_holds_any_second_to_the_limit(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock)
    s = spec(rpm=600)                                   # at most 10 sends in any second
    assert [limiter.admit(s) for _ in range(10)] == [0.0] * 10
    assert limiter.admit(s) == pytest.approx(1.0)      # the 11th waits for the oldest to leave the window
    clock.now += 999.0
    assert limiter.admit(s) == pytest.approx(0.001)
    clock.now += 1.0
    assert limiter.admit(s) == 0.0


def test_a_429_blocks_the_group_and_slows_it_down(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock, headroom=1.0, decrease=0.5, cooldown_s=1.0, recover_s=10.0)
    s = spec(rpm=600)                                   # 100 ms apart at full rate
    limiter.observe(s, error=ProviderError("HTTP 429", retryable=True, retry_after=1.5, status=429))
    assert limiter.admit(s) == pytest.approx(1.5)       # nobody sends before retry-after
    granted, wait = limiter.reserve(s, 10)
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


class CountingStore:
    """The limiter's store with its reservation steps counted."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.errors = store.errors
        self.reserves = 0

    def reserve(self, *args):  # type: ignore[no-untyped-def]
        self.reserves += 1
        return self.store.reserve(*args)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)


def test_calls_that_ask_together_share_one_reservation_step(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    limiter = make(clock, headroom=1.0)
    limiter.store = CountingStore(limiter.store)
    s = spec(rpm=600)                                   # 100 ms apart, 10 in any second
    slept: list[float] = []

    async def timed(seconds: float) -> None:            # each caller sleeps on a clock of its own
        slept.append(seconds)

    limiter.sleep = timed

    async def go() -> None:
        await asyncio.gather(*(limiter.acquire(s, 10) for _ in range(10)))

    asyncio.run(go())
    assert limiter.store.reserves == 1                  # ten calls started together: one reservation step
    assert sorted(slept) == pytest.approx([i * 0.1 for i in range(1, 10)])   # the same times as one by one
    assert limiter.stats.counts["acquired"] == 10
    # the send-time check saw all ten (nobody slept, so the clock stands still: the second is full)
    assert limiter.admit(s) == pytest.approx(1.0)


def test_a_batch_is_the_same_as_one_by_one(make) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    one, many = make(clock, headroom=0.97), make(clock, headroom=0.97)
    s, t = spec(rpm=600, tpm=6000), spec(rpm=600, tpm=6000)
    tokens = [10, 200, 5, 400, 50, 50, 1000, 3]
    together, apart = many.reserve_many(t, tokens), [one.reserve(s, n) for n in tokens]
    assert [g for g, _ in together] == [g for g, _ in apart]
    assert [w for _, w in together] == pytest.approx([w for _, w in apart])   # (Redis stores 14 digits between calls)
