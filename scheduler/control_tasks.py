"""The Celery tasks of the control queue: ``accord.reconcile`` (sent by beat every few seconds) and
``accord.postprocess`` (sent once a run finishes). They are the scheduler's work run by a worker process
that serves ``<prefix>.control``; they live here, above the worker layer (``accord.worker`` never imports
``accord.scheduler``), and the Celery app loads them by module name when a worker starts (its ``include``).
"""

from __future__ import annotations

from typing import Any

from accord.models import db
from accord.scheduler.reconcile import postprocess_once, reconcile_once
from accord.worker.celery_app import POSTPROCESS_TASK, RECONCILE_TASK, app, get_distributed_settings


@app.task(name=RECONCILE_TASK, acks_late=True, ignore_result=True)
def reconcile_task() -> dict[str, Any]:
    report = reconcile_once(db.get_engine(), grace_seconds=get_distributed_settings().postprocess_grace_seconds)
    return {"released": report.released, "finalized": report.finalized, "postprocess_sent": report.postprocess_sent}


@app.task(name=POSTPROCESS_TASK, acks_late=True, ignore_result=True)
def postprocess_task(run_id: int) -> bool:
    return postprocess_once(db.get_engine(), run_id)
