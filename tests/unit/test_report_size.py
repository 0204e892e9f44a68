"""The report stays small (finding 7): palette PNGs that keep rare colours, long tables cut on the page with
a pointer to the JSON."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from accord.report.canvas import compact_png
from accord.report.views import HTML_MAX_ROWS, Cell, TableView
from PIL import Image


def test_compact_png_is_a_small_palette_image_that_keeps_a_thin_red_line() -> None:
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.scatter(rng.random(1500), rng.random(1500), s=14, color="#3b6ea8", alpha=0.6, edgecolor="white")
    ax.plot([0, 1], [0, 1], color="#c0392b", lw=1.3)
    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=100, facecolor="white")
    plt.close(fig)
    small = base64.b64decode(compact_png(raw.getvalue()))
    assert small[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(small))
    assert image.mode == "P" and len(small) < 0.6 * len(raw.getvalue())
    rgb = np.asarray(image.convert("RGB")).astype(int)
    red = (abs(rgb[..., 0] - 192) < 30) & (abs(rgb[..., 1] - 57) < 30) & (abs(rgb[..., 2] - 43) < 30)
    assert red.sum() > 50


def test_long_tables_are_cut_on_the_page() -> None:
    rows = [[Cell(str(k))] for k in range(HTML_MAX_ROWS + 25)]
    table = TableView("t", "many", ["k"], rows)
    assert len(table.html_rows) == HTML_MAX_ROWS and table.hidden_rows == 25
    assert TableView("t", "few", ["k"], rows[:3]).hidden_rows == 0
    assert len(TableView("t", "more", ["k"], rows, max_html_rows=HTML_MAX_ROWS + 10).html_rows) == HTML_MAX_ROWS + 10
