"""The Typer application of ``accord`` with what every command shares: the consoles, the one-line error and
the database engine. The commands live in the other modules of ``accord.cli``; ``accord.cli.main`` gathers
them."""

from __future__ import annotations

import os
from typing import NoReturn

import typer
from accord.cli.project_context import (
    PROJECT_HELP,
    ProjectChoiceError,
    check_run_in_project,
    choose_global,
    project_id,
    project_name,
)
from accord.models.migrate import init_db
from accord.models.schema import Run
from accord.models.settings import get_settings
from accord.scheduler.run_control import RunStateError, get_run
from rich.console import Console
from sqlalchemy.engine import Engine

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="accord: do LLM raters agree with people, and with which people?")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def open_engine() -> Engine:
    """The configured database, migrated to the newest revision."""
    return init_db(get_settings().resolved_database_url())


def chosen_project_id(engine: Engine, project: str | None = None) -> int:
    """The id of the project the command works in (``--project``); a one-line error if there is none."""
    try:
        return project_id(engine, project)
    except ProjectChoiceError as e:
        fail(str(e))
        raise


def own_run(engine: Engine, run_id: int, project: str | None = None) -> None:
    """Refuse a run of another project like a run that does not exist."""
    try:
        check_run_in_project(engine, run_id, chosen_project_id(engine, project), project_name(project))
    except ProjectChoiceError as e:
        fail(str(e))


def owned_run(engine: Engine, run_id: int, project: str | None = None) -> Run:
    """The run ``run_id`` of the command's project; a one-line error when there is none (``own_run``)."""
    own_run(engine, run_id, project)
    try:
        return get_run(engine, run_id)
    except RunStateError as e:
        fail(str(e))
        raise


@app.callback()
def main(database_url: str | None = typer.Option(
        None, "--database-url", envvar="ACCORD_DATABASE_URL",
        help="SQLAlchemy URL (default: SQLite under ~/.accord)."),
         project: str | None = typer.Option(None, "--project", envvar="ACCORD_PROJECT", help=PROJECT_HELP)) -> None:
    if database_url:
        os.environ["ACCORD_DATABASE_URL"] = database_url
        get_settings.cache_clear()
    choose_global(project)
