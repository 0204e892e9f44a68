"""``accord run / status / results / report --remote URL``: the local commands against a server, through the
Python client (``accord.cli.client``), with the same outputs: run waits for the run and its report and prints
the same summary (exit 1 when more requests failed than the campaign's ``max_failed_share``), status the same
lines, results writes CSV (to stdout without ``-o``) or Parquet, report writes the HTML or the JSON.

Every HTTP failure is one line, ``error: HTTP <status>: <problem detail>``; an unreachable server too."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import httpx
import typer
from accord.cli.app import fail
from accord.extras import needs_extra
from accord.cli.client import AccordClient, ApiError
from accord.cli.progress import PlainProgress
from accord.models.yaml_loader import load_mapping
from accord.report.metrics import metrics_frame
from accord.scheduler.campaign_spec import CampaignSpec
from rich.console import Console
from rich.table import Table

T = TypeVar("T")
REMOTE_HELP = "Do it on the accord server at this URL (with --key or ACCORD_API_KEY) instead of the local database."


def remote_option() -> Any:
    return typer.Option(None, "--remote", help=REMOTE_HELP)


def key_option() -> Any:
    return typer.Option(None, "--key", envvar="ACCORD_API_KEY", help="API key for --remote.")


class RemoteError(Exception):
    """One line to print, and the exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@contextmanager
def remote_client(url: str, key: str | None) -> Iterator[AccordClient]:
    if not key:
        raise RemoteError("--key: give the API key of the server's project with --key or ACCORD_API_KEY")
    if not url.startswith(("http://", "https://")):
        raise RemoteError(f"--remote: expected an http:// or https:// URL, got {url[:200]!r}")
    with AccordClient(url, key) as client:
        yield client


def call(url: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args)``, its HTTP failure as one line."""

    try:
        return fn(*args, **kwargs)
    except ApiError as e:
        raise RemoteError(str(e)) from None
    except (httpx.TransportError, OSError) as e:
        raise RemoteError(f"--remote: cannot reach {url}: {e or type(e).__name__}") from None


def as_progress(status: dict[str, Any]) -> SimpleNamespace:
    """A run's status document in the shape of the local progress (what the summary line prints)."""
    return SimpleNamespace(run_id=status["id"], **{k: status[k] for k in (
        "status", "total", "done", "failed", "cached", "cancelled", "input_tokens", "output_tokens", "cost_usd")})


def run(url: str, key: str | None, campaign: Path, budget: float | None, console: Console, err: Console,
        print_summary: Callable[[Any], None], check_share: Callable[[int, int, int, float], None]) -> None:
    """Create the campaign on the server, start a run, follow it to its report, print the summary."""

    document = load_mapping(lambda: campaign.read_text(encoding="utf-8"),
                            lambda message: RemoteError(f"{campaign}: {message}"),
                            unreadable="cannot read the campaign", not_yaml="not a YAML or JSON campaign",
                            not_mapping="a campaign is a mapping of fields (name, dataset, models, templates, ...)")
    with remote_client(url, key) as client:
        created = call(url, client.create_campaign, document)
        started = call(url, client.start_run, created["id"], budget_usd=budget)
        run_id = started["id"]
        console.print(f"run [bold]{run_id}[/] of campaign [bold]{created['name']}[/] on {url}: {started['total']} "
                      f"requests, {started['cached']} answered from cache", highlight=False)

        plain = PlainProgress(lambda line: err.print(line, highlight=False, soft_wrap=True))

        def follow() -> None:   # the local run's plain lines (every 10 s, and the last), on stderr
            last = None
            for s in client.follow(run_id, until_report=True):
                last = SimpleNamespace(run_id=run_id, finished=s["done"] + s["failed"] + s["cancelled"], **{
                    k: s[k] for k in ("total", "cached", "failed", "cost_usd")})
                plain(last)
            if last is not None:
                plain(last, final=True)

        call(url, follow)
        final = call(url, client.run, run_id)
    print_summary(as_progress(final))
    if final.get("report_ready"):
        console.print(f"See the metrics with [bold]accord report {run_id} --remote {url}[/]", highlight=False)
    elif final.get("error"):
        console.print(f"[red]{final['error']}[/]", highlight=False)
    threshold = created.get("spec", {}).get("max_failed_share")
    check_share(run_id, final["failed"], final["total"],
                CampaignSpec.model_fields["max_failed_share"].default if threshold is None else float(threshold))


def status(url: str, key: str | None, run_id: int | None, console: Console,
           print_summary: Callable[[Any], None]) -> None:

    with remote_client(url, key) as client:
        if run_id is not None:
            s = call(url, client.run, run_id)
            print_summary(as_progress(s))
            for f in s.get("failures_by_kind", []):
                console.print(f"  [red]failed:[/] {f['count']} x {f['kind']} (e.g. {f['example']})",
                              highlight=False, soft_wrap=True)
            return
        runs = call(url, client.recent_runs, 20)
        datasets = call(url, client.datasets)
    t = Table(title="runs")
    for col in ("run", "campaign", "status", "done", "cached", "failed", "total", "cost $"):
        t.add_column(col)
    for r in runs:
        t.add_row(str(r["id"]), r["campaign"], r["status"], str(r["done"]), str(r["cached"]), str(r["failed"]),
                  str(r["total"]), f"{r['cost_usd']:.4f}")
    console.print(t)
    d = Table(title="datasets")
    for col in ("id", "name", "dimensions", "source"):
        d.add_column(col)
    for ds in datasets:
        d.add_row(str(ds["id"]), ds["name"], ", ".join(ds.get("dimensions") or []), str(ds.get("source") or "")[:60])
    console.print(d)


def results(url: str, key: str | None, run_id: int, fmt: str, output: Path | None, table: str,
            console: Console) -> None:
    if table != "ratings":
        raise RemoteError(f"--table {table}: the server exports a run's ratings only; export {table} where the "
                          "database is (without --remote)")
    with remote_client(url, key) as client:
        if fmt == "parquet" or output is not None:
            target = output or Path(f"run-{run_id}-{table}.{fmt}")
            call(url, client.export_ratings, run_id, target, format=fmt)
            console.print(f"wrote {target}", highlight=False)
        else:
            call(url, client.export_ratings, run_id, sys.stdout.buffer, format=fmt)
            sys.stdout.flush()


def report(url: str, key: str | None, run_id: int, fmt: str, output: Path | None, default_html: Path,
           console: Console) -> None:
    """The metrics table and the HTML report, as the local command (or the report's JSON)."""
    with remote_client(url, key) as client:
        if fmt == "json":
            text = call(url, client.report_json, run_id)
            if output:
                output.write_text(text, encoding="utf-8")
                console.print(f"wrote {output}", highlight=False)
            else:
                sys.stdout.write(text + "\n")
            return
        html = call(url, client.report_html, run_id)      # the run is finished: its metrics are stored
        metrics = call(url, client.metrics, run_id)
    with needs_extra("report"):                 # optional: matplotlib, behind the report's figures
        from accord.report.build import run_metrics_table
    console.print(run_metrics_table(run_id, metrics_frame(metrics), console.width))
    target = output or default_html
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    console.print(f"report: [bold]{target.resolve()}[/]", highlight=False)


def run_remote(fn: Callable[..., None], *args: Any) -> None:
    """A ``--remote`` command; its failures as one line (exit 2, or the code it carries)."""
    try:
        fn(*args)
    except RemoteError as e:
        fail(str(e), e.code)
