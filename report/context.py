"""What every report section builder gets: the metric index, the run summary, the run's frames and the
dict the section adds its plots to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accord.report.metrics import MetricIndex
from accord.models.run_frames import RunFrames


@dataclass
class ReportContext:
    index: MetricIndex
    run: dict[str, Any]
    frames: RunFrames
    plots: dict[str, str] = field(default_factory=dict)   # name -> base64 PNG

    def add_plot(self, name: str, png: str | None) -> bool:
        if png:
            self.plots[name] = png
            return True
        return False
