"""The ``accord`` command line (Typer + Rich)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from accord.extras import MissingExtra
from accord.models.settings import get_settings
from sqlmodel import col

if TYPE_CHECKING:                               # annotations only
    import pandas as pd
    from sqlalchemy.engine import Engine

    from accord.scheduler.campaign_spec import CampaignSpec
    from accord.scheduler.expand import RunPlan
    from accord.scheduler.run_control import Progress as RunProgress

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="accord: do LLM raters agree with people, and with which people?")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def main(database_url: Optional[str] = typer.Option(None, "--database-url", envvar="ACCORD_DATABASE_URL",
                                                     help="SQLAlchemy URL (default: SQLite under ~/.accord).")) -> None:
    if database_url:
        os.environ["ACCORD_DATABASE_URL"] = database_url
        get_settings.cache_clear()


def _engine() -> Engine:
    from accord.models.migrate import init_db

    return init_db(get_settings().resolved_database_url())


# ---------------------------------------------------------------------------------------------- import
# ImportSpec field -> the option that sets it, so that errors speak of what the user typed.
IMPORT_FLAGS = {
    "ratings_file": "RATINGS (the ratings file argument)", "items_file": "--items", "annotators_file": "--annotators",
    "layout": "--layout", "item_col": "--item-col", "annotator_col": "--annotator-col", "rating_cols": "--rating-col",
    "annotator_columns": "--annotator-columns", "dimension": "--dimension", "text_col": "--text-col",
    "conversation_col": "--conversation-col", "response_col": "--response-col",
    "response_speaker": "--response-speaker", "item_meta_cols": "--meta-col", "attribute_cols": "--attribute-col",
    "label_map": "--label-map", "replace": "--replace", "records_key": "--records-key",
    "items_id_col": "--items-id-col", "annotators_id_col": "--annotators-id-col", "on_duplicate": "--on-duplicate",
    "unmapped_label": "--unmapped-label", "meta_roles": "--meta-role", "name": "--name", "meaning": "--meaning",
}
_SPEC_ONLY_WORDS = {"layout", "dimension", "replace", "name", "meaning"}  # ordinary words too: only in spec errors


def import_error_in_cli_terms(message: str) -> str:
    """An import error with the spec's field names replaced by the options of `accord import`."""
    import re

    spec_error = message.startswith("import spec: ")
    text = message.removeprefix("import spec: ")
    text = text.replace("replace: true", "--replace").replace("layout wide", "--layout wide")
    for field, flag in IMPORT_FLAGS.items():
        if field in _SPEC_ONLY_WORDS and not spec_error:
            continue
        text = re.sub(rf"(?<![\w'-]){field}(?![\w'])(:?)", flag + r"\g<1>", text)
    return text


def _roles_help() -> str:
    from accord.models.import_spec import META_ROLES

    return "; ".join(f"{role}: {meaning}" for role, meaning in META_ROLES.items())


