"""The run report's figures (matplotlib, Agg backend), each returned as a base64-encoded PNG.

Every function takes plain data (lists of small dataclasses or the run's LLM/human frames) and
returns None when there is nothing to draw. Labels that come from users (model, template and group
names) pass through `plain`, so a '$' in a name never turns into matplotlib math."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from accord.extras import needs_extra
from accord.report.canvas import Canvas, compact_png
from accord.report.format import is_number, num, plain

with needs_extra("report"):                     # optional: matplotlib draws the report's figures
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

DPI = 100
BLUE = "#3b6ea8"
RED = "#c0392b"
GREY = "#8a8a8a"
OUTCOME_COLORS = {"ok": "#4c9a5a", "refused": "#e0a030", "unparseable": RED, "truncated": "#8e44ad",
                  "empty": "#7f8c8d", "request failed": "#34495e", "cancelled": "#bdc3c7",
                  "pending": "#ecf0f1"}


def png(fig: Figure) -> str:
    """The figure as base64 PNG text (the figure is closed), with a small palette (see `compact_png`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    plt.close(fig)
    return compact_png(buf.getvalue())


def rater_colors(n: int) -> list[str]:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [matplotlib.colors.to_hex(cmap(i % cmap.N)) for i in range(n)]


def grid(nrows: int, ncols: int, panel_w: float, panel_h: float, *, left: float = 0.7, right: float = 0.25,
         top: float = 0.8, bottom: float = 0.55, wgap: float = 0.35, hgap: float = 0.95,
         sharey: bool = False) -> tuple[Figure, np.ndarray]:
    """A figure of nrows x ncols panels of a fixed size in inches, with fixed margins (no layout engine:
    constrained/tight layout would draw every figure twice)."""
    width = left + ncols * panel_w + (ncols - 1) * wgap + right
    height = top + nrows * panel_h + (nrows - 1) * hgap + bottom
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, sharey=sharey)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=wgap / panel_w, hspace=hgap / panel_h)
    return fig, axes


def text_width(labels: Sequence[str], fontsize: float = 8) -> float:
    """Rough width in inches of the longest label."""
    longest = max((len(str(label)) for label in labels), default=0)
    return 0.0075 * fontsize * longest + 0.15




# ------------------------------------------------------------------------------------------------ outcomes


def outcomes_chart(llm: pd.DataFrame) -> str | None:
    """Stacked bars: per model x template, the share of requests per outcome."""
    if llm.empty:
        return None
    df = llm[["model", "template", "status", "parse_status"]].copy()
    df["outcome"] = np.where(df["status"] == "done", df["parse_status"].fillna("ok"),
                             np.where(df["status"] == "failed", "request failed", df["status"].astype(str)))
    df["rater"] = [f"{m} · {t}" for m, t in zip(df["model"], df["template"])]
    counts = df.groupby(["rater", "outcome"]).size().unstack(fill_value=0)
    order = [o for o in OUTCOME_COLORS if o in counts.columns] + [o for o in counts.columns if o not in OUTCOME_COLORS]
    counts = counts[order]
    shares = counts.div(counts.sum(axis=1), axis=0)
    left_margin = text_width([plain(r) for r in shares.index], 9) + 0.2
    fig, axes = grid(1, 1, 9.6 - left_margin, 0.36 * len(shares) + 0.2, left=left_margin, top=0.5, bottom=1.0)
    ax = axes[0, 0]
    left = np.zeros(len(shares))
    y = np.arange(len(shares))
    for outcome in shares.columns:
        ax.barh(y, shares[outcome], left=left, label=f"{outcome} ({int(counts[outcome].sum()):,})",
                color=OUTCOME_COLORS.get(outcome, GREY), height=0.7)
        left += shares[outcome].to_numpy()
    ax.set_yticks(y, [plain(r) for r in shares.index], fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(len(shares) - 0.5, -0.5)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0%", "25%", "50%", "75%", "100%"], fontsize=8)
    ax.set_xlabel("share of this rater's requests", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.55 / (0.36 * len(shares) + 0.2)),
              ncol=min(6, len(shares.columns)), frameon=False)
    ax.set_title("What came back: answer outcomes per model · template", fontsize=11)
    return png(fig)


