"""The ``accord`` command line (Typer + Rich): the commands of this module and, registered from their own
modules, ``plan``, ``describe``, ``worker``/``scheduler`` (distributed mode) and ``serve``, ``project``,
``key``, ``openapi``, ``remote`` (HTTP API)."""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.table import Table
from sqlalchemy import select
from sqlmodel import Session

from accord.cli import catalogue as catalogue_commands
from accord.cli import describe as describe_commands
from accord.cli import distributed as distributed_commands
from accord.cli import plan as plan_commands
from accord.cli import remote
from accord.cli import serve as serve_commands
from accord.cli.app import app, chosen_project_id, console, err_console, fail, open_engine, owned_run
from accord.cli.demo import run_demo
from accord.cli.import_options import (
    AnnotatorCol, AnnotatorColumns, Annotators, AnnotatorsIdCol, AnswerJudgmentCols, AnswerJudgments,
    AttributeCol, ConversationCol, Dimension, IMPORT_FLAGS, ItemCol, Items, ItemsIdCol, LabelMap, Layout,
    Meaning, MetaCol, MetaRole, ModelRatingCol, Name, OnDuplicate, RatingCol, Ratings, RecordsKey, Replace,
    ResponseCol, ResponseSpeaker, Spec, TextCol, UnmappedLabel,
)
from accord.cli.distributed import run_distributed
from accord.cli.launch import check_failed_share, check_share, start_run
from accord.cli.progress import follow_embedded, print_run_summary
from accord.cli.project_context import project_option
from accord.cli.remote import key_option, remote_option, run_remote
from accord.extras import MissingExtra, needs_extra
from accord.models.answer_judgments import import_answer_judgments, spec_from_options
from accord.models.answer_frames import load_answers, load_comparisons, load_judgments
from accord.models.dataset_import import import_dataset
from accord.models.import_formats import DatasetImportError
from accord.models.import_spec import load_import_spec, spec_from_mapping
from accord.models.run_frames import load_llm_frame
from accord.models.schema import Campaign, Dataset, RatingRequest, Run
from accord.models.settings import get_settings
from accord.report.csv_safe import neutralise_frame
from accord.scheduler import run_service
from accord.scheduler.run_control import read_progress
from accord.worker.prompt_templates import bundled_template_names, load_template
from rich.markup import escape
from sqlmodel import col

if TYPE_CHECKING:                               # annotations only
    import pandas as pd
    from sqlalchemy.engine import Engine




# ---------------------------------------------------------------------------------------------- import
_SPEC_ONLY_WORDS = {"layout", "dimension", "replace", "name", "meaning"}  # ordinary words too: only in spec errors


def import_error_in_cli_terms(message: str) -> str:
    """An import error with the spec's field names replaced by the options of `accord import`."""
    spec_error = message.startswith("import spec: ")
    text = message.removeprefix("import spec: ")
    text = text.replace("replace: true", "--replace").replace("layout wide", "--layout wide")
    for field, flag in IMPORT_FLAGS.items():
        if field in _SPEC_ONLY_WORDS and not spec_error:
            continue
        text = re.sub(rf"(?<![\w'-]){field}(?![\w'])(:?)", flag + r"\g<1>", text)
    return text


@app.command("import")
def import_cmd(
    ratings: Ratings = None, name: Name = None, spec: Spec = None, items: Items = None,
    annotators: Annotators = None, layout: Layout = None, item_col: ItemCol = None,
    annotator_col: AnnotatorCol = None, rating_col: RatingCol = None,
    annotator_columns: AnnotatorColumns = None, dimension: Dimension = None, text_col: TextCol = None,
    conversation_col: ConversationCol = None, response_col: ResponseCol = None,
    response_speaker: ResponseSpeaker = None, meta_col: MetaCol = None, attribute_col: AttributeCol = None,
    label_map: LabelMap = None, model_rating_col: ModelRatingCol = None, replace: Replace = False,
    answer_judgments: AnswerJudgments = None, answer_judgment_cols: AnswerJudgmentCols = None,
    records_key: RecordsKey = None, items_id_col: ItemsIdCol = None,
    annotators_id_col: AnnotatorsIdCol = None, on_duplicate: OnDuplicate = None,
    unmapped_label: UnmappedLabel = None, meaning: Meaning = None, meta_role: MetaRole = None,
    project: Optional[str] = project_option(),
) -> None:
    """Import a dataset of items, annotators and their ratings, in one transaction.

    Item metadata roles (--meta-role ROLE=COLUMN; a --meta-col keeps its own name and drives nothing):
    subject_model (ranking of subject models), category (metrics per category), expert_label (accuracy vs expert).
    """
    if answer_judgments is not None:
        _import_answer_judgments(answer_judgments, name, answer_judgment_cols, label_map, dimension, replace,
                                 other_input=bool(ratings or items or spec or annotators), project=project)
        return
    if answer_judgment_cols:
        fail("--answer-judgment-cols: goes with --answer-judgments FILE")
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
    engine = open_engine()
    overrides["project_id"] = chosen_project_id(engine, project)
    try:
        import_spec = load_import_spec(spec, **overrides) if spec else spec_from_mapping(overrides)
        report = import_dataset(engine, import_spec)
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