@app.command("import")
def import_cmd(
    ratings: Optional[Path] = typer.Argument(None, help="Ratings file (CSV, JSONL or Parquet)."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Dataset name."),
    spec: Optional[Path] = typer.Option(None, "--spec", help="An import YAML (fields as below); options override it."),
    items: Optional[Path] = typer.Option(None, "--items", help="Items file (text/conversations, metadata)."),
    annotators: Optional[Path] = typer.Option(None, "--annotators", help="Annotators file (attributes)."),
    layout: Optional[str] = typer.Option(None, help="long (row per item x annotator) or wide (column per annotator)."),
    item_col: Optional[str] = typer.Option(None, help="Item id column."),
    annotator_col: Optional[str] = typer.Option(None, help="Annotator id column."),
    rating_col: Optional[list[str]] = typer.Option(None, "--rating-col", help="Rating column (repeat; 'col=dimension' renames)."),
    annotator_columns: Optional[str] = typer.Option(None, help="Wide layout: annotator columns (list, glob or re:...)."),
    dimension: Optional[str] = typer.Option(None, help="Wide layout: the dimension's name."),
    text_col: Optional[str] = typer.Option(None, help="Plain-text content column."),
    conversation_col: Optional[str] = typer.Option(None, help="Conversation column ('SPEAKER: text' lines or JSON turns)."),
    response_col: Optional[str] = typer.Option(None, help="The final reply being judged, appended as the last turn."),
    response_speaker: Optional[str] = typer.Option(None, help="Speaker label of the response turn."),
    meta_col: Optional[list[str]] = typer.Option(None, "--meta-col", help="Item metadata column (repeat)."),
    attribute_col: Optional[list[str]] = typer.Option(None, "--attribute-col", help="Annotator attribute column (repeat)."),
    label_map: Optional[str] = typer.Option(None, "--label-map", help="e.g. 'No=0, Unsure=0.5, Yes=1'."),
    model_rating_col: Optional[list[str]] = typer.Option(
        None, "--model-rating-col", help="An existing judge model's labels: 'name=column' (repeat); the model "
                                         "enters every metric as a rater (template 'imported')."),
    replace: bool = typer.Option(False, "--replace", help="Replace a dataset of the same name."),
    records_key: Optional[str] = typer.Option(None, "--records-key", help="JSON files holding an object: the key "
                                              "of the list of records (dotted for nested, e.g. data.rows)."),
    items_id_col: Optional[str] = typer.Option(None, "--items-id-col", help="Item id column of the items file "
                                               "(default: --item-col)."),
    annotators_id_col: Optional[str] = typer.Option(None, "--annotators-id-col", help="Annotator id column of the "
                                                    "annotators file (default: --annotator-col)."),
    on_duplicate: Optional[str] = typer.Option(None, "--on-duplicate", help="A repeated item x annotator rating: "
                                               "error (default), first, last or mean."),
    unmapped_label: Optional[str] = typer.Option(None, "--unmapped-label", help="A cell that is no label (e.g. a "
                                                 "sentence in a label column): error (default) or missing."),
    meaning: Optional[str] = typer.Option(None, "--meaning", help="What the low and high ratings stand for, "
                                          "e.g. 'low=compliant,high=refusing' (the report's wording follows)."),
    meta_role: Optional[list[str]] = typer.Option(None, "--meta-role", help="ROLE=COLUMN: item metadata that drives "
                                                  "an analysis (repeat). Roles: " + _roles_help() + "."),
) -> None:
    """Import a dataset of items, annotators and their ratings, in one transaction.

    Item metadata roles (--meta-role ROLE=COLUMN; a --meta-col keeps its own name and drives nothing):
    subject_model (ranking of subject models), category (metrics per category), expert_label (accuracy vs expert).
    """
    from accord.models.dataset_import import import_dataset
    from accord.models.import_formats import DatasetImportError
    from accord.models.import_spec import load_import_spec, spec_from_mapping

    overrides: dict[str, Any] = {}
    if rating_col:
        cols: dict[str, str] = {}
        for c in rating_col:
            col, _, dim = c.partition("=")
            cols[col.strip()] = (dim or col).strip()
        overrides["rating_cols"] = cols
    for key, value in {"name": name, "ratings_file": ratings, "items_file": items, "annotators_file": annotators,
                       "layout": layout, "item_col": item_col, "annotator_col": annotator_col,
                       "annotator_columns": annotator_columns, "dimension": dimension, "text_col": text_col,
                       "conversation_col": conversation_col, "response_col": response_col,
                       "response_speaker": response_speaker, "item_meta_cols": meta_col,
                       "attribute_cols": attribute_col, "label_map": label_map, "records_key": records_key,
                       "items_id_col": items_id_col, "annotators_id_col": annotators_id_col,
                       "on_duplicate": on_duplicate, "unmapped_label": unmapped_label,
                       "meta_roles": meta_role, "meaning": meaning}.items():
        if value:
            overrides[key] = value
    if model_rating_col:
        raters: dict[str, str] = {}
        for c in model_rating_col:
            rater, sep, col = c.partition("=")
            if not sep or not rater.strip() or not col.strip():
                fail(f"--model-rating-col: expected name=column, got {c!r}")
            raters[rater.strip()] = col.strip()
        overrides["model_rating_cols"] = raters
    if replace:
        overrides["replace"] = True
    try:
        import_spec = load_import_spec(spec, **overrides) if spec else spec_from_mapping(overrides)
        report = import_dataset(_engine(), import_spec)
    except DatasetImportError as e:
        fail(import_error_in_cli_terms(str(e)))
        return
    console.print(f"imported dataset [bold]{report.name}[/] (id {report.dataset_id}): {report.n_items} items, "
                  f"{report.n_annotators} annotators, {report.n_ratings} ratings; dimensions: "
                  f"{', '.join(report.dimensions) or '-'}")
    for what, info in report.dropped.items():
        examples = info.get("examples") or {}
        example = f" (e.g. {next(iter(examples))!r})" if examples else ""
        verb = {"first": "kept the first", "last": "kept the last", "mean": "averaged"}.get(info.get("policy"), "dropped")
        console.print(f"dropped: {info['count']} {what.replace('_', ' ')}{example}; {verb}"
                      if what == "duplicate_ratings" else
                      f"dropped: {info['count']} {what.replace('_', ' ')}{example}; counted as missing",
                      highlight=False, soft_wrap=True)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {import_error_in_cli_terms(w)}", highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------- run
def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]run {task.fields[run_id]}[/]"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        TextColumn("{task.fields[rate]}/s"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("${task.fields[cost]:.4f}"), TextColumn("cached {task.fields[cached]}"),
        TextColumn("[red]failed {task.fields[failed]}[/]"), console=console, transient=False,
    )


