"""Projects: who owns a dataset, a campaign, a run, a model spec. One notion of ownership for the CLI and
the server: the CLI works in a project too (``local`` unless told otherwise), so a key of that project
sees on the server what the CLI made, and nothing of any other project.

A deleted project stays as a nameless tombstone (``deleted:<id>:<random>``) so its id is never reused;
``local`` is created again, with a new id, the next time the CLI needs it."""

from __future__ import annotations

from accord.models.schema import Project
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

LOCAL_PROJECT = "local"
DELETED_PREFIX = "deleted:"


class ProjectError(ValueError):
    """A project operation that cannot be done (unknown project, duplicate or invalid name)."""


def cache_scope(project_id: int, stored: str | None = None) -> str:
    """The response cache's scope of a project: a cached answer is reused only inside the project that paid
    for it, so no project can learn from cache hits what another one rated. ``stored``: the project's
    ``cache_scope`` column (NULL for every project but the one migration 0007 made of the CLI's project-less
    rows, whose answers were cached without a scope and stay reusable)."""
    return stored if stored is not None else f"project:{project_id}"


def project_cache_scope(session: Session, project_id: int) -> str:
    stored = session.execute(select(col(Project.cache_scope)).where(col(Project.id) == project_id)).scalar()
    return cache_scope(project_id, stored)


def create_project(engine: Engine, name: str) -> Project:
    name = name.strip()
    if not name or len(name) > 200:
        raise ProjectError("a project name must have 1 to 200 characters")
    if name.startswith(DELETED_PREFIX):
        raise ProjectError(f"a project name may not start with {DELETED_PREFIX!r}")
    with Session(engine, expire_on_commit=False) as session:
        project = Project(name=name)
        session.add(project)
        try:
            session.commit()
        except IntegrityError:
            raise ProjectError(f"a project named {name!r} already exists") from None
        return project


def find_project(engine: Engine, name_or_id: str) -> Project:
    """A live project by name, or by id when ``name_or_id`` is all digits and names no project."""
    with Session(engine, expire_on_commit=False) as session:
        project: Project | None = session.execute(
            select(Project).where(col(Project.name) == name_or_id)).scalar_one_or_none()
        if project is None and name_or_id.isdigit():
            project = session.get(Project, int(name_or_id))
        if project is None or project.name.startswith(DELETED_PREFIX):
            raise ProjectError(f"no project named {name_or_id[:200]!r}")
        return project


def working_project(engine: Engine, name: str = LOCAL_PROJECT) -> Project:
    """The project the CLI works in: ``name`` if it exists; ``local`` is created on first use (two processes
    creating it at once get the same row)."""
    try:
        return find_project(engine, name)
    except ProjectError:
        if name != LOCAL_PROJECT:
            raise
    try:
        return create_project(engine, LOCAL_PROJECT)
    except ProjectError:  # created by another process in the meantime
        return find_project(engine, LOCAL_PROJECT)


def owner_id(engine: Engine, project_id: int | None) -> int:
    """``project_id``, or the ``local`` project's id when None (library callers that name no project)."""
    return project_id if project_id is not None else working_project(engine).id  # type: ignore[return-value]  # a stored row's id is set (flushed or loaded)
