"""Commands of the distributed mode: ``accord worker``, ``accord scheduler`` and ``accord run --distributed``
(``run_distributed``). ``accord.cli.main`` calls ``register(app)``.

Celery and Redis (the distributed mode's dependencies) are imported by the functions that use them, so the
other commands start without them."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import typer
from sqlalchemy.engine import Engine

from accord.cli.app import console, open_engine
from accord.cli.launch import start_run
from accord.cli.progress import print_run_summary, progress_bar
from accord.extras import needs_extra
from accord.models.schema import TERMINAL_RUN_STATUSES
from accord.models.settings import get_settings
from accord.scheduler.dispatcher import Dispatcher, DispatchReport
from accord.scheduler.run_control import Progress, get_run, read_progress

HEARTBEAT_SECONDS = 10


def heartbeat_key() -> str:
    with needs_extra("distributed"):            # optional: Celery and redis-py
        from accord.worker.celery_app import get_distributed_settings

    return f"accord:scheduler:{get_distributed_settings().queue_prefix}:heartbeat"


def scheduler_alive() -> bool | None:
    """True/False from the scheduler's heartbeat in Redis; None when Redis cannot be asked."""
    with needs_extra("distributed"):            # optional: Celery and redis-py
        import redis

    try:
        client = redis.Redis.from_url(get_settings().redis_url, socket_timeout=3, socket_connect_timeout=3)
        return bool(client.exists(heartbeat_key()))
    except redis.RedisError:
        return None


def resolve_queues(spec: str) -> list[str]:
    """'openai,control' -> full queue names; names already carrying the prefix pass through."""
    with needs_extra("distributed"):            # optional: Celery and redis-py
        from accord.worker.celery_app import CONTROL, PROVIDER_QUEUES, get_distributed_settings, queue_name

    prefix = get_distributed_settings().queue_prefix + "."
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        part = part.removeprefix(prefix)
        if part not in (*PROVIDER_QUEUES, CONTROL):
            raise typer.BadParameter(f"unknown queue {part!r}; expected some of {', '.join((*PROVIDER_QUEUES, CONTROL))}",
                                     param_hint="--queues")
        out.append(queue_name(part))
    if not out:
        raise typer.BadParameter("no queue given", param_hint="--queues")
    return out