class PlainProgress:
    """Progress as plain lines for logs and pipes (no terminal): one every ``every`` seconds, and the last."""

    def __init__(self, print_line: Any, every: float = 10.0, clock: Any = time.monotonic) -> None:
        self.print_line, self.every, self.clock = print_line, every, clock
        self.started = clock()
        self.last: float | None = None

    def __call__(self, p: Any, final: bool = False) -> None:  # a run_control.Progress
        now = self.clock()
        if not final and self.last is not None and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        share = p.finished / p.total if p.total else 1.0
        self.print_line(f"run {p.run_id}: {p.finished}/{p.total} ({share:.0%}) after {elapsed:.0f} s, "
                        f"{(p.finished - p.cached) / elapsed:.1f}/s, ${p.cost_usd:.4f}, cached {p.cached}, "
                        f"failed {p.failed}")


def follow_embedded(engine: Engine, run_id: int, total: int) -> RunProgress:
    from accord.scheduler.embedded import run_embedded

    started = time.monotonic()
    if not console.is_terminal:  # a log file or a pipe: plain lines now and then, not one final bar
        plain = PlainProgress(lambda line: console.print(line, highlight=False, soft_wrap=True))
        progress = run_embedded(engine, run_id, on_progress=plain)
        plain(progress, final=True)
        return progress
    with _progress_bar() as bar:
        task = bar.add_task("rating", total=total, run_id=run_id, rate="0.0", cost=0.0, cached=0, failed=0)

        def on_progress(p: RunProgress) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=p.finished, total=p.total, rate=f"{(p.finished - p.cached) / elapsed:.1f}",
                       cost=p.cost_usd, cached=p.cached, failed=p.failed)

        return run_embedded(engine, run_id, on_progress=on_progress)


def _start_run(campaign: Path, budget: Optional[float], mode: str,
               force: bool = False) -> tuple[Engine, CampaignSpec, RunPlan]:
    from accord.scheduler.campaign_spec import CampaignSpecError, load_campaign
    from accord.scheduler.expand import CampaignError, create_run
    from accord.scheduler.plan import plan_campaign
    from accord.worker.prompt_templates import TemplateSpecError

    try:
        spec = load_campaign(campaign)
        engine = _engine()
        if (budget if budget is not None else spec.budget_usd) is not None and not force:
            estimate = plan_campaign(engine, spec, budget_override=budget)
            if estimate.exceeds_budget:
                fail(f"{campaign}: estimated cost ${estimate.cost_usd:.4f} exceeds the budget of "
                     f"${estimate.budget_usd:.4f}; see `accord plan {campaign}`, raise budget_usd, or pass --force")
        plan = create_run(engine, spec, mode=mode, budget_override=budget)
    except (CampaignSpecError, CampaignError, TemplateSpecError) as e:
        fail(str(e))
        raise
    return engine, spec, plan


