"""The project the CLI works in: ``--project NAME`` on a command, else ``accord --project NAME`` (or the
environment variable ``ACCORD_PROJECT``), else ``local``. Every local command reads and writes only that
project's datasets, campaigns and runs, so ``accord serve`` shows a key of the project what the CLI made."""

from __future__ import annotations

from typing import Any

import typer
from accord.models.projects import LOCAL_PROJECT, ProjectError, working_project
from accord.models.schema import Run
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

PROJECT_HELP = "The project to work in (default: ACCORD_PROJECT, else 'local', created on first use)."
_chosen: dict[str, str | None] = {"global": None}


class ProjectChoiceError(ValueError):
    """The chosen project does not exist, or a run is not one of its runs; the message names the flag."""


def project_option() -> Any:
    """A command's own ``--project`` (it wins over the global option and the environment)."""
    return typer.Option(None, "--project", help=PROJECT_HELP)


def choose_global(name: str | None) -> None:
    """Set by the ``accord`` callback on every invocation (so one process may run several)."""
    _chosen["global"] = name


def project_name(command_value: str | None = None) -> str:
    return (command_value or _chosen["global"] or LOCAL_PROJECT).strip()


def project_id(engine: Engine, command_value: str | None = None) -> int:
    """The id of the chosen project (``local`` is created on first use)."""
    name = project_name(command_value)
    try:
        return working_project(engine, name).id  # type: ignore[return-value]  # a stored row's id is set (flushed or loaded)
    except ProjectError:
        raise ProjectChoiceError(f"--project: no project named {name[:200]!r} (create it with "
                                 f"`accord project create {name[:200]}`, or use --project {LOCAL_PROJECT})") from None


def check_run_in_project(engine: Engine, run_id: int, owner: int, name: str) -> None:
    """Refuse a run of another project exactly like a run that does not exist, naming the flag."""
    with Session(engine) as session:
        found = session.execute(select(col(Run.project_id)).where(col(Run.id) == run_id)).first()
    if found is None or found[0] != owner:
        raise ProjectChoiceError(f"run {run_id}: no such run in project {name[:200]!r} (--project chooses the project)")
