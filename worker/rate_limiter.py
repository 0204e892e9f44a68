"""A rate limiter shared by every worker process and machine: requests per minute and tokens per minute per
model, enforced in Redis by one atomic Lua script (GCRA, the generic cell rate algorithm).

Each rate-limit group (provider x model x endpoint x API-key variable: what a provider's limit applies to)
is one Redis hash holding:

- ``req_tat`` / ``tok_tat``: the theoretical arrival time (ms, Redis clock) of the next request / token.
  A call is admitted at ``max(now, req_tat, tok_tat, block_until)``; admitting it moves ``req_tat`` on by
  one emission interval (60000 / rpm ms) and ``tok_tat`` by ``tokens * 60000 / tpm`` ms. No burst: calls
  leave evenly spaced, so no window of any length sees more than the limit (the admitted rate is the limit
  times ``headroom``, which absorbs the network jitter between admission and arrival at the provider).
- ``block_until``: set from a 429/529's ``retry-after`` (or ``x-ratelimit-remaining-*: 0`` and its reset
  header); nobody is admitted before it.
- ``factor`` / ``factor_ts``: the adaptive slow-down. A 429 multiplies the admitted rate by ``decrease``
  (at most once per ``cooldown``); it recovers linearly to the full rate over ``recover_s``.

Admission is a reservation: the script returns how long the caller must sleep before sending, so waiters
do not poll; reservations are capped at ``max_reserve_s`` ahead (beyond that the caller waits and asks
again). The calls of one event loop that ask in the same pass of the loop (a chunk's calls start together)
are reserved by one run of the script, exactly as if one by one, so a chunk makes one reservation step.
A sleeper can wake up late (a busy event loop, a busy CPU) and would then crowd the calls admitted after it,
so the last step before sending is a second atomic check, against a log of the group's sends in the last
second (a sorted set): no more than ``floor(rpm / 60)`` in any second, nothing while ``block_until``
holds. Pacing (GCRA, at ``headroom`` x the limit) keeps calls evenly spread with room for the way from
admission to the provider; the log makes the per-second bound exact at admission. Per admission: that one
check, plus a share of its chunk's reservation step. Token limits are paced by the GCRA alone (estimated
before the call, corrected from the usage).

Losing Redis state (``FLUSHALL``) resets the schedule to "idle", which admits calls evenly from then on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from accord.extras import needs_extra
from accord.models.schema import ModelSpec, endpoint_identity
from accord.worker.providers.base import ProviderError, ProviderResponse

if TYPE_CHECKING:                               # the client is passed in (distributed mode: redis-py)
    import redis

log = logging.getLogger("accord.worker.rate_limiter")

# The share of a limit the pacing admits. Providers enforce short windows with a bucket of about one second's
# requests, which absorbs arrival jitter of up to (capacity - 1) / rate seconds; below two requests a second
# there is no such bucket and the pacing keeps ``jitter_s`` clear instead (``request_interval_ms``).
DEFAULT_HEADROOM = 0.985

# Every script takes the clock (ms) as ARGV[1], so tests drive time; the rest follow.
# KEYS[1] = the group's hash. ARGV: now ms, request interval ms (0: no rpm), ms per token (0: no tpm), max
# reservation ms, recovery ms, key ttl ms, then the tokens of each call to admit (one or more, in order). Returns
# {granted (0/1), wait ms as a string} per call: the same as one call at a time, in one round trip.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'req_tat', 'tok_tat', 'block_until', 'factor', 'factor_ts')
local req_tat = tonumber(h[1]) or 0
local tok_tat = tonumber(h[2]) or 0
local block = tonumber(h[3]) or 0
local factor = tonumber(h[4]) or 1
local fts = tonumber(h[5]) or now
local recover_ms = tonumber(ARGV[5])
if factor < 1 then
  factor = math.min(1, factor + (now - fts) / recover_ms)
end
local req_int = tonumber(ARGV[2]) / factor
local tok_int = tonumber(ARGV[3]) / factor
local max_ms = tonumber(ARGV[4])
local out = {}
local granted_any = false
for i = 7, #ARGV do
  local at = math.max(now, block)
  if req_int > 0 then at = math.max(at, req_tat) end
  if tok_int > 0 then at = math.max(at, tok_tat) end
  local wait = at - now
  if wait > max_ms then
    out[#out + 1] = 0
  else
    if req_int > 0 then req_tat = at + req_int end
    if tok_int > 0 then tok_tat = at + tonumber(ARGV[i]) * tok_int end
    granted_any = true
    out[#out + 1] = 1
  end
  out[#out + 1] = tostring(wait)
end
if granted_any then
  if req_int > 0 then redis.call('HSET', KEYS[1], 'req_tat', tostring(req_tat)) end
  if tok_int > 0 then redis.call('HSET', KEYS[1], 'tok_tat', tostring(tok_tat)) end
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
return out
"""