@app.command("run")
def run_cmd(
    campaign: Path = typer.Argument(..., help="Campaign YAML (or JSON)."),
    budget: Optional[float] = typer.Option(None, help="Budget cap in dollars (overrides the campaign's)."),
    distributed: bool = typer.Option(False, "--distributed", help="Submit to Celery workers instead of running here."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip post-processing and the report."),
    force: bool = typer.Option(False, "--force", help="Start even if the estimated cost exceeds the budget."),
) -> None:
    """Launch a campaign: expand its rating requests, execute them, compute the metrics."""
    from accord.scheduler import run_service

    if distributed:
        from accord.cli.distributed import run_distributed

        run_distributed(campaign, budget)
        return
    engine, spec, plan = _start_run(campaign, budget, "embedded", force)
    what = "rating requests" if spec.subjects is None else "requests"
    judged = " (judges' requests are added as the subjects' answers arrive)" if spec.judges else ""
    console.print(f"run [bold]{plan.run_id}[/] of campaign [bold]{spec.name}[/]: {plan.total} {what}{judged}, "
                  f"{plan.cached} answered from cache")
    progress = follow_embedded(engine, plan.run_id, plan.total)
    _print_run_summary(progress)
    analysis = run_service.finish(engine, plan.run_id, analyse=not no_report)
    if analysis.ran:
        console.print(f"{analysis.metrics} metrics stored. See them with [bold]accord report {plan.run_id}[/]")
    elif analysis.error:
        console.print(f"[red]{analysis.error}[/]")
    check_failed_share(engine, plan.run_id, spec.max_failed_share)


def check_failed_share(engine: Engine, run_id: int, threshold: float) -> None:
    """Exit non-zero, saying so, when more of the run's requests failed than the campaign allows."""
    from accord.scheduler import run_service
    from accord.scheduler.run_control import get_run

    run = get_run(engine, run_id)
    share = run_service.failed_share(run)
    if share > threshold:
        console.print(f"[bold red]run {run_id}: {run.failed} of {run.total} requests failed ({share:.1%}), more than "
                      f"the campaign's max_failed_share of {threshold:.1%}[/]; see [bold]accord status {run_id}[/]")
        raise typer.Exit(code=1)


def _print_run_summary(p: RunProgress) -> None:
    console.print(f"run {p.run_id}: [bold]{p.status}[/] — {p.done} rated ({p.cached} from cache), {p.failed} failed, "
                  f"{p.cancelled} cancelled of {p.total}; {p.input_tokens} input / {p.output_tokens} output tokens; "
                  f"cost ${p.cost_usd:.4f}")


# ---------------------------------------------------------------------------------------------- status
@app.command("status")
def status_cmd(run_id: Optional[int] = typer.Argument(None, help="A run id (default: list recent runs).")) -> None:
    """Show a run's progress, or the recent runs and datasets."""
    from sqlalchemy import select
    from sqlmodel import Session

    from accord.models.schema import Campaign, Dataset, RatingRequest, Run
    from accord.scheduler.run_control import RunStateError, read_progress

    engine = _engine()
    if run_id is not None:
        try:
            p = read_progress(engine, run_id)
        except RunStateError as e:
            fail(str(e))
            return
        _print_run_summary(p)
        with Session(engine) as session:
            errors = session.execute(select(col(RatingRequest.last_error)).where(
                col(RatingRequest.run_id) == run_id, col(RatingRequest.status) == "failed").limit(5)).scalars().all()
        for error in errors:
            console.print(f"  [red]failed:[/] {error}")
        return
    with Session(engine) as session:
        runs = session.execute(select(Run, col(Campaign.name)).join(Campaign).order_by(col(Run.id).desc()).limit(20)).all()
        datasets = session.execute(select(Dataset).order_by(col(Dataset.id))).scalars().all()
    t = Table(title="runs")
    for heading in ("run", "campaign", "status", "done", "cached", "failed", "total", "cost $"):
        t.add_column(heading)
    for run, cname in runs:
        t.add_row(str(run.id), cname, run.status, str(run.done), str(run.cached), str(run.failed), str(run.total),
                  f"{run.cost_usd:.4f}")
    console.print(t)
    d = Table(title="datasets")
    for heading in ("id", "name", "dimensions", "source"):
        d.add_column(heading)
    for ds in datasets:
        d.add_row(str(ds.id), ds.name, ", ".join(ds.dimensions or []), ds.source[:60])
    console.print(d)


# ---------------------------------------------------------------------------------------------- results
@app.command("results")
def results_cmd(run_id: int, fmt: str = typer.Option("csv", "--format", help="csv or parquet"),
                output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: stdout for csv)."),
                table: str = typer.Option("ratings", "--table", help="ratings (of items), answers (the subjects'), "
                                                                     "or judgments (the judges' ratings of answers)")) -> None:
    """Export every rating request of a run with its rating (one row per request), or its subjects' answers, or
    its judges' ratings of them."""
    from accord.report.csv_safe import neutralise_frame
    from accord.models.answer_frames import load_answers, load_judgments
    from accord.scheduler.run_control import RunStateError, get_run
    from accord.models.run_frames import load_llm_frame

    if fmt not in ("csv", "parquet"):
        fail(f"--format: expected csv or parquet, got {fmt!r}")
    loaders: dict[str, Callable[[Engine, int], pd.DataFrame]] = {
        "ratings": load_llm_frame, "answers": load_answers, "judgments": load_judgments}
    if table not in loaders:
        fail(f"--table: expected ratings, answers or judgments, got {table!r}")
    engine = _engine()
    try:
        get_run(engine, run_id)
    except RunStateError as e:
        fail(str(e))
    df = loaders[table](engine, run_id)
    if fmt == "parquet":
        output = output or Path(f"run-{run_id}-{table}.parquet")
        df.to_parquet(output, index=False)
        console.print(f"wrote {len(df)} rows to {output}")
    elif output is None:
        neutralise_frame(df).to_csv(sys.stdout, index=False)
    else:
        neutralise_frame(df).to_csv(output, index=False)
        console.print(f"wrote {len(df)} rows to {output}")


