"""The shared rate limiter and the hot response cache against the machine's Redis (a dedicated database
number): pacing across processes, token pacing, 429 blocking and adaptive slow-down, usage correction,
rate-limit headers, a flushed or unreachable Redis."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
import uuid

import pytest

redis = pytest.importorskip("redis")

from accord.models.schema import ModelSpec
from accord.worker.providers.base import ProviderError, ProviderResponse
from accord.worker.rate_limiter import DEFAULT_HEADROOM, RedisRateLimiter
from accord.worker.response_cache import RedisHotCache

from tests.fakes.server_core import max_in_window

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    c = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        c.ping()
    except redis.RedisError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (make test starts it)")
    yield c
    c.flushdb()      # this module's own database
    c.close()


def spec(rpm: int | None = None, tpm: int | None = None) -> ModelSpec:
    # A model name of its own per test: its own limit group.
    return ModelSpec(name="m", provider="openai", model=f"test-{uuid.uuid4().hex[:8]}", rpm=rpm, tpm=tpm,
                     spec_hash=uuid.uuid4().hex)


def _acquire_many(model: str, rpm: int, n: int, out: multiprocessing.Queue[list[float]]) -> None:
    """``n`` concurrent acquisitions; puts the send times the shared log admitted them at (seconds).

    The times are those the store's send-time check logged (the clock reading it admitted each call at), not
    a clock read after ``acquire`` returns: on a loaded machine the process may be descheduled between the
    two, which says nothing about the limiter."""
    limiter = RedisRateLimiter(redis.Redis.from_url(REDIS_URL))
    s = ModelSpec(name="m", provider="openai", model=model, rpm=rpm, spec_hash="x")
    admitted: list[float] = []
    store_admit = limiter.store.admit

    def logged_admit(key: str, now_ms: float, window_ms: float, limit: int, member: str) -> float:
        wait = store_admit(key, now_ms, window_ms, limit, member)
        if wait <= 0:
            admitted.append(now_ms / 1000.0)
        return wait

    limiter.store.admit = logged_admit  # type: ignore[method-assign]  # records what the store admitted

    async def main() -> None:
        await asyncio.gather(*(limiter.acquire(s, 10) for _ in range(n)))

    asyncio.run(main())
    out.put(admitted)


def test_two_processes_share_one_request_schedule(client) -> None:  # type: ignore[no-untyped-def]
    s = spec(rpm=1200)                      # 20/s; paced just under, at most 20 admitted in any second
    paced = 20.0 * DEFAULT_HEADROOM
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_acquire_many, args=(s.model, 1200, 30, out)) for _ in range(2)]
    for p in procs:
        p.start()
    times = sorted(out.get(timeout=60) + out.get(timeout=60))
    for p in procs:
        p.join(10)
    assert len(times) == 60
    assert max_in_window(times, 1.0) <= 20                  # the limit, in any second of the shared send log
    span = times[-1] - times[0]
    assert span >= 59 / 20.0                                 # never faster than the limit
    assert span <= 59 / paced + 1.0                          # and not much slower
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(1 / paced, abs=0.02)   # evenly spaced, no bursts


def test_tokens_per_minute_pace_calls(client) -> None:  # type: ignore[no-untyped-def]
    limiter = RedisRateLimiter(client, headroom=1.0)
    s = spec(tpm=60_000)                    # 1000 tokens/s, calls of 400 tokens: 2.5 calls/s

    async def main() -> list[float]:
        stamps = []
        for _ in range(5):
            await limiter.acquire(s, 400)
            stamps.append(time.monotonic())
        return stamps

    stamps = asyncio.run(main())
    assert stamps[-1] - stamps[0] == pytest.approx(4 * 0.4, abs=0.15)   # 400 tokens take 0.4 s each
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.3                                             # evenly, not in a burst


def test_usage_corrects_the_token_schedule(client) -> None:  # type: ignore[no-untyped-def]
    limiter = RedisRateLimiter(client, headroom=1.0)
    s = spec(tpm=60_000)                    # 1 token per ms
    asyncio.run(limiter.acquire(s, 100))
    before = limiter.state(s)["tok_tat"]
    limiter.observe(s, response=ProviderResponse(text="x", input_tokens=900, output_tokens=100), estimated_tokens=100)
    after = limiter.state(s)["tok_tat"]
    assert after - before == pytest.approx(900.0, abs=1.0)       # 900 tokens more than estimated: 900 ms later
    limiter.observe(s, response=ProviderResponse(text="x", input_tokens=10, output_tokens=0), estimated_tokens=500)
    refunded = limiter.state(s)["tok_tat"]
    assert refunded == pytest.approx(after - 490.0, abs=1.0)      # over-estimate given back


class DrivenClock:
    """The limiter's clock (ms) and sleep: a sleep moves the clock on by exactly its length, so the test reads
    the admission times the limiter decided, not how late a loaded machine woke up."""

    def __init__(self) -> None:
        self.now_ms = self.started_ms = time.time() * 1000.0   # near Redis's clock: the keys' expiry holds

    def __call__(self) -> float:
        return self.now_ms

    async def sleep(self, seconds: float) -> None:
        self.now_ms += max(seconds, 0.0) * 1000.0


def test_429_blocks_the_group_then_slows_it(client) -> None:  # type: ignore[no-untyped-def]
    clock = DrivenClock()
    limiter = RedisRateLimiter(client, headroom=1.0, decrease=0.5, recover_s=600, clock=clock, sleep=clock.sleep)
    s = spec(rpm=600)                       # one call per 100 ms
    asyncio.run(limiter.acquire(s, 1))
    limited_at = clock()
    limiter.observe(s, error=ProviderError("429", retryable=True, retry_after=0.6, status=429, rate_limited=True))
    assert limiter.stats.counts["rate_limited"] == 1

    async def timed(n: int) -> list[float]:
        stamps = []
        for _ in range(n):
            await limiter.acquire(s, 1)
            stamps.append(clock())
        return stamps

    stamps = asyncio.run(timed(4))
    assert stamps[0] - limited_at == pytest.approx(600, abs=1)      # retry-after honoured, no more
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps == pytest.approx([200, 200, 200], abs=1)            # half the rate: 200 ms apart
    # a later 429 halves the rate again; another one within the cooldown (1 s) blocks but does not
    limiter.observe(s, error=ProviderError("429", retryable=True, retry_after=0.1, status=429, rate_limited=True))
    assert limiter.state(s)["factor"] == pytest.approx(0.25, abs=0.01)
    limiter.observe(s, error=ProviderError("429", retryable=True, retry_after=0.1, status=429, rate_limited=True))
    assert limiter.state(s)["factor"] == pytest.approx(0.25, abs=0.01)


def test_remaining_zero_header_holds_calls_until_reset(client) -> None:  # type: ignore[no-untyped-def]
    clock = DrivenClock()
    limiter = RedisRateLimiter(client, clock=clock, sleep=clock.sleep)
    s = spec(rpm=6000)
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "400ms"}
    limiter.observe(s, response=ProviderResponse(text="x", headers=headers), estimated_tokens=1)
    started = clock()
    asyncio.run(limiter.acquire(s, 1))
    assert clock() - started == pytest.approx(400, abs=1)               # held until the reset, no longer
    assert limiter.state(s).get("factor", 1.0) == pytest.approx(1.0)    # a reset wait is not a slow-down


def test_a_flushed_redis_starts_an_idle_schedule(client) -> None:  # type: ignore[no-untyped-def]
    clock = DrivenClock()
    limiter = RedisRateLimiter(client, clock=clock, sleep=clock.sleep)
    s = spec(rpm=60)                        # one call per second
    asyncio.run(limiter.acquire(s, 1))
    asyncio.run(limiter.acquire(s, 1))      # the schedule holds the next call a second
    assert clock() - clock.started_ms >= 1000
    client.flushdb()
    started = clock()
    asyncio.run(limiter.acquire(s, 1))      # no state: admitted at once, no error
    assert clock() == started


def test_unreachable_redis_fails_the_call_as_retryable_after_the_wait() -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    limiter = RedisRateLimiter(dead, redis_wait_s=0.5)
    with pytest.raises(ProviderError) as info:
        asyncio.run(limiter.acquire(spec(rpm=60), 1))
    assert info.value.retryable
    assert "Redis unreachable" in str(info.value)


def test_hot_cache_round_trip_with_ttl(client) -> None:  # type: ignore[no-untyped-def]
    cache = RedisHotCache(client, ttl_seconds=120, key_prefix=f"t{uuid.uuid4().hex[:6]}")
    key = uuid.uuid4().hex
    assert cache.get(key) is None
    rating = {"raw_text": "3", "label": "3", "value": 0.5, "label_probs": {"1": -2.3, "3": -0.1},
              "decoding": {"temperature": 0.7, "seed": 1}, "source_rating_id": 42}
    cache.put(key, rating)
    assert cache.get(key) == rating
    assert 100 < client.ttl(cache._key(key)) <= 120
    assert (cache.stats["hits"], cache.stats["misses"], cache.stats["puts"]) == (1, 1, 1)


def test_hot_cache_errors_are_misses() -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    cache = RedisHotCache(dead)
    cache.put("k", {"label": "1"})          # swallowed
    assert cache.get("k") is None
    assert cache.stats["errors"] == 2