# KEYS[1]. ARGV: now ms, block ms from now, decrease factor, min factor, cooldown ms, recovery ms, ttl ms.
# Returns the new factor as a string.
_PENALIZE = """
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'block_until', 'factor', 'factor_ts', 'penalty_ts')
local block = tonumber(h[1]) or 0
local factor = tonumber(h[2]) or 1
local fts = tonumber(h[3]) or now
local pts = tonumber(h[4]) or 0
local recover_ms = tonumber(ARGV[6])
if factor < 1 then
  factor = math.min(1, factor + (now - fts) / recover_ms)
end
local until_ms = now + tonumber(ARGV[2])
if until_ms > block then redis.call('HSET', KEYS[1], 'block_until', tostring(until_ms)) end
if now - pts >= tonumber(ARGV[5]) then
  factor = math.max(tonumber(ARGV[4]), factor * tonumber(ARGV[3]))
  redis.call('HSET', KEYS[1], 'penalty_ts', tostring(now))
end
redis.call('HSET', KEYS[1], 'factor', tostring(factor), 'factor_ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return tostring(factor)
"""

# KEYS[1]. ARGV: now ms, token delta (actual - estimated), ms per token, ttl ms. A refund never pushes tok_tat
# before now (unused capacity is not banked).
_ADJUST = """
local now = tonumber(ARGV[1])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tok_tat')) or now
local new = tat + tonumber(ARGV[2]) * tonumber(ARGV[3])
if tonumber(ARGV[2]) < 0 then new = math.max(new, math.min(tat, now)) end
redis.call('HSET', KEYS[1], 'tok_tat', tostring(new))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return tostring(new - now)
"""

# Send-time check. KEYS[1] = the group's hash, KEYS[2] = its send log (sorted set, scores ms).
# ARGV: now ms, window ms, max sends per window (0: no log), member id. Returns ms to wait ("0": admitted, logged).
_ADMIT = """
local now = tonumber(ARGV[1])
local block = tonumber(redis.call('HGET', KEYS[1], 'block_until')) or 0
if block > now then return tostring(block - now) end
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tostring(now - window))
  if redis.call('ZCARD', KEYS[2]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return tostring(math.max(0.1, tonumber(oldest[2]) + window - now))
  end
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], math.ceil(window * 2))
end
return '0'
"""

_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|h|m|s)")


