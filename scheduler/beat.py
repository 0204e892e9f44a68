"""The Celery beat schedule of the distributed mode: ``accord.reconcile`` every ``reconcile_seconds`` on the
control queue (expired leases, completion, lost post-processing, progress in the log).

``accord scheduler`` runs beat in a thread beside the dispatcher loop; in production it is one replica
(two beats would only send the idempotent reconcile twice as often).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accord.models.settings import get_settings
from accord.worker.celery_app import CONTROL, RECONCILE_TASK, get_distributed_settings, queue_name
from accord.extras import needs_extra

with needs_extra("distributed"):                # optional: Celery beat runs the reconciliation schedule
    from celery import Celery
    from celery.beat import EmbeddedService


def beat_schedule() -> dict[str, dict[str, Any]]:
    every = get_distributed_settings().reconcile_seconds
    control = queue_name(CONTROL)
    return {
        "accord-reconcile": {
            "task": RECONCILE_TASK,
            "schedule": every,
            # Unconsumed ticks expire instead of piling up while no worker serves the control queue.
            "options": {"queue": control, "exchange": "", "routing_key": control, "expires": max(every * 3, 5.0)},
        },
    }


def install_beat_schedule(app: Celery) -> None:
    app.conf.beat_schedule = beat_schedule()


def schedule_file() -> Path:
    home = get_settings().home
    home.mkdir(parents=True, exist_ok=True)
    return home / f"celerybeat-schedule-{get_distributed_settings().queue_prefix}"


def start_embedded_beat(app: Celery) -> Any:
    """Celery beat in a daemon thread of this process; returns the service (``.stop()``)."""
    install_beat_schedule(app)
    service = EmbeddedService(app, thread=True, schedule_filename=str(schedule_file()))
    service.start()  # type: ignore[union-attr]  # thread=True: the threaded service, which has start()
    return service
