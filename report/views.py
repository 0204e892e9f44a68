"""What the report page shows of a section: its tables (already formatted cells), plots and readings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accord.report.format import DASH, bracket, count, is_number, num, pvalue
from accord.analysis.results import MetricRecord

SIGNIFICANCE = 0.05
HTML_MAX_ROWS = 200  # longer tables are cut on the page (a 1,500-item report stays under 1 MB)


@dataclass
class Cell:
    text: str
    cls: str = ""      # CSS classes: "num", "sig", "warn", "muted"
    title: str = ""    # tooltip, e.g. why a value is undefined

    def to_json(self) -> str:
        return self.text


@dataclass
class TableView:
    id: str
    caption: str
    columns: list[str]
    rows: list[list[Cell]]
    empty: str = "nothing to show"
    collapsed: bool = False   # shown inside a <details> element
    max_html_rows: int = 0    # the page shows at most this many rows (0: HTML_MAX_ROWS); the JSON has them all

    @property
    def html_rows(self) -> list[list[Cell]]:
        return self.rows[: self.max_html_rows or HTML_MAX_ROWS]

    @property
    def hidden_rows(self) -> int:
        return max(0, len(self.rows) - len(self.html_rows))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "caption": self.caption, "columns": self.columns,
                "rows": [[c.text for c in row] for row in self.rows]}


@dataclass
class PlotView:
    name: str   # key in ReportData.plots
    alt: str


@dataclass
class PartView:
    """A titled part of a section (e.g. one attribute of the group analysis): readings next to their plot."""

    title: str
    readings: list[str] = field(default_factory=list)
    plots: list[PlotView] = field(default_factory=list)


@dataclass
class SectionView:
    id: str
    title: str
    intro: str                                  # how to read the section (fixed text)
    readings: list[str] = field(default_factory=list)   # generated from the numbers
    plots: list[PlotView] = field(default_factory=list)
    tables: list[TableView] = field(default_factory=list)
    parts: list[PartView] = field(default_factory=list)

    def all_readings(self) -> list[str]:
        return self.readings + [r for part in self.parts for r in part.readings]

    def all_plots(self) -> list[PlotView]:
        return self.plots + [p for part in self.parts for p in part.plots]


def text(value: Any, cls: str = "", title: str = "") -> Cell:
    return Cell(DASH if value is None or value == "" else str(value), cls, title)


def note(value: str) -> Cell:
    """A muted free-text cell; blank when there is nothing to say."""
    return Cell(value or "", "muted", value if len(value or "") > 80 else "")


def value_cell(row: MetricRecord | None, digits: int = 3, as_share: bool = False) -> Cell:
    """A metric's value; undefined values show a dash with the reason as tooltip."""
    if row is None:
        return Cell(DASH, "num muted", "not computed for this run")
    if row.value is None:
        return Cell(DASH, "num muted", row.short_reason)
    if as_share:
        return Cell(f"{100 * row.value:.1f}%", "num")
    return Cell(num(row.value, digits), "num")


def number_cell(x: Any, digits: int = 3) -> Cell:
    return Cell(num(x, digits), "num" if is_number(x) else "num muted")


def count_cell(x: Any) -> Cell:
    return Cell(count(x), "num" if is_number(x) else "num muted")


def ci_cell(row: MetricRecord | None, digits: int = 3) -> Cell:
    if row is None:
        return Cell("", "num")
    return Cell(bracket(row.ci_low, row.ci_high, digits), "num")


def p_cell(p: Any) -> Cell:
    return Cell(pvalue(p), "num" if is_number(p) else "num muted")


def mark_cell(p_adjusted: Any) -> Cell:
    """'*' when the BH-adjusted p-value is below 0.05."""
    if is_number(p_adjusted) and float(p_adjusted) < SIGNIFICANCE:
        return Cell("*", "sig", f"BH-adjusted p < {SIGNIFICANCE}")
    return Cell("")


def significant(p_adjusted: Any) -> bool:
    return is_number(p_adjusted) and float(p_adjusted) < SIGNIFICANCE
