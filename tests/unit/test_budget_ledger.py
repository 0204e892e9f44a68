"""Budgets by reservation: the ledger's answers, in process and in Redis (when reachable)."""

from __future__ import annotations

import uuid

import pytest

from accord.worker.budget import EXHAUSTED, RESERVED, WAIT, MemoryBudgetLedger, RedisBudgetLedger


@pytest.fixture(params=["memory", "redis"])
def ledger(request):  # type: ignore[no-untyped-def]
    if request.param == "memory":
        yield MemoryBudgetLedger()
        return
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/12", socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (make test starts it)")
    yield RedisBudgetLedger(client, key_prefix=f"t:budget:{uuid.uuid4().hex}")
    client.close()


def test_reservations_never_pass_the_budget(ledger) -> None:  # type: ignore[no-untyped-def]
    run = "7:2026-12-01T10:00:00"
    assert ledger.reserve(run, 0.4, 1.0, 0.1) == RESERVED        # seeded with the database's 0.1 spent
    assert ledger.reserve(run, 0.4, 1.0, 0.1) == RESERVED        # 0.1 + 0.8 reserved
    assert ledger.reserve(run, 0.4, 1.0, 0.1) == WAIT            # fits once a call in flight settles
    ledger.settle(run, 0.4, 0.05)                                 # a worst case of 0.4 cost 0.05
    assert ledger.reserve(run, 0.4, 1.0, 0.1) == RESERVED        # 0.15 spent + 0.8 reserved
    assert ledger.reserve(run, 0.9, 1.0, 0.1) == EXHAUSTED       # cannot fit even when every call settles
    for _ in range(2):
        ledger.settle(run, 0.4, 0.4)
    assert ledger.reserve(run, 0.2, 1.0, 0.1) == EXHAUSTED       # 0.95 spent: nothing of 0.2 fits any more
    assert ledger.reserve(run, 0.04, 1.0, 0.1) == RESERVED       # nothing in flight: 0.99 fits


def test_runs_are_kept_apart(ledger) -> None:  # type: ignore[no-untyped-def]
    assert ledger.reserve("1:a", 0.9, 1.0, 0.0) == RESERVED
    assert ledger.reserve("1:b", 0.9, 1.0, 0.0) == RESERVED      # same id, another start: another run
