"""The Celery application of the distributed mode: broker, queues and the reliability options.

Topology:
- one queue per provider kind, ``<prefix>.openai``, ``<prefix>.anthropic``, ``<prefix>.local`` (a slow or
  rate-limited provider never holds up the others), carrying ``accord.execute_chunk`` tasks: chunks of
  rating-request ids;
- ``<prefix>.control`` for the periodic side (``accord.reconcile``) and ``accord.postprocess`` (both defined in
  ``accord.scheduler.control_tasks``).

Reliability: ``acks_late`` (a message is acknowledged after the chunk ran, so a killed worker's chunk is
redelivered), ``task_reject_on_worker_lost``, prefetch 1, a Redis visibility timeout. None of it is needed
for correctness: the database is the system of record (leases on the requests: a short pickup window until
a worker takes the chunk, then a heartbeat-renewed lease, see ``accord.worker.leases``), Redis may lose
everything and a run goes on within seconds.

Messages are published to the *default* exchange with the queue name as routing key, so routing does not
depend on binding tables kept in the broker (on Redis those are keys that a ``FLUSHALL`` deletes).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from accord.models.schema import ProviderKind
from accord.extras import needs_extra
from accord.models.settings import get_settings
from accord.worker.rate_limiter import DEFAULT_HEADROOM
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

with needs_extra("distributed"):                # optional: Celery (and kombu, its messaging library)
    from celery import Celery
    from kombu import Exchange, Queue

PROVIDER_QUEUES = tuple(kind.value for kind in ProviderKind)   # a queue per provider kind
CONTROL = "control"
EXECUTE_TASK = "accord.execute_chunk"
RECONCILE_TASK = "accord.reconcile"
POSTPROCESS_TASK = "accord.postprocess"


class DistributedSettings(BaseSettings):
    """Settings of the distributed mode only (environment prefix ``ACCORD_``)."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", env_file=".env", extra="ignore")

    queue_prefix: str = Field(default="accord", min_length=1, description="Queue names are <prefix>.<provider>.")
    visibility_timeout: int = Field(default=3600, ge=10, description="Redis broker: seconds before an unacked message is redelivered.")
    dispatch_interval: float = Field(default=0.25, gt=0, description="Seconds between dispatcher ticks.")
    dispatch_ahead_seconds: float = Field(default=6.0, gt=0, description="Keep this many seconds of a rate-limited model's capacity queued.")
    max_chunks_per_run: int = Field(default=32, ge=1, description="Chunks of one run in flight per rate-limit group.")
    max_chunks_per_group: int = Field(default=64, ge=1, description="Chunks in flight per rate-limit group, all runs together.")
    reconcile_seconds: float = Field(default=5.0, gt=0, description="Period of the reconciliation job.")
    postprocess_grace_seconds: float = Field(default=60.0, ge=0, description="A finished run not post-processed after this long gets it again.")
    rate_headroom: float = Field(default=DEFAULT_HEADROOM, gt=0, le=1, description="Fraction of a provider's rpm/tpm the shared limiter admits.")
    cache_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1, description="Lifetime of a hot-cache entry in Redis.")
    worker_concurrency: int = Field(default=4, ge=1, description="Chunk tasks a worker runs at once (prefork: child processes).")
    worker_synchronous_commit: bool = Field(default=False, description="PostgreSQL: workers wait for the WAL flush on each rating (off: see tasks._async_commit).")


@lru_cache(maxsize=1)
def get_distributed_settings() -> DistributedSettings:
    return DistributedSettings()


def queue_name(kind: str) -> str:
    """The full queue name for a provider kind or ``control``."""
    return f"{get_distributed_settings().queue_prefix}.{kind}"


def provider_queue(provider: str) -> str:
    if provider not in PROVIDER_QUEUES:
        raise ValueError(f"provider {provider!r}: no queue (known: {', '.join(PROVIDER_QUEUES)})")
    return queue_name(provider)


def all_queue_names() -> list[str]:
    return [queue_name(k) for k in (*PROVIDER_QUEUES, CONTROL)]


def make_queue(name: str) -> Queue:
    # The default exchange ('') routes by queue name: no binding to lose.
    return Queue(name, exchange=Exchange(""), routing_key=name, durable=True)


def make_celery_app() -> Celery:
    settings = get_settings()
    dist = get_distributed_settings()
    # The control queue's tasks are the scheduler's (reconcile, post-processing): loaded by name when a
    # worker starts, so this layer never imports accord.scheduler.
    app = Celery("accord", include=["accord.worker.tasks", "accord.scheduler.control_tasks"])
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": dist.visibility_timeout},
        result_backend_transport_options={"visibility_timeout": dist.visibility_timeout},
        task_queues=[make_queue(n) for n in all_queue_names()],
        task_default_queue=queue_name(CONTROL),
        task_default_exchange="",
        task_default_routing_key=queue_name(CONTROL),
        task_create_missing_queues=False,
        task_routes={
            EXECUTE_TASK: {"queue": queue_name("openai")},   # overridden per message by the dispatcher
            RECONCILE_TASK: {"queue": queue_name(CONTROL)},
            POSTPROCESS_TASK: {"queue": queue_name(CONTROL)},
        },
        timezone="UTC",
        enable_utc=True,
    )
    return app


app = make_celery_app()


def send(task_name: str, args: list[Any] | tuple[Any, ...], queue: str) -> None:
    """Publish a task to ``queue`` through the default exchange (routing key = queue name). Nobody waits on
    accord's task results (the database is the record), so none is kept: without ``ignore_result`` Celery's
    Redis result backend subscribes the sender to a result channel per message and unsubscribes later."""
    app.send_task(task_name, args=list(args), queue=make_queue(queue),  # type: ignore[arg-type]  # Celery takes a Queue too
                  exchange="", routing_key=queue, ignore_result=True)