def parse_reset(value: str, now: float | None = None) -> float | None:
    """Seconds until a rate-limit reset: OpenAI's durations ("1s", "6m0s", "120ms", "0.5s"), a number of
    seconds, or an RFC 3339 time (Anthropic's ``*-reset`` headers). None if unreadable."""
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = list(_DURATION.finditer(value))
    if parts and "".join(p.group(0) for p in parts) == value:
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        return sum(float(p.group("value")) * scale[p.group("unit")] for p in parts)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def exhausted_for(headers: dict[str, str]) -> float | None:
    """Seconds to hold back when the response says a limit is used up (remaining 0), else None.

    OpenAI: ``x-ratelimit-remaining-{requests,tokens}`` with ``x-ratelimit-reset-*``; Anthropic:
    ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining`` with ``-reset``."""
    wait: float | None = None
    for key, value in headers.items():
        key = key.lower()
        reset_key = None
        if key.startswith("x-ratelimit-remaining-"):
            reset_key = "x-ratelimit-reset-" + key.removeprefix("x-ratelimit-remaining-")
        elif key.startswith("anthropic-ratelimit-") and key.endswith("-remaining"):
            reset_key = key.removesuffix("-remaining") + "-reset"
        if reset_key is None:
            continue
        try:
            remaining = float(value)
        except ValueError:
            continue
        if remaining > 0:
            continue
        reset = parse_reset(headers.get(reset_key, "")) if reset_key in headers else None
        if reset is not None:
            wait = max(wait or 0.0, reset)
    return wait


def limit_group(spec: ModelSpec) -> str:
    """What a provider's limit applies to: the endpoint's identity (``endpoint_identity``), hashed."""
    return hashlib.sha1(endpoint_identity(spec).encode()).hexdigest()[:16]


LimiterCount = Literal["acquired", "rate_limited", "redis_errors", "window_waits"]


@dataclass
class LimiterStats:
    """What this process's limiter did: calls admitted, 429s seen, Redis errors and calls held at send time
    (woken up late into a full second) in ``counts``; the seconds calls waited in all; calls per limit group."""

    counts: Counter[LimiterCount] = field(default_factory=Counter)
    waited_s: float = 0.0
    per_group: Counter[str] = field(default_factory=Counter)


class LimiterStore(Protocol):
    """Where a limiter keeps each group's schedule: the four atomic steps of the algorithm, each given the
    clock (ms). ``RedisStore`` shares it across processes and machines; ``MemoryStore`` keeps it in this
    process. Both implement the same steps with the same arithmetic (the Lua scripts above)."""

    def reserve(self, key: str, now_ms: float, req_int_ms: float, tok_int_ms: float, tokens: list[int],
                max_reserve_ms: float, recover_ms: float, ttl_ms: int) -> list[tuple[bool, float]]:
        """Admit calls of ``tokens`` each, in order: (granted, wait ms) per call, as if asked one by one."""
        ...

    def admit(self, key: str, now_ms: float, window_ms: float, limit: int, member: str) -> float: ...

    def penalize(self, key: str, now_ms: float, block_ms: float, decrease: float, min_factor: float,
                 cooldown_ms: float, recover_ms: float, ttl_ms: int) -> float: ...

    def adjust(self, key: str, now_ms: float, delta_tokens: int, tok_int_ms: float, ttl_ms: int) -> None: ...

    def state(self, key: str) -> dict[str, float]: ...

    errors: tuple[type[Exception], ...]        # what a failing store raises (the limiter then waits it out)


