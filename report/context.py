"""What every report section builder gets: the metric index, the run summary, the run's frames and the
dict the section adds its plots to; and ``section``, which declares a builder."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from accord.report.metrics import MetricIndex
from accord.report.views import SectionView
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


SectionBuilder = Callable[[ReportContext], SectionView | None]
SectionFill = Callable[[ReportContext, SectionView], SectionView | None]


def section(section_id: str, title: str, intro: str | Callable[[ReportContext], str], *,
            needs: Sequence[str] = ()) -> Callable[[SectionFill], SectionBuilder]:
    """Declare a report section: its id, title and fixed intro (how to read it; a function of the context when
    it depends on the run), and the metrics it needs: without any of them the run has no such section (None).
    The decorated ``fill(ctx, sec)`` adds tables, plots and readings to the new section and returns it, or
    None when the run has nothing to show in it."""
    def declare(fill: SectionFill) -> SectionBuilder:
        @functools.wraps(fill)
        def build(ctx: ReportContext) -> SectionView | None:
            if needs and not any(ctx.index.has(name) for name in needs):
                return None
            return fill(ctx, SectionView(section_id, title, intro if isinstance(intro, str) else intro(ctx)))
        return build
    return declare