# ------------------------------------------------------------------------------------------------ scatter


@dataclass
class ScatterPanel:
    title: str
    human: np.ndarray  # per item: mean human rating
    llm: np.ndarray    # per item: the rater's score
    r: float | None
    ci: tuple[float | None, float | None]


def _ticks(values: np.ndarray) -> list[float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    if 0.0 <= lo and hi <= 1.0:
        return [0.0, 0.25, 0.5, 0.75, 1.0]
    return [float(v) for v in matplotlib.ticker.MaxNLocator(4).tick_values(lo, hi)]


def _limits(ticks: list[float], values: np.ndarray) -> tuple[float, float]:
    lo = min(ticks[0], float(np.min(values)))
    hi = max(ticks[-1], float(np.max(values)))
    pad = 0.04 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def scatter_panels(panels: Sequence[ScatterPanel], ncols: int = 3) -> str | None:
    """LLM score vs mean human rating per item, one panel per rater, with a least-squares line."""
    panels = [p for p in panels if len(p.human)]
    if not panels:
        return None
    ncols = min(ncols, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    pw, ph, left, gap_x, gap_y, top = 2.7, 2.3, 0.75, 0.75, 1.05, 1.0
    canvas = Canvas(left + ncols * pw + (ncols - 1) * gap_x + 0.3, top + nrows * (ph + gap_y) - 0.2)
    canvas.text(canvas.width / 2, 0.15, "LLM score against the mean human rating, one dot per item "
                "(red: least-squares line)", ha="center", va="top", fontsize=11)
    for k, p in enumerate(panels):
        c, row = k % ncols, k // ncols
        xt, yt = _ticks(p.human), _ticks(p.llm)
        panel = canvas.panel(left + c * (pw + gap_x), top + row * (ph + gap_y), pw, ph,
                             _limits(xt, p.human), _limits(yt, p.llm))
        panel.vlines(xt)
        panel.hlines(yt)
        panel.frame()
        panel.points(p.human, p.llm, BLUE, size=14, alpha=0.6, edgecolor="white")
        if p.r is not None and len(p.human) > 2 and np.std(p.human) > 0 and np.std(p.llm) > 0:
            slope, intercept = np.polyfit(p.human, p.llm, 1)
            xs = np.array([np.min(p.human), np.max(p.human)])
            panel.segments(xs[:1], xs[1:], slope * xs[:1] + intercept, slope * xs[1:] + intercept, RED, 1.3)
            lo, hi = p.ci
            ci = f" [{num(lo)}, {num(hi)}]" if is_number(lo) and is_number(hi) else ""
            sub = f"r = {num(p.r)}{ci}, {len(p.human)} items"
        else:
            sub = f"no correlation (constant scores), {len(p.human)} items"
        panel.title(f"{plain(p.title)}\n{sub}")
        panel.xticks(xt, [f"{v:g}" for v in xt])
        panel.yticks(yt, [f"{v:g}" for v in yt])
        panel.xlabel("mean human rating")
        panel.ylabel("LLM score")
    return canvas.png()


# ------------------------------------------------------------------------------------------------ baseline


@dataclass
class RaterMark:
    label: str
    r: float
    percentile: float | None  # 0-100: share of annotators with a lower r


def histogram_bins(values: np.ndarray) -> np.ndarray:
    """Bin edges for the annotators' r: numpy's 'auto' rule, kept between 8 and 40 bins."""
    edges = np.histogram_bin_edges(values, bins="auto")
    if not 9 <= edges.size <= 41:
        edges = np.histogram_bin_edges(values, bins=int(np.clip(edges.size - 1, 8, 40)))
    return edges


def baseline_histogram(values: np.ndarray | None, edges: Sequence[float], counts: Sequence[int],
                       median: float | None, marks: Sequence[RaterMark], title: str) -> str | None:
    """Histogram of the annotators' leave-one-out r with each LLM rater's r as a numbered vertical line.

    ``values`` are the annotators' r (binned here); without them the stored ``edges``/``counts`` are used."""
    if values is not None and np.size(values):
        values = np.asarray(values, dtype=float)
        edges_arr = histogram_bins(values)
        counts_arr, _ = np.histogram(values, bins=edges_arr)
    else:
        edges_arr, counts_arr = np.asarray(edges, dtype=float), np.asarray(counts, dtype=float)
    hist_counts, hist_edges = np.asarray(counts_arr, dtype=float), np.asarray(edges_arr, dtype=float)
    if hist_counts.size == 0 or hist_counts.sum() == 0 or hist_edges.size != hist_counts.size + 1:
        return None
    filled = np.flatnonzero(hist_counts > 0)
    shown = [hist_edges[filled[0]], hist_edges[filled[-1] + 1]] + [m.r for m in marks] + ([median] if is_number(median) else [])
    lo, hi = min(shown), max(shown)
    pad = 0.06 * max(hi - lo, 0.2)
    xlim = (max(-1.0, lo - pad), min(1.0, hi + pad))
    legend_cols = 2 if len(marks) > 6 else 1
    legend_rows = int(np.ceil((len(marks) + 2) / legend_cols))
    legend_h = 0.19 * legend_rows + 0.3
    fig, axes = grid(1, 1, 8.9, 3.4, left=0.75, top=0.45, bottom=0.6 + legend_h)
    ax = axes[0, 0]
    ax.bar(hist_edges[:-1], hist_counts, width=np.diff(hist_edges), align="edge", color="#c9d7ea", edgecolor="white")
    top = hist_counts.max()
    handles: list[Artist] = [Rectangle((0, 0), 1, 1, color="#c9d7ea")]
    labels = [f"annotators' r with the others ({int(hist_counts.sum())} annotators)"]
    if is_number(median):
        ax.axvline(median, color="black", linestyle="--", linewidth=1.2)
        handles.append(Line2D([], [], color="black", linestyle="--"))
        labels.append(f"median annotator (r = {num(median)})")
    colors = rater_colors(len(marks))
    placed: list[tuple[float, int]] = []
    for k, (mark, color) in enumerate(zip(marks, colors), start=1):
        ax.axvline(mark.r, color=color, linewidth=2)
        level = 0
        while any(abs(mark.r - x) < 0.035 * (xlim[1] - xlim[0]) and lv == level for x, lv in placed):
            level += 1
        placed.append((mark.r, level))
        ax.text(mark.r, top * (1.05 + 0.12 * level), str(k), ha="center", va="bottom", fontsize=8,
                color="white", fontweight="bold",
                bbox={"boxstyle": "circle,pad=0.25", "facecolor": color, "edgecolor": "none"})
        pct = f", better than {mark.percentile:.0f}% of annotators" if is_number(mark.percentile) else ""
        handles.append(Line2D([], [], color=color, linewidth=2))
        labels.append(f"{k}: {plain(mark.label)} (r = {num(mark.r)}{pct})")
    max_level = max((lv for _, lv in placed), default=0)
    ax.set_ylim(0, top * (1.25 + 0.12 * max_level))
    ax.set_xlim(*xlim)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(8, steps=[1, 2, 2.5, 5, 10]))
    ax.set_xlabel("Pearson r with the mean rating of the other annotators (an LLM rater: with the mean of all)",
                  fontsize=9)
    ax.set_ylabel("annotators", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.set_title(plain(title), fontsize=11)
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.5 / 3.4),
              frameon=False, ncol=legend_cols)
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


