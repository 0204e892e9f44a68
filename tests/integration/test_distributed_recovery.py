"""Losing Redis mid-run.

1. The scenario of issue 13 (item 3) with accord's default settings: a distributed run of 3,000 requests at
   6,000/min with two workers; about 20 s in (or at 40% done) ``kill -9`` of one worker, ``FLUSHDB`` of the
   broker's and the cache's Redis databases, a new worker started. Every request is rated exactly once,
   and the run finishes within seconds of its ideal time, not after a lease of minutes (queued chunks whose
   message was lost come back after the pickup window, the killed worker's after one heartbeat lease).
2. `FLUSHALL` wipes the broker's queues, unacked messages, the rate limiter and the hot cache while a run
   is in flight; the run must still complete with every request rated exactly once (the database is the
   system of record; expired leases bring the lost chunks back).

`FLUSHALL` / `FLUSHDB` reach every client of a Redis server, so this module starts Redis servers of its own
on free ports (the same binary as the machine's) instead of flushing the shared one under other tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from accord.scheduler import run_control
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.expand import create_run

from tests.integration.distributed_stack import (
    DistributedStack,
    private_redis_server,
    rating_counts,
    recovery_scenario,
    status_counts,
    tear_down,
    wait_for_run,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

# The bound the test holds on a loaded 2-core machine. Before the pickup window and the heartbeat lease,
# the scenario took 10 min 38 s (its queued chunks held 600 s leases); the target on a quiet machine is
# 1.5 x the ideal 30 s, printed with the figures (and by bench/recovery.py).
RECOVERY_BOUND_S = 180.0


@contextmanager
def _redis(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[int]:
    """A private Redis server's port; skips the test when none can be started."""
    server = private_redis_server(tmp_path_factory.mktemp(name))
    try:
        port = server.__enter__()
    except RuntimeError as err:   # pragma: no cover - depends on the machine
        pytest.skip(str(err))
    try:
        yield port
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def recovery_env(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.integration.test_distributed_run import services_up

    if not services_up():
        pytest.skip("PostgreSQL must run on 127.0.0.1 (make test starts it)")
    from accord.models.db import dispose_engines

    from tests.conftest import drop_pg_database, make_pg_database
    from tests.fakes.openai_server import openai_subprocess

    url, db_name = make_pg_database()
    server = openai_subprocess({"latency_ms": 50, "max_log": 0})
    try:
        with _redis(tmp_path_factory, "redis-recovery") as port:
            server.start()
            try:   # the server stands in for a remote provider with CPUs of its own: keep it responsive
                os.setpriority(os.PRIO_PROCESS, server.process.pid, -5)  # type: ignore[union-attr]
            except OSError:
                pass
            yield {"url": url, "server": server, "port": port, "home": tmp_path_factory.mktemp("recovery")}
    finally:
        server.stop()
        dispose_engines()
        drop_pg_database(db_name)


def test_broker_and_cache_lost_and_a_worker_killed_recovers_in_seconds_with_default_settings(recovery_env) -> None:  # type: ignore[no-untyped-def]
    env = recovery_env
    f = recovery_scenario(env["home"], redis_port=env["port"], database_url=env["url"],
                          server_base_url=env["server"].base_url, server_stats=env["server"].stats,
                          timeout=RECOVERY_BOUND_S + 60)
    print("\n" + f.summary())
    print(f"timeline (s, done): {f.timeline[::max(1, len(f.timeline) // 40)]}; logs in {f.log_dir}")
    assert f.fault_at_s > 0 and f.done_at_fault < f.total             # the fault came mid-run
    assert (f.status, f.done, f.failed) == ("completed", f.total, 0), f.summary()
    assert f.counts == (f.total, f.total, f.total)                    # every rating stored, none twice
    assert f.statuses == {"done": f.total}
    assert f.released_lines > 0                                       # the lost chunks came back by their leases
    assert f.elapsed_s < RECOVERY_BOUND_S, f.summary()                 # seconds, not a 600 s lease


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import redis

    with _redis(tmp_path_factory, "redis") as port:
        yield port, redis.Redis(port=port)


@pytest.fixture(scope="module")
def env(private_redis, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.integration.test_distributed_run import services_up

    if not services_up():
        pytest.skip("PostgreSQL must run on 127.0.0.1 (make test starts it)")
    from accord.models.dataset_import import import_dataset
    from accord.models.import_spec import ImportSpec
    from accord.models.migrate import init_db

    from tests.conftest import make_pg_database
    from tests.fakes.openai_server import openai_subprocess
    from tests.fakes.synthetic_dataset import make_sparse_dataset

    port, client = private_redis
    home: Path = tmp_path_factory.mktemp("flush")
    url, db_name = make_pg_database()
    server = openai_subprocess({"latency_ms": 50})
    stack = None
    try:
        engine = init_db(url)
        kwargs = make_sparse_dataset(home / "dataset", n_items=40, n_annotators=30, seed=9)
        import_dataset(engine, ImportSpec(**{**kwargs, "name": "syn"}))
        server.start()
        stack = DistributedStack(database_url=url, broker_url=f"redis://127.0.0.1:{port}/0",
                                 redis_url=f"redis://127.0.0.1:{port}/1", home=home, workers=2, concurrency=2,
                                 chunk_size=8, lease_seconds=10, reconcile_seconds=2,
                                 extra_env={"ACCORD_DISPATCH_AHEAD_SECONDS": "4"})
        stack.start()
        yield {"engine": engine, "server": server, "stack": stack, "redis": client}
    finally:
        tear_down(stack, server, db_name)


def test_flushall_mid_run_still_completes_exactly_once(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack, client = env["engine"], env["server"], env["stack"], env["redis"]
    spec = parse_campaign({
        "name": "flush", "dataset": "syn", "dimension": "Q_overall", "samples": 8,
        "decoding": {"temperature": 0.7, "seed": 3, "max_tokens": 32},
        "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                    "rpm": 2400, "max_concurrency": 16}],
        "templates": ["likert_unsafe"]})
    plan = create_run(engine, spec, mode="distributed")
    broker = type(client)(port=client.connection_pool.connection_kwargs["port"], db=0)
    deadline = time.monotonic() + 60
    # flush while chunks wait in the broker's queue (not only inside the workers)
    while run_control.read_progress(engine, plan.run_id).done < 40 or broker.llen(f"{stack.prefix}.openai") < 2:
        assert time.monotonic() < deadline, "no backlog in the broker before the flush"
        time.sleep(0.05)
    waiting = broker.llen(f"{stack.prefix}.openai")
    client.flushall()
    assert client.dbsize() == 0 and broker.dbsize() == 0
    assert waiting >= 2                                   # chunk messages lost with the broker
    p = wait_for_run(engine, plan.run_id, 120, stack=stack)
    assert (p.status, p.done, p.failed) == ("completed", plan.total, 0)
    assert rating_counts(engine, plan.run_id) == (plan.total, plan.total, plan.total)
    assert status_counts(engine, plan.run_id) == {"done": plan.total}
    logs = "".join(stack.log(n) for n in [*stack.workers, "scheduler"])
    assert "whose lease expired" in logs                  # lost chunks came back through their leases


def test_a_chunk_running_longer_than_its_lease_is_kept_by_the_heartbeat(env) -> None:  # type: ignore[no-untyped-def]
    """Answers taking 2.5 leases: the workers' heartbeat keeps the chunk's lease, so it is neither released
    nor run twice (one call per request at the server)."""
    engine, server, stack = env["engine"], env["server"], env["stack"]
    lease = int(stack.env["ACCORD_LEASE_SECONDS"])
    released_before = sum(stack.log(n).count("whose lease expired") for n in [*stack.workers, "scheduler"])
    spec = parse_campaign({
        "name": "slow", "dataset": "syn", "dimension": "Q_overall", "samples": 1, "items": {"limit": 8},
        "decoding": {"temperature": 0.7, "seed": 4, "max_tokens": 32},
        "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                    "rpm": 2400, "max_concurrency": 16}],
        "templates": ["likert_unsafe"]})
    server.configure(latency_ms=2500 * lease)
    server.reset_stats()
    try:
        plan = create_run(engine, spec, mode="distributed")
        assert plan.total == 8 and plan.cached == 0
        p = wait_for_run(engine, plan.run_id, 30 * lease, stack=stack)
    finally:
        server.configure(latency_ms=50)
    assert (p.status, p.done, p.failed) == ("completed", plan.total, 0)
    assert rating_counts(engine, plan.run_id) == (plan.total, plan.total, plan.total)
    assert server.stats()["requests"] == plan.total                  # nobody ran the chunk a second time
    released_after = sum(stack.log(n).count("whose lease expired") for n in [*stack.workers, "scheduler"])
    assert released_after == released_before
