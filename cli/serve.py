"""CLI commands of the HTTP API (registered by ``accord.cli.main``):

- ``accord serve [--host --port --execution]`` runs the API and dashboard (uvicorn);
- ``accord project create NAME`` / ``accord project list`` / ``accord project delete NAME``;
- ``accord key create PROJECT [--name]`` prints a new API key ONCE; ``accord key revoke ID|PREFIX``;
  ``accord key list PROJECT``;
- ``accord openapi [-o FILE]`` writes the API's OpenAPI document (``api/openapi.json`` in the repository);
- ``accord remote ...`` does the CLI's work against a server (``--url``/``ACCORD_API_URL``,
  ``--key``/``ACCORD_API_KEY``): upload, submit (and follow), status, results, report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from accord.extras import needs_extra
from accord.models.yaml_loader import safe_load
from rich.console import Console
from sqlmodel import col

console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _engine() -> Any:
    from accord.models.migrate import init_db
    from accord.models.settings import get_settings

    return init_db(get_settings().resolved_database_url())


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


@project_app.command("create")
def project_create(name: str = typer.Argument(..., help="Project name (unique).")) -> None:
    """Create a project."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import AuthAdminError, create_project

    try:
        project = create_project(_engine(), name)
    except AuthAdminError as e:
        _fail(str(e))
        return
    console.print(f"project [bold]{project.name}[/] (id {project.id}); create a key with "
                  f"[bold]accord key create {project.name}[/]")


@project_app.command("list")
def project_list() -> None:
    """List projects."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import DELETED_PREFIX
    from accord.models.schema import Project
    from sqlalchemy import select
    from sqlmodel import Session

    with Session(_engine()) as session:
        for p in session.execute(select(Project).order_by(col(Project.id))).scalars():
            if not p.name.startswith(DELETED_PREFIX):
                console.print(f"{p.id}\t{p.name}")


@project_app.command("delete")
def project_delete(project: str = typer.Argument(..., help="Project name or id."),
                   yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete a project with its keys, datasets, campaigns, runs and cached answers. Its id is never reused."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import AuthAdminError, delete_project, find_project
        from accord.api.http.config import ApiSettings
    from accord.models.settings import get_settings

    engine = _engine()
    try:
        found = find_project(engine, project)
    except AuthAdminError as e:
        _fail(str(e))
        return
    if not yes and not typer.confirm(f"delete project {found.name} (id {found.id}) and everything it owns?"):
        raise typer.Exit(1)
    root = ApiSettings().templates_dir or get_settings().home / "api-templates"
    counts = delete_project(engine, str(found.id), templates_root=root)
    console.print(f"deleted project {found.name} (id {found.id}): {counts['api_key']} keys, {counts['run']} runs, "
                  f"{counts['rating']} answers, {counts['dataset']} datasets")


@key_app.command("create")
def key_create(project: str = typer.Argument(..., help="Project name or id."),
               name: str = typer.Option("", "--name", help="A label for the key (who or what uses it).")) -> None:
    """Create an API key and print it. It is shown this once: the server keeps only its hash."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import AuthAdminError, create_key

    try:
        new = create_key(_engine(), project, name)
    except AuthAdminError as e:
        _fail(str(e))
        return
    err_console.print(f"API key {new.key_id} of project [bold]{new.project_name}[/] (prefix {new.prefix}). "
                      "Store it now: it cannot be shown again.", highlight=False)
    print(new.key)


@key_app.command("revoke")
def key_revoke(key: str = typer.Argument(..., help="The key's id or its displayed prefix.")) -> None:
    """Revoke an API key; it stops working at once."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import AuthAdminError, revoke_key

    try:
        row = revoke_key(_engine(), key)
    except AuthAdminError as e:
        _fail(str(e))
        return
    console.print(f"revoked key {row.id} ({row.prefix}…) at {row.revoked_at}")


@key_app.command("list")
def key_list(project: str = typer.Argument(..., help="Project name or id.")) -> None:
    """List a project's keys (prefixes only)."""
    with needs_extra("api"):            # optional: the HTTP API (FastAPI)
        from accord.api.http.auth import AuthAdminError, list_keys

    try:
        rows = list_keys(_engine(), project)
    except AuthAdminError as e:
        _fail(str(e))
        return
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
    from accord.cli.client import AccordClient

    if not _state.get("key"):
        _fail("give the API key with --key or ACCORD_API_KEY")
    return AccordClient(_state["url"], _state["key"])


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from accord.cli.client import ApiError

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
    """Create a campaign on the server and start a run of it."""
    document = safe_load(campaign.read_text(encoding="utf-8"))
    with _client() as client:
        created = _call(client.create_campaign, document)
        run = _call(client.start_run, created["id"], budget_usd=budget)
        console.print(f"run [bold]{run['id']}[/] of campaign {created['name']} (id {created['id']}): "
                      f"{run['total']} requests, {run['cached']} from cache")
        if follow:
            statuses = _call(lambda: list(_follow(client, run["id"]))) or [run]
            _print_status(_call(client.run, run["id"]) or statuses[-1])


def _follow(client: Any, run_id: int) -> Any:
    for status in client.follow(run_id):
        finished = status["done"] + status["failed"] + status["cancelled"]
        err_console.print(f"  {status['status']}: {finished}/{status['total']} (cached {status['cached']}, "
                          f"failed {status['failed']}) ${status['cost_usd']:.4f}", highlight=False)
        yield status


def _print_status(s: dict[str, Any]) -> None:
    console.print(f"run {s['id']}: [bold]{s['status']}[/] — {s['done']} rated ({s['cached']} from cache), "
                  f"{s['failed']} failed, {s['cancelled']} cancelled of {s['total']}; cost ${s['cost_usd']:.4f}")


@remote_app.command("status")
def remote_status(run_id: int | None = typer.Argument(None, help="A run id (default: list runs).")) -> None:
    """A run's status, or the project's runs."""
    with _client() as client:
        if run_id is not None:
            s = _call(client.run, run_id)
            _print_status(s)
            for f in s.get("failures_by_kind", []):
                console.print(f"  [red]{f['kind']}[/]: {f['count']} (e.g. {f['example']})", highlight=False)
            return
        for s in _call(client.runs) or []:
            _print_status(s)


@remote_app.command("results")
def remote_results(run_id: int, output: Path = typer.Option(..., "--output", "-o"),
                   fmt: str = typer.Option("csv", "--format", help="csv or parquet")) -> None:
    """Download a run's ratings."""
    with _client() as client:
        _call(client.export_ratings, run_id, output, format=fmt)
    console.print(f"wrote {output}")


@remote_app.command("report")
def remote_report(run_id: int, output: Path = typer.Option(..., "--output", "-o")) -> None:
    """Download a finished run's HTML report."""
    with _client() as client:
        html = _call(client.report_html, run_id)
    output.write_text(html, encoding="utf-8")
    console.print(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("openapi")(openapi)
    app.add_typer(project_app, name="project")
    app.add_typer(key_app, name="key")
    app.add_typer(remote_app, name="remote")

