"""The hot tier of the response cache: Redis, in front of the durable tier (original ``Rating`` rows, looked
up by ``accord.worker.execute``). Implements ``accord.worker.execute.HotCache``.

Entries are the cached fields of an original rating (``execute._CACHED_FIELDS`` plus ``source_rating_id``)
as JSON under ``<prefix>:<cache key>``, with a TTL. The tier is an accelerator only: a Redis error or a
flushed Redis is a miss (the Rating table answers), never a failure.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger("accord.worker.response_cache")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    puts: int = 0
    errors: int = 0


class RedisHotCache:
    def __init__(self, client: redis.Redis, ttl_seconds: int = 7 * 24 * 3600, key_prefix: str = "accord:rc") -> None:
        if ttl_seconds < 1:
            raise ValueError(f"ttl_seconds must be at least 1, got {ttl_seconds}")
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.key_prefix = key_prefix
        self.stats = CacheStats()

    def _key(self, key: str) -> str:
        return f"{self.key_prefix}:{key}"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self.client.get(self._key(key))
        except redis.RedisError as err:
            self.stats.errors += 1
            log.warning("hot cache: get failed (%s); falling back to the database", err)
            return None
        if raw is None:
            self.stats.misses += 1
            return None
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            self.stats.errors += 1
            return None
        if not isinstance(value, dict):
            return None
        self.stats.hits += 1
        return value

    def put(self, key: str, rating: dict[str, Any]) -> None:
        try:
            payload = json.dumps(rating, default=str, separators=(",", ":"))
            self.client.set(self._key(key), payload, ex=self.ttl_seconds)
            self.stats.puts += 1
        except (redis.RedisError, TypeError, ValueError) as err:
            self.stats.errors += 1
            log.warning("hot cache: put failed (%s)", err)

    def forget(self, key: str) -> None:
        try:
            self.client.delete(self._key(key))
        except redis.RedisError as err:
            self.stats.errors += 1
            log.warning("hot cache: delete failed (%s)", err)
