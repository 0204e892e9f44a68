"""Per-key request rate limit of the API: a token bucket per API key (``rate`` per minute, ``burst`` at once).

The buckets live in this process: with several API replicas behind a balancer each replica enforces the
limit on its own share of the traffic."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    remaining: int = 0


class KeyRateLimiter:
    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, key_id: int) -> Decision:
        """Take one token from the key's bucket, or say how long until one is there."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._evict_full(now)
                bucket = self._buckets[key_id] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return Decision(True, 0.0, int(bucket.tokens))
            return Decision(False, (1.0 - bucket.tokens) / self.rate, 0)

    def _evict_full(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:   # everyone is busy: forget the stalest
            stalest = sorted(self._buckets, key=lambda k: self._buckets[k].updated)[: len(self._buckets) // 10 + 1]
            for k in stalest:
                del self._buckets[k]

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))
