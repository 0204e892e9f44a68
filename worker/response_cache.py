"""The hot tier of the response cache: Redis, in front of the durable tier (original ``Rating`` rows, looked
up by ``accord.worker.execute``). Implements ``accord.worker.execute.HotCache``.

Entries are the cached fields of an original rating (``models.schema.RATING_CACHED_FIELDS`` plus
``source_rating_id``) as JSON under ``<prefix>:<cache key>``, with a TTL. The tier is an accelerator only: a
Redis error or a flushed Redis is a miss (the Rating table answers), never a failure.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any, Literal

from accord.extras import needs_extra

with needs_extra("distributed"):                # optional: redis-py, the hot cache's client
    import redis

log = logging.getLogger("accord.worker.response_cache")


CacheCount = Literal["hits", "misses", "puts", "errors"]


class RedisHotCache:
    def __init__(self, client: redis.Redis, ttl_seconds: int = 7 * 24 * 3600, key_prefix: str = "accord:rc") -> None:
        if ttl_seconds < 1:
            raise ValueError(f"ttl_seconds must be at least 1, got {ttl_seconds}")
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.key_prefix = key_prefix
        self.stats: Counter[CacheCount] = Counter()   # hits, misses, entries put, Redis errors

    def _key(self, key: str) -> str:
        return f"{self.key_prefix}:{key}"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self.client.get(self._key(key))
        except redis.RedisError as err:
            self.stats["errors"] += 1
            log.warning("hot cache: get failed (%s); falling back to the database", err)
            return None
        if raw is None:
            self.stats["misses"] += 1
            return None
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            self.stats["errors"] += 1
            return None
        if not isinstance(value, dict):
            return None
        self.stats["hits"] += 1
        return value

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached answers among ``keys``, in one round trip (MGET)."""
        if not keys:
            return {}
        try:
            raws = self.client.mget([self._key(key) for key in keys])
        except redis.RedisError as err:
            self.stats["errors"] += 1
            log.warning("hot cache: get failed (%s); falling back to the database", err)
            return {}
        found: dict[str, dict[str, Any]] = {}
        for key, raw in zip(keys, raws):
            if raw is None:
                self.stats["misses"] += 1
                continue
            try:
                value = json.loads(raw)
            except (TypeError, ValueError):
                self.stats["errors"] += 1
                continue
            if isinstance(value, dict):
                self.stats["hits"] += 1
                found[key] = value
        return found

    def put_many(self, ratings: dict[str, dict[str, Any]]) -> None:
        """Cache several answers in one pipelined round trip."""
        if not ratings:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for key, rating in ratings.items():
                pipe.set(self._key(key), json.dumps(rating, default=str, separators=(",", ":")), ex=self.ttl_seconds)
            pipe.execute()
            self.stats["puts"] += len(ratings)
        except (redis.RedisError, TypeError, ValueError) as err:
            self.stats["errors"] += 1
            log.warning("hot cache: put failed (%s)", err)

    def put(self, key: str, rating: dict[str, Any]) -> None:
        try:
            payload = json.dumps(rating, default=str, separators=(",", ":"))
            self.client.set(self._key(key), payload, ex=self.ttl_seconds)
            self.stats["puts"] += 1
        except (redis.RedisError, TypeError, ValueError) as err:
            self.stats["errors"] += 1
            log.warning("hot cache: put failed (%s)", err)

    def forget(self, key: str) -> None:
        try:
            self.client.delete(self._key(key))
        except redis.RedisError as err:
            self.stats["errors"] += 1
            log.warning("hot cache: delete failed (%s)", err)
