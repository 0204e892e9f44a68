"""``accord metrics``: the metric catalogue (every metric a run can store, what it measures, its scale and
which way is better)."""

from __future__ import annotations

import json
import sys

import typer
from rich.table import Table

from accord.analysis.catalogue import MetricName, Section
from accord.cli.app import console, fail


def catalogue_table(section: Section | None = None) -> Table:
    t = Table(title="metrics" + (f": {section.value}" if section else ""))
    for col in ("name", "what it measures", "scale", "better", "section"):
        t.add_column(col, overflow="fold")
    for m in MetricName:
        if section is None or m.section is section:
            better = m.direction.value.removesuffix(" is better")
            t.add_row(m.value, m.label, m.scale.value, better, m.section.value)
    return t


def register(app: typer.Typer) -> None:
    @app.command("metrics")
    def metrics_cmd(
        section: str | None = typer.Option(None, "--section",
                                           help="Only the metrics of one report section (e.g. 'personas')."),
        fmt: str = typer.Option("text", "--format", help="text or json"),
    ) -> None:
        """List the metrics a run can store: name, what it measures, scale, which way is better, section."""
        chosen = None
        if section is not None:
            chosen = next((s for s in Section if section in (s.value, s.name.lower())), None)
            if chosen is None:
                known = ", ".join(repr(s.value) for s in Section)
                fail(f"--section: expected one of {known}, got {section!r}")
        if fmt not in ("text", "json"):
            fail(f"--format: expected text or json, got {fmt!r}")
        if fmt == "json":
            rows = [{"name": m.value, "label": m.label, "scale": m.scale.value,
                     "direction": m.direction.value, "section": m.section.value}
                    for m in MetricName if chosen is None or m.section is chosen]
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return
        console.print(catalogue_table(chosen))
