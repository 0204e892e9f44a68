"""`accord describe DATASET`: a dataset's counts, human baseline and per-group ratings, without a run."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer
from rich.console import JustifyMethod
from rich.table import Table

from accord.analysis.describe import DescribeOptions
from accord.cli.app import chosen_project_id, console, fail, open_engine
from accord.cli.project_context import project_option
from accord.models.run_frames import DatasetFramesError
from accord.report.dataset_description import describe_dataset


def parse_bins(values: list[str] | None) -> dict[str, list[float] | int]:
    """``age=18,25,35`` (edges) or ``income=4`` (quantile bins) -> {attribute: edges | k}."""
    out: dict[str, list[float] | int] = {}
    for text in values or []:
        name, sep, spec = text.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ValueError(f"--bins: expected ATTRIBUTE=EDGES or ATTRIBUTE=K, as in age=18,25,35 or income=4; "
                             f"got {text!r}")
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"--bins: {text!r}: edges must be numbers") from None
        if len(numbers) == 1:
            if not numbers[0].is_integer() or not 2 <= numbers[0] <= 20:
                raise ValueError(f"--bins: {text!r}: a single number is a count of quantile bins (2..20)")
            out[name.strip()] = int(numbers[0])
        else:
            if any(b <= a for a, b in zip(numbers, numbers[1:])):
                raise ValueError(f"--bins: {text!r}: edges must increase")
            out[name.strip()] = numbers
    return out


def _num(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _p(x: Any) -> str:
    return "-" if x is None else (f"{x:.3f}" if x >= 0.001 else "<0.001")


def render_text(console: Any, name: str, dimension: str | None, data: dict[str, Any]) -> None:
    """The description as short lines and tables that fit 80 columns."""
    base = data["baseline"]
    r = base["annotator_loo_r"]
    alpha = base["krippendorff_alpha"]
    rpi = data["ratings_per_item"]
    console.print(f"dataset [bold]{name}[/], dimension {dimension or '-'}: {data['n_items']} items, "
                  f"{data['n_annotators']} annotators, {data['n_ratings']} ratings; ratings per item "
                  f"{rpi['min']}..{rpi['max']} (median {rpi['median']:g})", highlight=False)
    scale = data.get("scale")
    if scale:
        console.print(f"scale: {scale['min']:g}..{scale['max']:g} (from the {scale['source'].replace('_', ' ')})",
                      highlight=False)
    for what, info in (data.get("dropped_at_import") or {}).items():
        console.print(f"dropped at import: {info['count']} {what.replace('_', ' ')} ({info['policy']})",
                      highlight=False)
    shown = data.get("label_distribution") or data.get("value_distribution")
    if shown and len(shown) <= 12:
        dist = ", ".join(f"{k}: {v}" for k, v in shown.items())
        console.print(f"labels: {dist}; mean rating {_num(data['mean_rating'])}", highlight=False)
    else:
        console.print(f"mean rating {_num(data['mean_rating'])}", highlight=False)
    console.print(f"human baseline: median annotator r {_num(r['median'])} (IQR {_num(r['q25'])}..{_num(r['q75'])}, "
                  f"{r['n_annotators']} annotators, leave-one-out)", highlight=False)
    console.print("Krippendorff's alpha: " + ", ".join(
        f"{level} {_num(alpha.get(level), 4)}" for level in ("nominal", "ordinal", "interval") if level in alpha),
        highlight=False)
    for attribute, entry in data["groups"].items():
        title = attribute
        if "binned" in entry:
            title += f" (binned: {entry['binned']['rule']})"
        if "skipped" in entry:
            console.print(f"{title}: {entry['skipped']}", highlight=False)
            continue
        t = Table(title=title, title_justify="left", width=min(console.width, 80))
        group_columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("group", "left"), ("annot.", "right"), ("ratings", "right"), ("mean", "right"), ("95% CI", "right"),
            ("alpha", "right"))
        for heading, just in group_columns:
            t.add_column(heading, justify=just, overflow="fold")
        for g in entry["groups"]:
            t.add_row(g["group"].split("=", 1)[-1], str(g["n_annotators"]), str(g["n_ratings"]), _num(g["mean"]),
                      f"{_num(g['ci_low'])}..{_num(g['ci_high'])}", _num(g["alpha_interval"]))
        console.print(t)
        if entry.get("differences"):
            d = Table(title=f"{attribute}: item-matched differences (permutation test, BH)", title_justify="left",
                      width=min(console.width, 80))
            difference_columns: tuple[tuple[str, JustifyMethod], ...] = (
                ("A - B", "left"), ("items", "right"), ("diff", "right"), ("p", "right"), ("p (BH)", "right"))
            for heading, just in difference_columns:
                d.add_column(heading, justify=just, overflow="fold")
            for row in entry["differences"]:
                pair = f"{row['group_a'].split('=', 1)[-1]} - {row['group_b'].split('=', 1)[-1]}"
                d.add_row(pair, str(row["n_items"]), _num(row["difference"]), _p(row["pvalue"]),
                          _p(row["p_adjusted_bh"]))
            console.print(d)
        if entry.get("too_small"):
            small = ", ".join(f"{k.split('=', 1)[-1]} ({v})" for k, v in entry["too_small"].items())
            console.print(f"  left out (fewer than the minimum group size): {small}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("describe")
    def describe_cmd(
        dataset: str = typer.Argument(..., help="Dataset name (or id)."),
        dimension: Optional[str] = typer.Option(None, "--dimension", help="Rating dimension (default: the only one)."),
        fmt: str = typer.Option("text", "--format", help="text or json"),
        attribute: Optional[list[str]] = typer.Option(None, "--attribute", help="Annotator attribute to group by "
                                                      "(repeat; default: every attribute)."),
        bins: Optional[list[str]] = typer.Option(None, "--bins", help="Bin a numeric attribute: age=18,25,35 "
                                                 "(edges) or income=4 (quantile bins); default: age bands for "
                                                 "age, quartiles for other numeric attributes."),
        min_group_size: int = typer.Option(2, "--min-group-size", min=1, help="Smaller groups are left out."),
        permutations: int = typer.Option(1000, "--permutations", min=1, help="Permutations per group difference."),
        bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples per interval."),
        project: Optional[str] = project_option(),
    ) -> None:
        """Describe a dataset: counts, the human baseline (annotator r, Krippendorff's alpha) and per-group
        mean ratings with item-matched differences between groups."""
        if fmt not in ("text", "json"):
            fail(f"--format: expected text or json, got {fmt!r}")
        engine = open_engine()
        owner = chosen_project_id(engine, project)
        try:
            options = DescribeOptions(group_attributes=attribute or None, bins=parse_bins(bins),
                                      min_group_size=min_group_size, n_permutations=permutations,
                                      n_resamples=bootstrap)
            data = describe_dataset(engine, dataset, dimension, options, project_id=owner)
        except DatasetFramesError as e:
            fail(str(e.args[0]))
            return
        except ValueError as e:
            message = str(e)
            if not message.startswith("--"):
                message = message.replace("group attribute", "--attribute").replace("bins:", "--bins:")
            fail(message)
            return
        if fmt == "json":
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
            return
        render_text(console, dataset, data["dimension"], data)