ANSWER_JUDGMENT_COLS = ("item", "subject", "answer", "annotator", "rating", "rank")


def _import_answer_judgments(path: Path, name: str | None, cols: str | None, label_map: str | None,
                             dimension: str | None, replace: bool, *, other_input: bool,
                             project: str | None = None) -> None:
    """``accord import --answer-judgments FILE --name DATASET``: people's judgments of answers, added to a dataset
    that exists (one transaction; a bad row changes nothing)."""

    if other_input:
        fail("--answer-judgments: adds people's judgments to an existing dataset; import the dataset first, "
             "without --answer-judgments")
    if not name:
        fail("--answer-judgments: name the dataset with --name")
    engine = open_engine()
    options: dict[str, Any] = {"file": path, "dataset": name, "replace": replace,
                               "project_id": chosen_project_id(engine, project)}
    for part in (cols or "").split(","):
        if not part.strip():
            continue
        role, sep, column = part.partition("=")
        role = role.strip()
        if not sep or role not in ANSWER_JUDGMENT_COLS or not column.strip():
            fail(f"--answer-judgment-cols: expected ROLE=COLUMN with ROLE one of {', '.join(ANSWER_JUDGMENT_COLS)}, "
                 f"got {part.strip()!r}")
        options[f"{role}_col"] = column.strip()
    if "answer_col" in options:
        options.setdefault("item_col", None)
        options.setdefault("subject_col", None)
    if label_map:
        options["label_map"] = label_map
    if dimension:
        options["dimension"] = dimension
    try:
        report = import_answer_judgments(engine, spec_from_options(options))
    except DatasetImportError as e:
        fail(str(e))
        return
    console.print(f"added to dataset [bold]{report.dataset}[/]: {report.ratings} ratings and {report.ranks} ranks "
                  f"of answers by {', '.join(report.subjects)}; {report.annotators_added} new annotators",
                  highlight=False)