# ---------------------------------------------------------------------------------------------- report
@app.command("report")
def report_cmd(run_id: int, output: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write."),
               fmt: str = typer.Option("html", "--format", help="html or json"),
               recompute: bool = typer.Option(False, help="Recompute the metrics first.")) -> None:
    """Print the run's metrics and write its HTML report (or JSON with --format json)."""
    from accord.report.build import build_report_data, metrics_table, render_html
    from accord.scheduler import run_service
    from accord.scheduler.run_control import RunStateError, get_run

    engine = _engine()
    try:
        run = get_run(engine, run_id)
    except RunStateError as e:
        fail(str(e))
        return
    if recompute or run.postprocessed_at is None:
        analysis = run_service.analyse_once(engine, run_id, again=recompute)
        if analysis.error:
            console.print(f"[red]{analysis.error}[/]")
    data = build_report_data(engine, run_id)
    if fmt == "json":
        import json

        text = json.dumps(data.to_json(), indent=2, default=str)
        if output:
            output.write_text(text)
            console.print(f"wrote {output}")
        else:
            sys.stdout.write(text + "\n")
        return
    console.print(metrics_table(data, console.width))
    output = output or (get_settings().home / "reports" / f"run-{run_id}.html")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(data), encoding="utf-8")
    console.print(f"report: [bold]{output.resolve()}[/]")


# ---------------------------------------------------------------------------------------------- templates
@app.command("templates")
def templates_cmd() -> None:
    """List the bundled prompt templates."""
    from accord.worker.prompt_templates import bundled_template_names, load_template

    t = Table(title="bundled templates")
    for heading in ("name", "version", "format", "labels", "persona"):
        t.add_column(heading)
    for name in bundled_template_names():
        tmpl = load_template(name)
        t.add_row(tmpl.name, tmpl.version, tmpl.response_format, ", ".join(f"{k}={v:g}" for k, v in tmpl.labels.items()),
                  "yes" if tmpl.persona else "")
    console.print(t)


# ---------------------------------------------------------------------------------------------- demo
@app.command("demo")
def demo_cmd(items: int = typer.Option(12, help="Items to rate (of the 40 bundled)."),
             samples: int = typer.Option(1, help="Samples per item x template.")) -> None:
    """End to end on the bundled DICES subset with the local SmolLM2 model; prints the report path."""
    from accord.cli.demo import run_demo

    run_demo(console, items=items, samples=samples)


def _register_extensions() -> None:
    """Commands that live in their own modules: `worker`, `scheduler` (distributed mode), `serve` (HTTP API),
    `plan` (pre-flight estimate). Each module exposes ``register(app)``."""
    import importlib

    for module in ("accord.cli.distributed", "accord.cli.serve", "accord.cli.plan", "accord.cli.describe"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(app)


_register_extensions()


def entry() -> None:
    """The ``accord`` command: the app, with a missing optional dependency said in one line."""
    try:
        app()
    except MissingExtra as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    entry()