def worker_cmd(
    queues: str = typer.Option("openai,anthropic,local,control", "--queues", "-Q",
                               help="Queues to serve: provider kinds (openai, anthropic, local) and/or control."),
    concurrency: int | None = typer.Option(None, "--concurrency", "-c",
                                              help="Chunk tasks at once (default ACCORD_WORKER_CONCURRENCY, 4)."),
    pool: str = typer.Option("prefork", "--pool", "-P",
                             help="prefork (a process per slot, each with its event loop), threads (one shared loop) or solo."),
    loglevel: str = typer.Option("INFO", "--loglevel", "-l"),
    hostname: str | None = typer.Option(None, "--hostname", "-n", help="Worker node name (default celery@host)."),
) -> None:
    """Start a Celery worker executing chunks of rating requests."""
    with needs_extra("distributed"):            # optional: Celery and redis-py
        from accord.worker.celery_app import app as celery_app
        from accord.worker.celery_app import get_distributed_settings

    names = resolve_queues(queues)
    n = concurrency or get_distributed_settings().worker_concurrency
    argv = ["worker", f"--queues={','.join(names)}", f"--concurrency={n}", f"--pool={pool}",
            f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    celery_app.worker_main(argv)


def scheduler_cmd(
    interval: float | None = typer.Option(None, help="Seconds between dispatcher ticks (default ACCORD_DISPATCH_INTERVAL)."),
    beat: bool = typer.Option(True, "--beat/--no-beat", help="Also run Celery beat (the reconciliation schedule)."),
    loglevel: str = typer.Option("INFO", "--loglevel", "-l"),
) -> None:
    """Run the periodic side: the dispatcher loop (feeds chunks to the queues) and Celery beat."""
    with needs_extra("distributed"):            # optional: Celery and redis-py
        import redis
        from accord.scheduler.beat import start_embedded_beat
        from accord.worker.celery_app import app as celery_app
        from accord.worker.celery_app import get_distributed_settings

    logging.basicConfig(level=getattr(logging, loglevel.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    dist = get_distributed_settings()
    engine = open_engine()
    dispatcher = Dispatcher(engine, chunk_size=settings.chunk_size, lease_seconds=settings.lease_seconds,
                            ahead_seconds=dist.dispatch_ahead_seconds, max_chunks_per_run=dist.max_chunks_per_run,
                            max_chunks_per_group=dist.max_chunks_per_group)
    service = start_embedded_beat(celery_app) if beat else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)
    last_beat = [0.0]

    def on_tick(report: DispatchReport) -> None:
        now = time.monotonic()
        if now - last_beat[0] >= 2.0:
            try:
                client.set(heartbeat_key(), str(time.time()), ex=HEARTBEAT_SECONDS)
                last_beat[0] = now
            except redis.RedisError:
                pass

    logging.getLogger("accord.scheduler").info("scheduler started (chunk size %d, lease %ds)",
                                               settings.chunk_size, settings.lease_seconds)
    try:
        dispatcher.run_forever(interval or dist.dispatch_interval, stop=stop.is_set, on_tick=on_tick)
    finally:
        if service is not None:
            service.stop()


def follow_distributed(engine: Engine, run_id: int, total: int, poll: float = 0.5) -> Progress:
    """Show the run's progress bar until it reaches a terminal status (Ctrl-C detaches; the run goes on)."""
    terminal = {s.value for s in TERMINAL_RUN_STATUSES}
    started = time.monotonic()
    p = read_progress(engine, run_id)
    try:
        with progress_bar() as bar:
            task = bar.add_task("rating", total=total, run_id=run_id, rate="0.0", cost=0.0, cached=0, failed=0)
            while True:
                p = read_progress(engine, run_id)
                elapsed = max(time.monotonic() - started, 1e-6)
                bar.update(task, completed=p.finished, rate=f"{(p.finished - p.cached) / elapsed:.1f}",
                           cost=p.cost_usd, cached=p.cached, failed=p.failed)
                if p.status in terminal and p.finished_at is not None:
                    return p
                time.sleep(poll)
    except KeyboardInterrupt:
        console.print(f"detached; run {run_id} goes on. Follow it with [bold]accord status {run_id}[/]")
        return p


def run_distributed(campaign_path: Path | str, budget: float | None, project: str | None = None) -> Progress:
    """``accord run --distributed``: create the run (mode distributed), let the scheduler feed it to the
    workers, and follow it with the progress bar. ``project``: the ``--project`` given (None: the CLI's)."""
    engine, spec, plan = start_run(Path(campaign_path), budget, "distributed", project=project)
    console.print(f"run [bold]{plan.run_id}[/] of campaign [bold]{spec.name}[/] submitted: {plan.total} rating "
                  f"requests, {plan.cached} answered from cache")
    alive = scheduler_alive()
    if alive is False:
        console.print("[yellow]warning:[/] no `accord scheduler` is running: the run waits until one starts "
                      "(and `accord worker` processes serve its queues)")
    elif alive is None:
        console.print("[yellow]warning:[/] cannot reach Redis to check for a running scheduler")
    progress = follow_distributed(engine, plan.run_id, plan.total)
    print_run_summary(progress)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and progress.finished_at is not None:
        run = get_run(engine, plan.run_id)
        if run.postprocessed_at is not None or run.error:
            break
        time.sleep(0.5)
    run = get_run(engine, plan.run_id)
    if run.postprocessed_at is not None:
        console.print(f"metrics stored. See them with [bold]accord report {plan.run_id}[/]")
    elif run.error:
        console.print(f"[red]{run.error}[/]")
    return progress


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_cmd)
    app.command("scheduler")(scheduler_cmd)