class RedisStore:
    """The schedule in Redis: one hash and one send log per group, changed only by the Lua scripts."""

    def __init__(self, client: redis.Redis) -> None:
        with needs_extra("distributed"):        # optional: redis-py, for the errors the store may raise
            import redis

        self.errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self.client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._penalize = client.register_script(_PENALIZE)
        self._adjust = client.register_script(_ADJUST)
        self._admit = client.register_script(_ADMIT)

    def reserve(self, key: str, now_ms: float, req_int_ms: float, tok_int_ms: float, tokens: list[int],
                max_reserve_ms: float, recover_ms: float, ttl_ms: int) -> list[tuple[bool, float]]:
        out = self._acquire(keys=[key], args=[repr(now_ms), repr(req_int_ms), repr(tok_int_ms), repr(max_reserve_ms),
                                              repr(recover_ms), ttl_ms, *(int(max(t, 0)) for t in tokens)])
        return [(bool(int(out[i])), float(out[i + 1])) for i in range(0, len(out), 2)]

    def admit(self, key: str, now_ms: float, window_ms: float, limit: int, member: str) -> float:
        return float(self._admit(keys=[key, key + ":log"], args=[repr(now_ms), repr(window_ms), limit, member]))

    def penalize(self, key: str, now_ms: float, block_ms: float, decrease: float, min_factor: float,
                 cooldown_ms: float, recover_ms: float, ttl_ms: int) -> float:
        return float(self._penalize(keys=[key], args=[
            repr(now_ms), repr(block_ms), repr(decrease), repr(min_factor), repr(cooldown_ms), repr(recover_ms),
            ttl_ms]))

    def adjust(self, key: str, now_ms: float, delta_tokens: int, tok_int_ms: float, ttl_ms: int) -> None:
        self._adjust(keys=[key], args=[repr(now_ms), int(delta_tokens), repr(tok_int_ms), ttl_ms])

    def state(self, key: str) -> dict[str, float]:
        raw = self.client.hgetall(key)
        return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}


class MemoryStore:
    """The schedule in this process (embedded mode, or no Redis configured): the scripts' arithmetic in
    Python under one lock. Keys do not expire (a process holds a handful of groups)."""

    errors: tuple[type[Exception], ...] = ()

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, float]] = {}
        self._logs: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _factor(h: dict[str, float], now: float, recover_ms: float) -> float:
        factor = h.get("factor", 1.0)
        if factor < 1:
            factor = min(1.0, factor + (now - h.get("factor_ts", now)) / recover_ms)
        return factor

    def reserve(self, key: str, now_ms: float, req_int_ms: float, tok_int_ms: float, tokens: list[int],
                max_reserve_ms: float, recover_ms: float, ttl_ms: int) -> list[tuple[bool, float]]:
        with self._lock:
            h = self._groups.setdefault(key, {})
            factor = self._factor(h, now_ms, recover_ms)
            req_int, tok_int = req_int_ms / factor, tok_int_ms / factor
            out: list[tuple[bool, float]] = []
            for count in tokens:
                at = max(now_ms, h.get("block_until", 0.0))
                if req_int > 0:
                    at = max(at, h.get("req_tat", 0.0))
                if tok_int > 0:
                    at = max(at, h.get("tok_tat", 0.0))
                wait = at - now_ms
                if wait > max_reserve_ms:
                    out.append((False, wait))
                    continue
                if req_int > 0:
                    h["req_tat"] = at + req_int
                if tok_int > 0:
                    h["tok_tat"] = at + max(count, 0) * tok_int
                out.append((True, wait))
            return out

    def admit(self, key: str, now_ms: float, window_ms: float, limit: int, member: str) -> float:
        with self._lock:
            block = self._groups.get(key, {}).get("block_until", 0.0)
            if block > now_ms:
                return block - now_ms
            if limit > 0:
                sends = self._logs.setdefault(key, deque())
                while sends and sends[0] <= now_ms - window_ms:
                    sends.popleft()
                if len(sends) >= limit:
                    return max(0.1, sends[0] + window_ms - now_ms)
                sends.append(now_ms)
            return 0.0

    def penalize(self, key: str, now_ms: float, block_ms: float, decrease: float, min_factor: float,
                 cooldown_ms: float, recover_ms: float, ttl_ms: int) -> float:
        with self._lock:
            h = self._groups.setdefault(key, {})
            factor = self._factor(h, now_ms, recover_ms)
            h["block_until"] = max(h.get("block_until", 0.0), now_ms + block_ms)
            if now_ms - h.get("penalty_ts", 0.0) >= cooldown_ms:
                factor = max(min_factor, factor * decrease)
                h["penalty_ts"] = now_ms
            h["factor"], h["factor_ts"] = factor, now_ms
            return factor

    def adjust(self, key: str, now_ms: float, delta_tokens: int, tok_int_ms: float, ttl_ms: int) -> None:
        with self._lock:
            h = self._groups.setdefault(key, {})
            tat = h.get("tok_tat", now_ms)
            new = tat + delta_tokens * tok_int_ms
            if delta_tokens < 0:
                new = max(new, min(tat, now_ms))
            h["tok_tat"] = new

    def state(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self._groups.get(key, {}))


