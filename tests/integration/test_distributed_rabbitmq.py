"""RabbitMQ as the broker (amqp://guest:guest@127.0.0.1:5672//): a small run through two workers completes
with every request rated exactly once. Redis still holds the rate limiter and the hot cache."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.expand import create_run

from tests.integration.distributed_stack import DistributedStack, rating_counts, status_counts, wait_for_run
from tests.integration.test_distributed_run import flush_dedicated

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = "redis://127.0.0.1:6379/11"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if not port_open(5672):
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    if not (port_open(5432) and port_open(6379)):
        pytest.skip("PostgreSQL and Redis must run on 127.0.0.1 (make test starts them)")
    from accord.models.dataset_import import import_dataset
    from accord.models.db import dispose_engines
    from accord.models.import_spec import ImportSpec
    from accord.models.migrate import init_db
    from kombu import Connection

    from tests.conftest import drop_pg_database, make_pg_database
    from tests.fakes.openai_server import openai_subprocess
    from tests.fakes.synthetic_dataset import make_sparse_dataset

    home: Path = tmp_path_factory.mktemp("rabbit")
    url, db_name = make_pg_database()
    server = openai_subprocess({"latency_ms": 20})
    stack = None
    try:
        engine = init_db(url)
        kwargs = make_sparse_dataset(home / "dataset", n_items=24, n_annotators=30, seed=13)
        import_dataset(engine, ImportSpec(**{**kwargs, "name": "syn"}))
        server.start()
        stack = DistributedStack(database_url=url, broker_url=AMQP_URL, redis_url=REDIS_URL, home=home,
                                 workers=2, concurrency=2, chunk_size=8, lease_seconds=15, reconcile_seconds=2)
        stack.start()
        yield {"engine": engine, "server": server, "stack": stack}
    finally:
        if stack is not None:
            stack.stop()
            # durable queues outlive the test: remove this session's
            with Connection(AMQP_URL, connect_timeout=5) as conn:
                channel = conn.default_channel
                for kind in ("openai", "anthropic", "local", "control"):
                    try:
                        channel.queue_delete(f"{stack.prefix}.{kind}")
                    except Exception:  # noqa: BLE001 - never declared (not served by these workers)
                        channel = conn.channel()
        server.stop()
        dispose_engines()
        drop_pg_database(db_name)
        flush_dedicated(REDIS_URL)


def test_run_through_rabbitmq_rates_every_request_once(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack = env["engine"], env["server"], env["stack"]
    spec = parse_campaign({
        "name": "rabbit", "dataset": "syn", "dimension": "Q_overall", "samples": 3,
        "decoding": {"temperature": 0.7, "seed": 21, "max_tokens": 32},
        "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                    "rpm": 3000, "max_concurrency": 16}],
        "templates": ["likert_unsafe"]})
    plan = create_run(engine, spec, mode="distributed")
    p = wait_for_run(engine, plan.run_id, 90, stack=stack)
    assert (p.status, p.done, p.failed) == ("completed", plan.total, 0)
    assert rating_counts(engine, plan.run_id) == (plan.total, plan.total, plan.total)
    assert status_counts(engine, plan.run_id) == {"done": plan.total}
    assert server.stats()["ok"] == plan.total - p.cached
    assert "amqp://" in stack.log("w1") and "amqp://" in stack.log("w2")     # the workers were on RabbitMQ
    assert stack.log("w1").count("chunk ") + stack.log("w2").count("chunk ") > 0
