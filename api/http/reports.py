"""A finished run's report for the API and the dashboard: ``build_report_data`` once per post-processing of
the run (kept in a small cache, since drawing the plots takes a while), ``render_html`` for the full page."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from accord.report.build import (
    ALIGNMENT,
    BASELINE_MEDIAN,
    GROUP_R,
    PERCENTILE,
    ReportData,
    build_report_data,
    metric_rows,
    render_html,
)
from accord.models.schema import Run
from accord.scheduler import run_service
from sqlmodel import Session
from sqlalchemy.engine import Engine


class ReportCache:
    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._data: OrderedDict[tuple[int, datetime | None], tuple[ReportData, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[int, threading.Lock] = {}

    def get(self, engine: Engine, run: Run) -> tuple[ReportData, str]:
        """The run's report data and HTML; post-processes the run first if that never happened."""
        assert run.id is not None
        with self._lock:
            build_lock = self._building.setdefault(run.id, threading.Lock())
        with build_lock:
            postprocessed_at = run.postprocessed_at
            if postprocessed_at is None:
                run_service.analyse_once(engine, run.id)

                with Session(engine) as session:
                    fresh = session.get(Run, run.id)
                    postprocessed_at = fresh.postprocessed_at if fresh else None
            key = (run.id, postprocessed_at)
            with self._lock:
                hit = self._data.get(key)
                if hit is not None:
                    self._data.move_to_end(key)
                    return hit
            data = build_report_data(engine, run.id)
            html = render_html(data)
            with self._lock:
                self._data[key] = (data, html)
                while len(self._data) > self.size:
                    self._data.popitem(last=False)
            return data, html


def report_sections(data: ReportData) -> dict[str, Any]:
    """The report's tables, for the dashboard's run page."""
    m = data.metrics
    return {
        "alignment": metric_rows(m, ALIGNMENT + [PERCENTILE], human_only=False),
        "human": metric_rows(m, [BASELINE_MEDIAN], human_only=True),
        "groups": metric_rows(m, [GROUP_R], slice_=None),
    }