def wall_clock_ms() -> float:
    return time.time() * 1000.0


class RateLimiter:
    """Admission in front of a provider (implements ``accord.worker.execute.RateLimiter``), the same algorithm
    in every mode: over a ``RedisStore`` in distributed mode, over a ``MemoryStore`` in embedded mode.

    ``clock`` (ms) and ``sleep`` are injectable: unit tests drive time and read exact admission sequences."""

    def __init__(self, store: LimiterStore, *, headroom: float = DEFAULT_HEADROOM, key_prefix: str = "accord:rl",
                 max_reserve_s: float = 2.0, decrease: float = 0.7, min_factor: float = 0.2,
                 cooldown_s: float = 1.0, recover_s: float = 60.0, default_block_s: float = 1.0,
                 store_wait_s: float = 120.0, window_s: float = 1.0, jitter_s: float = 0.05,
                 clock: Callable[[], float] = wall_clock_ms,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom}")
        self.store = store
        self.headroom = headroom
        self.key_prefix = key_prefix
        self.max_reserve_s = max_reserve_s
        self.decrease = decrease
        self.min_factor = min_factor
        self.cooldown_s = cooldown_s
        self.recover_s = recover_s
        self.default_block_s = default_block_s
        self.store_wait_s = store_wait_s
        self.window_s = window_s
        self.jitter_s = jitter_s
        self.clock = clock
        self.sleep = sleep
        self._sends = 0
        self._node = uuid.uuid4().hex[:12]
        self._batches: dict[tuple[asyncio.AbstractEventLoop, str],
                            tuple[ModelSpec, list[tuple[int, asyncio.Future[tuple[float, bool, float]]]]]] = {}
        self.stats = LimiterStats()

    # ------------------------------------------------------------------ keys and intervals
    def key(self, spec: ModelSpec) -> str:
        return f"{self.key_prefix}:{limit_group(spec)}"

    def request_interval_ms(self, spec: ModelSpec) -> float:
        """The spacing between admissions: the limit times ``headroom``. Where the provider's one-second
        allowance is under two requests (rpm < 120), a late arrival cannot borrow from a burst allowance, so
        the spacing also keeps ``jitter_s`` clear of the limit's own interval."""
        if not spec.rpm:
            return 0.0
        interval = 60000.0 / (spec.rpm * self.headroom)
        if spec.rpm < 120:
            interval = max(interval, 60000.0 / spec.rpm + self.jitter_s * 1000.0)
        return interval

    def token_interval_ms(self, spec: ModelSpec) -> float:
        return 60000.0 / (spec.tpm * self.headroom) if spec.tpm else 0.0

    def _ttl_ms(self) -> int:
        return int(max(self.recover_s, 60.0) * 2000)

    # ------------------------------------------------------------------ admission
    def reserve(self, spec: ModelSpec, tokens: int, now_ms: float | None = None) -> tuple[bool, float]:
        """One atomic reservation step for one call: (granted, seconds to wait).
        Granted: the slot is reserved and the caller must sleep the wait before sending. Not granted: the
        next slot is further than ``max_reserve_s`` away; ask again after (wait - max_reserve_s)."""
        return self.reserve_many(spec, [tokens], now_ms)[0]

    def reserve_many(self, spec: ModelSpec, tokens: list[int], now_ms: float | None = None) -> list[tuple[bool, float]]:
        """``reserve`` for several calls at once, in order, in one atomic store step."""
        answers = self.store.reserve(
            self.key(spec), self.clock() if now_ms is None else now_ms, self.request_interval_ms(spec),
            self.token_interval_ms(spec), [int(max(t, 0)) for t in tokens], self.max_reserve_s * 1000.0,
            self.recover_s * 1000.0, self._ttl_ms())
        return [(granted, wait_ms / 1000.0) for granted, wait_ms in answers]

    async def _reserve_together(self, spec: ModelSpec, tokens: int) -> tuple[float, bool, float]:
        """``reserve`` for this call, in one store step with the other calls of this event loop that ask for
        the same group in the same pass of the loop (a chunk's calls start together): (the clock the step
        was given, granted, seconds to wait)."""
        loop = asyncio.get_running_loop()
        key = self.key(spec)
        batch = self._batches.get((loop, key))
        if batch is None:
            batch = self._batches[(loop, key)] = (spec, [])
            loop.call_soon(self._reserve_batch, loop, key)
        answer: asyncio.Future[tuple[float, bool, float]] = loop.create_future()
        batch[1].append((tokens, answer))
        return await answer

    def _reserve_batch(self, loop: asyncio.AbstractEventLoop, key: str) -> None:
        spec, waiters = self._batches.pop((loop, key))
        now = self.clock()
        try:
            answers = self.reserve_many(spec, [tokens for tokens, _ in waiters], now)
        except BaseException as err:  # noqa: BLE001 - every caller learns of it (store errors are retried)
            for _, answer in waiters:
                if not answer.done():
                    answer.set_exception(err)
            return
        for (_, answer), (granted, wait) in zip(waiters, answers, strict=True):
            if not answer.done():
                answer.set_result((now, granted, wait))

    def window_limit(self, spec: ModelSpec) -> int:
        """Sends allowed in any ``window_s``: the limit's share of the window (0: no request limit). The
        pacing runs ``headroom`` below it, so this bound only bites on calls that woke up late."""
        if not spec.rpm:
            return 0
        return max(1, math.floor(spec.rpm / 60.0 * self.window_s))

    def admit(self, spec: ModelSpec) -> float:
        """The send-time check: 0.0 when admitted (and logged), else seconds to wait before asking again."""
        self._sends += 1
        wait_ms = self.store.admit(self.key(spec), self.clock(), self.window_s * 1000.0, self.window_limit(spec),
                                   f"{self._node}:{os.getpid()}:{self._sends}")
        return wait_ms / 1000.0

    async def acquire(self, spec: ModelSpec, estimated_tokens: int) -> None:
        started = self.clock()
        store_down_since: float | None = None
        delay = 0.05
        reserved = False
        while True:
            try:
                if not reserved:
                    _, granted, wait = await self._reserve_together(spec, estimated_tokens)
                    if not granted:
                        store_down_since = None
                        await self.sleep(min(max(wait - self.max_reserve_s, 0.01), self.max_reserve_s))
                        continue
                    reserved = True
                    if wait > 0:
                        await self.sleep(wait)
                hold = self.admit(spec)
                store_down_since = None
            except self.store.errors as err:
                store_down_since = self._store_trouble(err, store_down_since)
                await self.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if hold <= 0:
                break
            # Blocked by a 429 seen meanwhile, or the last second is full (this call woke up late).
            self.stats.counts["window_waits"] += 1
            await self.sleep(hold)
        self.stats.counts["acquired"] += 1
        self.stats.waited_s += (self.clock() - started) / 1000.0
        group = limit_group(spec)
        self.stats.per_group[group] += 1

    def _store_trouble(self, err: Exception, since: float | None) -> float:
        self.stats.counts["redis_errors"] += 1
        now = time.monotonic()
        since = since if since is not None else now
        if now - since > self.store_wait_s:
            raise ProviderError(f"rate limiter: Redis unreachable for {now - since:.0f}s ({err})", retryable=True)
        if since == now:
            log.warning("rate limiter: Redis error (%s); holding calls until it is back", err)
        return since

    # ------------------------------------------------------------------ feedback
    def observe(self, spec: ModelSpec, *, response: ProviderResponse | None = None,
                error: ProviderError | None = None, estimated_tokens: int = 0) -> None:
        try:
            if error is not None:
                if is_rate_limited(error):
                    self.stats.counts["rate_limited"] += 1
                    self.penalize(spec, error.retry_after if error.retry_after is not None else self.default_block_s)
                return
            if response is None:
                return
            if spec.tpm and (response.input_tokens or response.output_tokens):
                delta = response.input_tokens + response.output_tokens - int(estimated_tokens)
                if delta:
                    self.store.adjust(self.key(spec), self.clock(), delta, self.token_interval_ms(spec),
                                      self._ttl_ms())
            hold = exhausted_for(response.headers or {})
            if hold:
                self._hold(spec, hold)
        except self.store.errors as err:
            self.stats.counts["redis_errors"] += 1
            log.warning("rate limiter: cannot record feedback for %s (%s)", spec.name, err)

    def penalize(self, spec: ModelSpec, block_s: float) -> float:
        """A 429/529: nobody calls this group for ``block_s``; the admitted rate drops by ``decrease``."""
        factor = self.store.penalize(self.key(spec), self.clock(), max(block_s, 0.0) * 1000.0, self.decrease,
                                     self.min_factor, self.cooldown_s * 1000.0, self.recover_s * 1000.0,
                                     self._ttl_ms())
        log.info("rate limited on %s: holding %.2fs, rate factor now %s", spec.name, block_s, factor)
        return factor

    def _hold(self, spec: ModelSpec, block_s: float) -> None:
        # remaining = 0: wait for the reset without slowing the long-run rate (decrease 1, a cooldown that
        # never elapses, so the factor and the penalty time stay as they are).
        self.store.penalize(self.key(spec), self.clock(), block_s * 1000.0, 1.0, 0.0, 1e15,
                            self.recover_s * 1000.0, self._ttl_ms())

    def state(self, spec: ModelSpec) -> dict[str, Any]:
        """The group's raw state (for tests and diagnostics)."""
        return self.store.state(self.key(spec))

    def pace(self, spec: ModelSpec) -> dict[str, float | None]:
        """The pace this model's calls are admitted at now (for progress displays): ``rpm``, the limit's pace
        (``headroom`` x the rpm limit) slowed by the ``factor`` a 429 left (recovering linearly over
        ``recover_s``), None without an rpm limit; ``blocked_for_s``, how long a 429's retry-after still holds
        the group."""
        h = {k: float(v) for k, v in self.store.state(self.key(spec)).items()}
        now = self.clock()
        factor = h.get("factor", 1.0)
        if factor < 1:
            factor = min(1.0, factor + (now - h.get("factor_ts", now)) / (self.recover_s * 1000.0))
        interval = self.request_interval_ms(spec)
        return {"rpm": round(60000.0 / interval * factor, 2) if interval else None, "factor": round(factor, 4),
                "blocked_for_s": round(max(0.0, h.get("block_until", 0.0) - now) / 1000.0, 3)}


def is_rate_limited(error: ProviderError) -> bool:
    """A 429 or an overload (529, 503 with retry-after): the request waits and is sent again; it never
    counts as one of the request's failed attempts."""
    return bool(error.rate_limited or error.status in (429, 529))


class RedisRateLimiter(RateLimiter):
    """The limiter shared by every worker process and machine (distributed mode)."""

    def __init__(self, client: redis.Redis, **options: Any) -> None:
        if "redis_wait_s" in options:
            options["store_wait_s"] = options.pop("redis_wait_s")
        super().__init__(RedisStore(client), **options)
        self.client = client


class LocalRateLimiter(RateLimiter):
    """The same limiter for one process (embedded mode, or no Redis configured)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(MemoryStore(), **options)
