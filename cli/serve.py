"""CLI commands of the HTTP API (registered by ``accord.cli.main``):

- ``accord serve [--host --port --execution]`` runs the API and dashboard (uvicorn);
- ``accord project create NAME`` / ``accord project list`` / ``accord project delete NAME``;
- ``accord key create [PROJECT | --project NAME] [--name]`` prints a new API key ONCE (default: the CLI's
  project, ``local``, so the key sees on the server what the CLI made); ``accord key revoke ID|PREFIX``;
  ``accord key list PROJECT``;
- ``accord openapi [-o FILE]`` writes the API's OpenAPI document (``api/openapi.json`` in the repository);
- ``accord remote ...`` does the CLI's work against a server (``--url``/``ACCORD_API_URL``,
  ``--key``/``ACCORD_API_KEY``): upload, submit (and follow), status, results, report. ``accord run / status /
  results / report --remote URL`` do the same with the local commands' outputs (``accord.cli.remote``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import select
from sqlmodel import Session, col

from accord.cli.app import console, err_console
from accord.cli.app import fail as _fail
from accord.cli.app import open_engine as _engine
from accord.cli import remote as remote_commands
from accord.cli.client import AccordClient, ApiError
from accord.cli.launch import check_share
from accord.cli.progress import print_run_summary
from accord.cli.project_context import ProjectChoiceError, project_id
from accord.cli.remote import run_remote
from accord.extras import needs_extra
from accord.models.projects import DELETED_PREFIX, create_project, find_project
from accord.models.schema import Project
from accord.models.settings import get_settings
from accord.models.yaml_loader import safe_load


# ---------------------------------------------------------------------------------------------- serve
def serve(host: str = typer.Option("127.0.0.1", help="Address to listen on."),
          port: int = typer.Option(8000, help="Port."),
          execution: str | None = typer.Option(None, help="embedded (runs execute in the server) or distributed "
                                                             "(Celery workers); default ACCORD_API_EXECUTION or embedded."),
          log_level: str = typer.Option("info", help="uvicorn log level.")) -> None:
    """Serve the HTTP API (/api/v1, docs at /api/v1/docs) and the dashboard (/dashboard)."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        import uvicorn
        from accord.api.http.app import create_app
        from accord.api.http.config import ApiSettings

    settings = ApiSettings()
    if execution:
        settings.execution = execution
    app = create_app(_engine(), settings=settings)
    console.print(f"accord API on http://{host}:{port}  (dashboard: /dashboard, docs: /api/v1/docs, "
                  f"execution: {settings.execution})")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=10)


# ---------------------------------------------------------------------------------------------- projects & keys
project_app = typer.Typer(help="Projects (tenants of the HTTP API).", no_args_is_help=True)
key_app = typer.Typer(help="API keys of projects: created once, stored as hashes, revocable.", no_args_is_help=True)


@contextmanager
def _admin() -> Iterator[None]:
    """A project or key operation: the HTTP API's extra must be installed (projects and keys are its tenants and
    credentials), and an operation that cannot be done (no such project or key, a name taken, ...) ends the
    command with its message."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import AuthAdminError

    try:
        yield
    except AuthAdminError as e:
        _fail(str(e))


@project_app.command("create")
def project_create(name: str = typer.Argument(..., help="Project name (unique).")) -> None:
    """Create a project."""
    with _admin():
        project = create_project(_engine(), name)
    console.print(f"project [bold]{project.name}[/] (id {project.id}); create a key with "
                  f"[bold]accord key create {project.name}[/]")


@project_app.command("list")
def project_list() -> None:
    """List projects."""
    with Session(_engine()) as session:
        for p in session.execute(select(Project).order_by(col(Project.id))).scalars():
            if not p.name.startswith(DELETED_PREFIX):
                console.print(f"{p.id}\t{p.name}")


@project_app.command("delete")
def project_delete(project: str = typer.Argument(..., help="Project name or id."),
                   yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete a project with its keys, datasets, campaigns, runs and cached answers. Its id is never reused."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import delete_project
        from accord.api.http.config import ApiSettings

    engine = _engine()
    with _admin():
        found = find_project(engine, project)
    if not yes and not typer.confirm(f"delete project {found.name} (id {found.id}) and everything it owns?"):
        raise typer.Exit(1)
    root = ApiSettings().templates_dir or get_settings().home / "api-templates"
    counts = delete_project(engine, str(found.id), templates_root=root)
    console.print(f"deleted project {found.name} (id {found.id}): {counts['api_key']} keys, {counts['run']} runs, "
                  f"{counts['rating']} answers, {counts['dataset']} datasets")


@key_app.command("create")
def key_create(project: str | None = typer.Argument(None, help="Project name or id (default: --project, i.e. the "
                                                                "CLI's project, 'local' unless told otherwise)."),
               name: str = typer.Option("", "--name", help="A label for the key (who or what uses it)."),
               project_opt: str | None = typer.Option(None, "--project", help="The project, as the argument.")) -> None:
    """Create an API key and print it. It is shown this once: the server keeps only its hash. A key of the
    CLI's project (`accord key create --project local`) sees on the server what the CLI made."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import create_key

    if project and project_opt and project != project_opt:
        _fail(f"--project: {project_opt!r} and the argument {project!r} name two projects; give one")
    engine = _engine()
    try:
        chosen = project or project_opt
        with _admin():
            new = create_key(engine, chosen if chosen and chosen.isdigit() else project_id(engine, chosen), name)
    except ProjectChoiceError as e:  # names --project; the argument is the same choice
        _fail(str(e) if project_opt or not project else str(e).removeprefix("--project: "))
        return
    err_console.print(f"API key {new.key_id} of project [bold]{new.project_name}[/] (prefix {new.prefix}). "
                      "Store it now: it cannot be shown again.", highlight=False)
    print(new.key)


