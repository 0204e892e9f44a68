"""Small multiples drawn in one matplotlib Axes whose data coordinates are inches (y down).

A figure with fifteen real Axes spends most of its time on per-Axes machinery (spines, tick objects,
layout); drawing fifteen panels as boxes in one Axes with line and point collections is 2-3 times
faster and looks the same. `Canvas` is the page, `Panel` a box in it with its own data limits."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from accord.extras import needs_extra

with needs_extra("report"):                     # optional: matplotlib draws the report's figures
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

DPI = 100
FRAME = "#9a9a9a"
GRID = "#ececec"


class Canvas:
    def __init__(self, width: float, height: float) -> None:
        self.width, self.height = width, height
        self.fig = Figure(figsize=(width, height))
        self.ax = self.fig.add_axes((0.0, 0.0, 1.0, 1.0))
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(height, 0)
        self.ax.axis("off")
        # line segments and points are batched by style and drawn as one collection each at the end
        self._lines: dict[tuple[str, float, str], list[np.ndarray]] = {}
        self._points: dict[tuple[str, float, float, str], list[np.ndarray]] = {}

    def lines(self, segments: np.ndarray, color: str, linewidth: float = 0.8, linestyle: str = "-") -> None:
        """Segments (k x 2 x 2, inches) in one style."""
        if len(segments):
            self._lines.setdefault((color, linewidth, linestyle), []).append(np.asarray(segments, dtype=float))

    def dots(self, xy: np.ndarray, color: str, size: float, alpha: float = 1.0, edgecolor: str = "none") -> None:
        if len(xy):
            self._points.setdefault((color, size, alpha, edgecolor), []).append(np.asarray(xy, dtype=float))

    def _flush(self) -> None:
        for (color, linewidth, linestyle), parts in self._lines.items():
            self.ax.add_collection(LineCollection(np.concatenate(parts),  # type: ignore[arg-type]  # (n, 2, 2): n segments
                                                  colors=color, linewidths=linewidth,
                                                  linestyles=linestyle))
        for (color, size, alpha, edgecolor), parts in self._points.items():
            xy = np.concatenate(parts)
            self.ax.scatter(xy[:, 0], xy[:, 1], s=size, color=color, alpha=alpha, edgecolors=edgecolor,
                            linewidths=0.3, zorder=3)
        self._lines.clear()
        self._points.clear()

    def text(self, x: float, y: float, s: str, **kwargs: Any) -> None:
        self.ax.text(x, y, s, **kwargs)

    def panel(self, x0: float, y0: float, w: float, h: float, xlim: tuple[float, float],
              ylim: tuple[float, float]) -> Panel:
        """A box with its top-left corner at (x0, y0) inches; ylim = (value at the bottom, value at the top)."""
        return Panel(self, x0, y0, w, h, xlim, ylim)

    def png(self) -> str:
        self._flush()
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
        return compact_png(buf.getvalue())


PNG_COLORS = 64  # the plots use a few flat colours: a 64-colour palette keeps them sharp at a third the size


def compact_png(raw: bytes) -> str:
    """A PNG reduced to a ``PNG_COLORS`` palette and optimised, as base64 text (a 1,500-item report stays under
    1 MB)."""
    from PIL import Image  # Pillow comes with matplotlib, the report's optional plotting dependency

    with Image.open(io.BytesIO(raw)) as image:
        small = io.BytesIO()
        # octree keeps rare colours (a thin red line among a thousand blue dots), which median cut drops
        image.convert("RGB").quantize(colors=PNG_COLORS, method=Image.Quantize.FASTOCTREE).save(
            small, format="PNG", optimize=True)
    return base64.b64encode(small.getvalue()).decode()


@dataclass
class Panel:
    canvas: Canvas
    x0: float
    y0: float
    w: float
    h: float
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def X(self, v: float | np.ndarray) -> np.ndarray:
        lo, hi = self.xlim
        return self.x0 + (np.asarray(v, dtype=float) - lo) / (hi - lo) * self.w

    def Y(self, v: float | np.ndarray) -> np.ndarray:
        bottom, top = self.ylim
        return self.y0 + (top - np.asarray(v, dtype=float)) / (top - bottom) * self.h

    @property
    def ax(self) -> Axes:
        return self.canvas.ax

    def frame(self) -> None:
        x0, y0, x1, y1 = self.x0, self.y0, self.x0 + self.w, self.y0 + self.h
        self.canvas.lines(np.array([[(x0, y0), (x1, y0)], [(x1, y0), (x1, y1)], [(x1, y1), (x0, y1)],
                                    [(x0, y1), (x0, y0)]]), FRAME, 0.8)

    def vlines(self, values: Sequence[float], color: str = GRID, linewidth: float = 0.8,
               linestyle: str = "-") -> None:
        xs = np.array([float(self.X(v)) for v in values if self.xlim[0] <= v <= self.xlim[1]])
        if xs.size:
            top, bottom = np.full_like(xs, self.y0), np.full_like(xs, self.y0 + self.h)
            self.canvas.lines(np.stack([np.column_stack([xs, top]), np.column_stack([xs, bottom])], axis=1),
                              color, linewidth, linestyle)

    def hlines(self, values: Sequence[float], color: str = GRID, linewidth: float = 0.8) -> None:
        lo, hi = sorted(self.ylim)
        ys = np.array([float(self.Y(v)) for v in values if lo <= v <= hi])
        if ys.size:
            left, right = np.full_like(ys, self.x0), np.full_like(ys, self.x0 + self.w)
            self.canvas.lines(np.stack([np.column_stack([left, ys]), np.column_stack([right, ys])], axis=1),
                              color, linewidth)

    def segments(self, x1: np.ndarray, x2: np.ndarray, y1: np.ndarray, y2: np.ndarray, color: str,
                 linewidth: float = 1.6) -> None:
        if len(x1):
            segs = np.stack([np.column_stack([self.X(x1), self.Y(y1)]), np.column_stack([self.X(x2), self.Y(y2)])],
                            axis=1)
            self.canvas.lines(segs, color, linewidth)

    def points(self, x: np.ndarray, y: np.ndarray, color: str, size: float = 22, alpha: float = 1.0,
               edgecolor: str = "none") -> None:
        if len(x):
            self.canvas.dots(np.column_stack([self.X(x), self.Y(y)]), color, size, alpha, edgecolor)

    def xticks(self, values: Sequence[float], labels: Sequence[str] | None = None, fontsize: float = 8) -> None:
        labels = labels if labels is not None else [f"{v:g}" for v in values]
        bottom = self.y0 + self.h
        xs = np.array([float(self.X(v)) for v in values])
        self.canvas.lines(np.stack([np.column_stack([xs, np.full_like(xs, bottom)]),
                                    np.column_stack([xs, np.full_like(xs, bottom + 0.04)])], axis=1), FRAME, 0.8)
        for x, label in zip(xs, labels):
            self.ax.text(x, bottom + 0.06, label, ha="center", va="top", fontsize=fontsize)

    def yticks(self, values: Sequence[float], labels: Sequence[str], fontsize: float = 8, marks: bool = True) -> None:
        ys = np.array([float(self.Y(v)) for v in values])
        if marks:
            self.canvas.lines(np.stack([np.column_stack([np.full_like(ys, self.x0 - 0.04), ys]),
                                        np.column_stack([np.full_like(ys, self.x0), ys])], axis=1), FRAME, 0.8)
        for y, label in zip(ys, labels):
            self.ax.text(self.x0 - 0.07, y, label, ha="right", va="center", fontsize=fontsize)

    def title(self, text: str, fontsize: float = 9) -> None:
        self.ax.text(self.x0 + self.w / 2, self.y0 - 0.06, text, ha="center", va="bottom", fontsize=fontsize)

    def xlabel(self, text: str, fontsize: float = 8) -> None:
        self.ax.text(self.x0 + self.w / 2, self.y0 + self.h + 0.22, text, ha="center", va="top", fontsize=fontsize)

    def ylabel(self, text: str, fontsize: float = 8) -> None:
        self.ax.text(self.x0 - 0.36, self.y0 + self.h / 2, text, ha="center", va="bottom", rotation=90,
                     fontsize=fontsize, rotation_mode="anchor")

    def note(self, x: float, y: float, text: str, **kwargs: Any) -> None:
        """Text at data coordinates (x, y) of the panel."""
        self.ax.text(float(self.X(x)), float(self.Y(y)), text, **kwargs)