# ---------------------------------------------------------------------------------------------- run
@app.command("run")
def run_cmd(
    campaign: Path = typer.Argument(..., help="Campaign YAML (or JSON)."),
    budget: Optional[float] = typer.Option(None, help="Budget cap in dollars (overrides the campaign's)."),
    distributed: bool = typer.Option(False, "--distributed", help="Submit to Celery workers instead of running here."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip post-processing and the report."),
    force: bool = typer.Option(False, "--force", help="Start even if the estimated cost exceeds the budget."),
    project: Optional[str] = project_option(),
    remote_url: Optional[str] = remote_option(),
    key: Optional[str] = key_option(),
) -> None:
    """Launch a campaign: expand its rating requests, execute them, compute the metrics."""
    if remote_url:  # the server's project is its key's; the server checks the budget and computes the metrics
        if distributed or no_report or force or project:
            fail("--remote: --distributed, --no-report, --force and --project do not apply to a server's run "
                 "(its key chooses the project)")
        run_remote(remote.run, remote_url, key, campaign, budget, console, err_console, print_run_summary,
                functools.partial(check_share, where=f" --remote {remote_url}"))
        return
    if distributed:
        run_distributed(campaign, budget, project)
        return
    engine, spec, plan = start_run(campaign, budget, "embedded", force, project)
    what = "rating requests" if spec.subjects is None else "requests"
    judged = " (judges' requests are added as the subjects' answers arrive)" if spec.judges else ""
    console.print(f"run [bold]{plan.run_id}[/] of campaign [bold]{spec.name}[/]: {plan.total} {what}{judged}, "
                  f"{plan.cached} answered from cache")
    progress = follow_embedded(engine, plan.run_id, plan.total)
    print_run_summary(progress)
    analysis = run_service.finish(engine, plan.run_id, analyse=not no_report)
    if analysis.ran:
        console.print(f"{analysis.metrics} metrics stored. See them with [bold]accord report {plan.run_id}[/]")
    elif analysis.error:
        console.print(f"[red]{analysis.error}[/]")
    check_failed_share(engine, plan.run_id, spec.max_failed_share)


def _no_project_with_remote(project: Optional[str]) -> None:
    if project:
        fail("--project: with --remote, the API key chooses the project (drop --project or --remote)")


# ---------------------------------------------------------------------------------------------- status
@app.command("status")
def status_cmd(run_id: Optional[int] = typer.Argument(None, help="A run id (default: list recent runs)."),
               project: Optional[str] = project_option(), remote_url: Optional[str] = remote_option(),
               key: Optional[str] = key_option()) -> None:
    """Show a run's progress, or the project's recent runs and datasets."""
    if remote_url:
        _no_project_with_remote(project)
        run_remote(remote.status, remote_url, key, run_id, console, print_run_summary)
        return
    engine = open_engine()
    owner = chosen_project_id(engine, project)
    if run_id is not None:
        owned_run(engine, run_id, project)
        print_run_summary(read_progress(engine, run_id))
        with Session(engine) as session:
            errors = session.execute(select(col(RatingRequest.last_error)).where(
                col(RatingRequest.run_id) == run_id, col(RatingRequest.status) == "failed").limit(5)).scalars().all()
        for error in errors:
            console.print(f"  [red]failed:[/] {error}")
        return
    with Session(engine) as session:
        runs = session.execute(select(Run, col(Campaign.name)).join(Campaign).where(col(Run.project_id) == owner)
                               .order_by(col(Run.id).desc()).limit(20)).all()
        datasets = session.execute(select(Dataset).where(col(Dataset.project_id) == owner)
                                   .order_by(col(Dataset.id))).scalars().all()
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
                                                                     "judgments (the judges' ratings of answers), or "
                                                                     "comparisons (pairwise/listwise verdicts)"),
                project: Optional[str] = project_option(), remote_url: Optional[str] = remote_option(),
                key: Optional[str] = key_option()) -> None:
    """Export every rating request of a run with its rating (one row per request), or its subjects' answers, or
    its judges' ratings of them."""
    if fmt not in ("csv", "parquet"):
        fail(f"--format: expected csv or parquet, got {fmt!r}")
    def comparisons(engine: Engine, run_id: int) -> pd.DataFrame:   # answer ids shown, in order, as "12,15"
        df = load_comparisons(engine, run_id)
        df["answer_ids"] = [",".join(map(str, ids)) for ids in df["answer_ids"]]
        return df

    loaders: dict[str, Callable[[Engine, int], pd.DataFrame]] = {
        "ratings": load_llm_frame, "answers": load_answers, "judgments": load_judgments, "comparisons": comparisons}
    if table not in loaders:
        fail(f"--table: expected ratings, answers, judgments or comparisons, got {table!r}")
    if remote_url:
        _no_project_with_remote(project)
        run_remote(remote.results, remote_url, key, run_id, fmt, output, table, console)
        return
    engine = open_engine()
    owned_run(engine, run_id, project)
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
               recompute: bool = typer.Option(False, help="Recompute the metrics first."),
               project: Optional[str] = project_option(), remote_url: Optional[str] = remote_option(),
               key: Optional[str] = key_option()) -> None:
    """Print the run's metrics and write its HTML report (or JSON with --format json)."""
    if fmt not in ("html", "json"):
        fail(f"--format: expected html or json, got {fmt!r}")
    default_html = get_settings().home / "reports" / f"run-{run_id}.html"
    if remote_url:
        _no_project_with_remote(project)
        if recompute:
            fail("--recompute: the server recomputes a run's metrics itself; drop --recompute with --remote")
        run_remote(remote.report, remote_url, key, run_id, fmt, output, default_html, console)
        return
    engine = open_engine()
    run = owned_run(engine, run_id, project)
    if recompute or run.postprocessed_at is None:
        analysis = run_service.analyse_once(engine, run_id, again=recompute)
        if analysis.error:
            console.print(f"[red]{analysis.error}[/]")
    with needs_extra("report"):                 # optional: matplotlib, behind the report's figures
        from accord.report.build import build_report_data, metrics_table, render_html
    data = build_report_data(engine, run_id)
    if fmt == "json":
        text = json.dumps(data.to_json(), indent=2, default=str)
        if output:
            output.write_text(text)
            console.print(f"wrote {output}")
        else:
            sys.stdout.write(text + "\n")
        return
    console.print(metrics_table(data, console.width))
    output = output or default_html
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(data), encoding="utf-8")
    console.print(f"report: [bold]{output.resolve()}[/]")


# ---------------------------------------------------------------------------------------------- templates
@app.command("templates")
def templates_cmd() -> None:
    """List the bundled prompt templates."""
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
             samples: int = typer.Option(1, help="Samples per item x template."),
             project: Optional[str] = project_option()) -> None:
    """End to end on the bundled DICES subset with the local SmolLM2 model; prints the report path."""
    run_demo(console, items=items, samples=samples, project_id=chosen_project_id(open_engine(), project))


# commands that live in their own modules
for commands in (distributed_commands, serve_commands, plan_commands, describe_commands,
                 catalogue_commands):
    commands.register(app)


def entry() -> None:
    """The ``accord`` command: the app, with a missing optional dependency said in one line."""
    try:
        app()
    except MissingExtra as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    entry()
