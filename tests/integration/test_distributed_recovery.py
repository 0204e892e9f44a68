"""Losing Redis mid-run: `FLUSHALL` wipes the broker's queues, unacked messages, the rate limiter and the hot
cache while a run is in flight; the run must still complete with every request rated exactly once (the
database is the system of record; expired leases bring the lost chunks back).

`FLUSHALL` empties every database of a Redis server, so this module starts a Redis server of its own on a
free port (the same binary as the machine's) instead of flushing the shared one under other tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from accord.scheduler import run_control
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.expand import create_run

from tests.integration.distributed_stack import DistributedStack, rating_counts, status_counts, wait_for_run

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    import redis

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.skip("could not start a private redis-server")
            time.sleep(0.05)
    yield port, client
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def env(private_redis, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.integration.test_distributed_run import services_up

    if not services_up():
        pytest.skip("PostgreSQL must run on 127.0.0.1 (make test starts it)")
    from accord.models.dataset_import import import_dataset
    from accord.models.db import dispose_engines
    from accord.models.import_spec import ImportSpec
    from accord.models.migrate import init_db

    from tests.conftest import drop_pg_database, make_pg_database
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
        if stack is not None:
            stack.stop()
        server.stop()
        dispose_engines()
        drop_pg_database(db_name)


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