# ------------------------------------------------------------------------------------------------ forest


@dataclass
class ForestRow:
    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    significant: bool = False


@dataclass
class ForestPanel:
    title: str
    rows: list[ForestRow]
    reference: float | None = None  # dashed vertical line, e.g. the rater's r with all annotators
    subtitle: str = ""


def _tick_label(value: float) -> str:
    return f"{value:g}".replace("-", "\u2212")


def _r_range(panels: Sequence[ForestPanel]) -> tuple[tuple[float, float], list[float]]:
    """One x range for every panel (so panels compare), fitted to the estimates, intervals and reference
    lines; zero is kept in view when the values come near it."""
    values = [v for p in panels for r in p.rows for v in (r.value, r.low, r.high) if is_number(v)]
    values += [float(p.reference) for p in panels if is_number(p.reference)]
    if not values:
        return (-1.04, 1.04), [-1.0, 0.0, 1.0]
    lo, hi = max(-1.0, min(values)), min(1.0, max(values))
    if lo <= 0.25:
        lo = min(lo, 0.0)
    span = max(hi - lo, 0.1)
    lo, hi = max(-1.04, lo - 0.1 * span), min(1.04, hi + 0.1 * span)
    ticks = [float(t) for t in matplotlib.ticker.MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi) if lo <= t <= hi]
    return (lo, hi), [round(t, 10) for t in ticks]