@key_app.command("revoke")
def key_revoke(key: str = typer.Argument(..., help="The key's id or its displayed prefix.")) -> None:
    """Revoke an API key; it stops working at once."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import revoke_key

    with _admin():
        row = revoke_key(_engine(), key)
    console.print(f"revoked key {row.id} ({row.prefix}…) at {row.revoked_at}")


@key_app.command("list")
def key_list(project: str = typer.Argument(..., help="Project name or id.")) -> None:
    """List a project's keys (prefixes only)."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import list_keys

    with _admin():
        rows = list_keys(_engine(), project)
    for r in rows:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        console.print(f"{r.id}\t{r.prefix}…\t{state}\t{r.name}")


def openapi(output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: stdout).")) -> None:
    """Write the HTTP API's OpenAPI document."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.app import openapi_document

    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if output is None:
        print(text, end="")
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")


# ---------------------------------------------------------------------------------------------- remote
remote_app = typer.Typer(help="Work against an accord server instead of the local database.", no_args_is_help=True)
_state: dict[str, Any] = {}


@remote_app.callback()
def remote(url: str = typer.Option("http://127.0.0.1:8000", "--url", envvar="ACCORD_API_URL", help="Server URL."),
           key: str | None = typer.Option(None, "--key", envvar="ACCORD_API_KEY", help="API key.")) -> None:
    _state["url"], _state["key"] = url, key


def _client() -> Any:
    if not _state.get("key"):
        _fail("give the API key with --key or ACCORD_API_KEY")
    return AccordClient(_state["url"], _state["key"])


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot reach {_state.get('url')}: {e}")


@remote_app.command("upload")
def remote_upload(mapping: Path = typer.Argument(..., help="YAML/JSON of import fields (as accord import's --spec, "
                                                            "file paths are taken from the options below)."),
                  ratings: Path | None = typer.Option(None, "--ratings"),
                  items: Path | None = typer.Option(None, "--items"),
                  annotators: Path | None = typer.Option(None, "--annotators")) -> None:
    """Upload a dataset."""
    doc = safe_load(mapping.read_text(encoding="utf-8")) or {}
    base = mapping.parent
    files: dict[str, Any] = {}
    for field, option in (("ratings_file", ratings), ("items_file", items), ("annotators_file", annotators)):
        path = option or (base / doc[field] if doc.get(field) else None)
        doc.pop(field, None)
        if path is not None:
            files[field] = path
    with _client() as client:
        out = _call(client.upload_dataset, doc, **files)
    console.print(f"dataset [bold]{out['name']}[/] (id {out['id']}): {out['n_items']} items, "
                  f"{out['n_annotators']} annotators, {out['n_ratings']} ratings")


@remote_app.command("submit")
def remote_submit(campaign: Path = typer.Argument(..., help="Campaign YAML or JSON."),
                  follow: bool = typer.Option(True, help="Follow the run until it finishes."),
                  budget: float | None = typer.Option(None, help="Budget cap in dollars.")) -> None:
    """Create a campaign on the server and start a run of it (followed, this is `accord run --remote`)."""
    if follow:
        run_remote(remote_commands.run, _state["url"], _state.get("key"), campaign, budget, console, err_console,
                print_run_summary, functools.partial(check_share, where=f" --remote {_state['url']}"))
        return
    document = safe_load(campaign.read_text(encoding="utf-8"))
    with _client() as client:
        created = _call(client.create_campaign, document)
        run = _call(client.start_run, created["id"], budget_usd=budget)
    console.print(f"run [bold]{run['id']}[/] of campaign {created['name']} (id {created['id']}): "
                  f"{run['total']} requests, {run['cached']} from cache")


@remote_app.command("status")
def remote_status(run_id: int | None = typer.Argument(None, help="A run id (default: list runs).")) -> None:
    """A run's status, or the project's runs (as `accord status --remote`)."""
    run_remote(remote_commands.status, _state["url"], _state.get("key"), run_id, console, print_run_summary)


@remote_app.command("results")
def remote_results(run_id: int, output: Path = typer.Option(..., "--output", "-o"),
                   fmt: str = typer.Option("csv", "--format", help="csv or parquet")) -> None:
    """Download a run's ratings (as `accord results --remote`)."""
    if fmt not in ("csv", "parquet"):
        _fail(f"--format: expected csv or parquet, got {fmt!r}")
    run_remote(remote_commands.results, _state["url"], _state.get("key"), run_id, fmt, output, "ratings", console)


@remote_app.command("report")
def remote_report(run_id: int, output: Path = typer.Option(..., "--output", "-o")) -> None:
    """Download a finished run's HTML report (as `accord report --remote`)."""
    run_remote(remote_commands.report, _state["url"], _state.get("key"), run_id, "html", output, output, console)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("openapi")(openapi)
    app.add_typer(project_app, name="project")
    app.add_typer(key_app, name="key")
    app.add_typer(remote_app, name="remote")

