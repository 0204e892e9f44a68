"""Small charts drawn on the server as inline SVG for the dashboard: bars of counts, and means with their
intervals. Only geometry and escaped text: no script, no style attribute (colours come from CSS classes of
the dashboard's stylesheet), so they pass the strict Content-Security-Policy and read without JavaScript
(every chart has a table beside it with the same numbers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


def _n(x: float) -> str:
    return f"{x:.1f}"


def _short(label: str, limit: int = 18) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bar_chart(counts: dict[str, int], title: str, *, width: int = 360, height: int = 150,
              css: str = "bars") -> Markup:
    """Vertical bars, one per key (in the given order), with the count above each bar."""
    if not counts:
        return Markup("")
    keys = list(counts)
    top = max(max(counts.values()), 1)
    left, right, upper, lower = 8, 8, 18, 30
    slot = (width - left - right) / len(keys)
    bar = max(min(slot * 0.7, 48), 2)
    parts = [(f'<svg class="chart {escape(css)}" role="img" viewBox="0 0 {width} {height}" width="{width}" '
              f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'),
             f'<line class="axis" x1="{left}" y1="{height - lower}" x2="{width - right}" y2="{height - lower}"/>']
    for i, key in enumerate(keys):
        value = counts[key]
        h = (height - upper - lower) * value / top
        x = left + slot * i + (slot - bar) / 2
        y = height - lower - h
        cx = x + bar / 2
        parts.append(f'<rect class="bar" x="{_n(x)}" y="{_n(y)}" width="{_n(bar)}" height="{_n(h)}">'
                     f'<title>{escape(key)}: {value}</title></rect>')
        parts.append(f'<text class="count" x="{_n(cx)}" y="{_n(y - 4)}" text-anchor="middle">{value}</text>')
        if len(keys) <= 24:
            parts.append(f'<text class="label" x="{_n(cx)}" y="{height - lower + 14}" text-anchor="middle">'
                         f'{escape(_short(key, max(3, int(slot / 6))))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Interval:
    label: str
    mean: float | None
    low: float | None
    high: float | None


def interval_chart(rows: Sequence[Interval], title: str, *, lo: float | None = None, hi: float | None = None,
                   width: int = 520, row_height: int = 22) -> Markup:
    """One row per group: the mean as a dot, its interval as a line, on a shared horizontal axis."""
    finite = [v for r in rows for v in (r.mean, r.low, r.high) if v is not None and math.isfinite(v)]
    if not rows or not finite:
        return Markup("")
    lo = min(finite) if lo is None else min(lo, min(finite))
    hi = max(finite) if hi is None else max(hi, max(finite))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    label_w, right, upper, lower = 150, 40, 8, 24
    height = upper + lower + row_height * len(rows)
    span = width - label_w - right

    def x(v: float) -> float:
        return label_w + span * (v - lo) / (hi - lo)

    parts = [(f'<svg class="chart intervals" role="img" viewBox="0 0 {width} {height}" width="{width}" '
              f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>')]
    base = height - lower
    parts.append(f'<line class="axis" x1="{label_w}" y1="{base}" x2="{width - right}" y2="{base}"/>')
    for tick in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text class="label" x="{_n(x(tick))}" y="{base + 15}" text-anchor="middle">{tick:.2f}</text>')
    for i, r in enumerate(rows):
        y = upper + row_height * i + row_height / 2
        parts.append(f'<text class="label" x="{label_w - 6}" y="{_n(y + 4)}" text-anchor="end">'
                     f'{escape(_short(r.label, 24))}</text>')
        if r.low is not None and r.high is not None and math.isfinite(r.low) and math.isfinite(r.high):
            parts.append(f'<line class="whisker" x1="{_n(x(r.low))}" y1="{_n(y)}" x2="{_n(x(r.high))}" '
                         f'y2="{_n(y)}"/>')
        if r.mean is not None and math.isfinite(r.mean):
            parts.append(f'<circle class="dot" cx="{_n(x(r.mean))}" cy="{_n(y)}" r="4"><title>'
                         f'{escape(r.label)}: {r.mean:.3f}</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))