def forest_plot(panels: Sequence[ForestPanel], title: str, xlabel: str, reference_label: str,
                significance_label: str | None = None, ncols: int = 3) -> str | None:
    """Forest plot: one panel per rater, one row per group (the same rows in every panel), point
    estimate with its interval on one r scale shared by the panels; significant rows in red with a star."""
    panels = [p for p in panels if p.rows]
    if not panels:
        return None
    labels = [plain(row.label) for row in panels[0].rows]
    n_rows = len(labels)
    ncols = min(ncols, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    row_h = 0.22
    pw, ph = 2.9, row_h * n_rows + 0.12
    left, gap_x, gap_y, top = text_width(labels) + 0.15, 0.3, 1.0, 1.3
    canvas = Canvas(left + ncols * pw + (ncols - 1) * gap_x + 0.25, top + nrows * (ph + gap_y) - 0.25)
    canvas.text(canvas.width / 2, 0.12, plain(title), ha="center", va="top", fontsize=11)
    y = np.arange(n_rows, dtype=float)
    xlim, ticks = _r_range(panels)
    for k, panel_data in enumerate(panels):
        c, row = k % ncols, k // ncols
        panel = canvas.panel(left + c * (pw + gap_x), top + row * (ph + gap_y), pw, ph, xlim,
                             (n_rows - 0.45, -0.55))
        panel.vlines(ticks)
        panel.vlines([0.0], color="#bbbbbb")
        if is_number(panel_data.reference):
            panel.vlines([float(panel_data.reference)], color="#333333", linewidth=1.0, linestyle="--")
        panel.frame()
        value = np.array([r.value if is_number(r.value) else np.nan for r in panel_data.rows], dtype=float)
        low = np.array([r.low if is_number(r.low) else np.nan for r in panel_data.rows], dtype=float)
        high = np.array([r.high if is_number(r.high) else np.nan for r in panel_data.rows], dtype=float)
        sig = np.array([r.significant for r in panel_data.rows], dtype=bool)
        has_ci = np.isfinite(low) & np.isfinite(high)
        defined = np.isfinite(value)
        for mask, color in ((has_ci & ~sig, BLUE), (has_ci & sig, RED)):
            panel.segments(np.clip(low[mask], *xlim), np.clip(high[mask], *xlim), y[mask], y[mask], color)
        for mask, color in ((defined & ~sig, BLUE), (defined & sig, RED)):
            panel.points(value[mask], y[mask], color)
        span = xlim[1] - xlim[0]
        for yi in np.flatnonzero(sig & defined):
            right = high[yi] if np.isfinite(high[yi]) else value[yi]
            panel.note(min(xlim[1] - 0.04 * span, right + 0.02 * span), y[yi], "*", color=RED, fontsize=12,
                       va="center", fontweight="bold")
        for yi in np.flatnonzero(~defined):
            panel.note(xlim[0] + 0.02 * span, y[yi], "undefined", fontsize=7, color=GREY, va="center")
        panel.title(plain(panel_data.title) + (f"\n{plain(panel_data.subtitle)}" if panel_data.subtitle else ""))
        panel.xticks(ticks, [_tick_label(t) for t in ticks])
        if c == 0:
            panel.yticks(list(y), labels)
        if row == nrows - 1 or k + ncols >= len(panels):
            panel.xlabel(xlabel)
    legend: list[tuple[str, str, Literal["-", "--"], str]] = [(BLUE, "o", "-", "estimate with 95% CI")]
    if significance_label:
        legend.append((RED, "o", "-", "* " + significance_label))
    legend.append(("#333333", "", "--", reference_label))
    handles = [Line2D([], [], color=color, marker=marker, linestyle=style, linewidth=1.6)
               for color, marker, style, _ in legend]
    canvas.fig.legend(handles, [lbl for *_, lbl in legend], loc="upper center",
                      bbox_to_anchor=(0.5, 1 - 0.42 / canvas.height), ncol=len(handles), fontsize=8, frameon=False)
    return canvas.png()


# ------------------------------------------------------------------------------------------------ GAI


@dataclass
class GaiRow:
    label: str
    gai: float | None
    null_low: float | None
    null_high: float | None
    significant: bool


def gai_chart(rows: Sequence[GaiRow]) -> str | None:
    """GAI per group against the band random groups of the same size give (2.5%-97.5% of the null)."""
    rows = list(rows)
    if not any(is_number(r.gai) for r in rows):
        return None
    labels = [plain(r.label) for r in rows]
    label_w = text_width(labels, 8) + 0.1
    fig, axes = grid(1, 1, 9.4 - label_w, 0.22 * len(rows) + 0.3, left=label_w, top=0.85, bottom=0.55)
    ax = axes[0, 0]
    y = np.arange(len(rows))
    gai = np.array([r.gai if is_number(r.gai) else np.nan for r in rows], dtype=float)
    lo = np.array([r.null_low if is_number(r.null_low) else np.nan for r in rows], dtype=float)
    hi = np.array([r.null_high if is_number(r.null_high) else np.nan for r in rows], dtype=float)
    sig = np.array([r.significant for r in rows], dtype=bool)
    band = np.isfinite(lo) & np.isfinite(hi)
    ax.hlines(y[band], lo[band], hi[band], color="#d5d5d5", linewidth=7)
    for mask, color in ((np.isfinite(gai) & ~sig, BLUE), (np.isfinite(gai) & sig, RED)):
        if mask.any():
            ax.scatter(gai[mask], y[mask], color=color, s=26, zorder=3)
    finite = np.concatenate([v[np.isfinite(v)] for v in (gai, lo, hi)] + [np.array([1.0])])
    span = max(float(finite.max() - finite.min()), 0.2)
    xmin, xmax = float(finite.min()) - 0.05 * span, float(finite.max()) + 0.08 * span
    for yi in y[sig & np.isfinite(gai)]:
        ax.text(gai[yi] + 0.025 * span, yi, "*", color=RED, fontsize=12, va="center", fontweight="bold")
    for yi in y[~np.isfinite(gai)]:
        ax.text(xmin + 0.01 * span, yi, "undefined", fontsize=7, color=GREY, va="center")
    ax.axvline(1, color="#333333", linestyle="--", linewidth=1)
    ax.set_xlim(xmin, xmax)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(6))
    ax.tick_params(labelsize=8)
    ax.set_xlabel("GAI = agreement within the group (IRR) / agreement with everyone else (XRR)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color=BLUE, marker="o", linestyle=""),
               Line2D([], [], color=RED, marker="o", linestyle=""),
               Line2D([], [], color="#d5d5d5", linewidth=7),
               Line2D([], [], color="#333333", linestyle="--")]
    height = fig.get_figheight()
    fig.legend(handles, ["GAI", "* differs from random groups (BH-adjusted p < 0.05)",
                         "95% of random groups of the same size", "GAI = 1"],
               fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.36 / height), ncol=4, frameon=False)
    fig.suptitle("Does a group see the items its own way? Group association index per annotator group",
                 fontsize=11, y=1 - 0.08 / height, va="top")
    return png(fig)
