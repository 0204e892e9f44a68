"""A real distributed accord stack for tests and benchmarks: ``accord worker`` and ``accord scheduler``
subprocesses against a broker, Redis and PostgreSQL, with their own queue prefix (so concurrent test
sessions on one broker never share queues) and their own logs.

Also: ``private_redis_server`` (a Redis server of one's own, to flush without touching other tests) and
``recovery_scenario`` (broker and cache lost mid-run, a worker killed; issue 13, item 3)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.models.db import dispose_engines
from accord.models.schema import TERMINAL_RUN_STATUSES, Rating, RatingRequest
from accord.scheduler.run_control import Progress, read_progress
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tests.conftest import drop_pg_database

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {s.value for s in TERMINAL_RUN_STATUSES}


# accord's settings that a stack with ``tuned=False`` leaves to their defaults (also when the calling
# environment sets them).
TUNING_VARIABLES = ("ACCORD_CHUNK_SIZE", "ACCORD_LEASE_SECONDS", "ACCORD_PICKUP_SECONDS", "ACCORD_RECONCILE_SECONDS",
                    "ACCORD_POSTPROCESS_GRACE_SECONDS", "ACCORD_DISPATCH_INTERVAL", "ACCORD_DISPATCH_AHEAD_SECONDS",
                    "ACCORD_WORKER_CONCURRENCY", "ACCORD_MAX_CHUNKS_PER_RUN", "ACCORD_MAX_CHUNKS_PER_GROUP",
                    "ACCORD_MAX_ATTEMPTS", "ACCORD_VISIBILITY_TIMEOUT", "ACCORD_RATE_HEADROOM")


class DistributedStack:
    """``tuned=True`` (the tests' usual stack): small chunks, a 10 s lease, fast reconciliation, and
    ``concurrency`` children per worker. ``tuned=False``: accord's default settings for all of these (the
    ``chunk_size`` ... ``concurrency`` arguments are ignored), only connections, home and queue prefix set."""

    def __init__(self, *, database_url: str, broker_url: str, redis_url: str, home: Path,
                 result_backend: str | None = None, workers: int = 2, concurrency: int = 2, chunk_size: int = 8,
                 lease_seconds: int = 10, reconcile_seconds: float = 2.0, queues: str = "openai,control",
                 pool: str = "prefork", extra_env: dict[str, str] | None = None, tuned: bool = True) -> None:
        self.prefix = f"accordtest{uuid.uuid4().hex[:8]}"
        self.home = home
        self.log_dir = home / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.n_workers = workers
        self.concurrency: int | None = concurrency if tuned else None
        self.queues = queues
        self.pool = pool
        inherited = dict(os.environ) if tuned else {k: v for k, v in os.environ.items() if k not in TUNING_VARIABLES}
        tuning = {
            "ACCORD_CHUNK_SIZE": str(chunk_size),
            "ACCORD_LEASE_SECONDS": str(lease_seconds),
            "ACCORD_RECONCILE_SECONDS": str(reconcile_seconds),
            "ACCORD_POSTPROCESS_GRACE_SECONDS": "30",
            "ACCORD_DISPATCH_INTERVAL": "0.1",
        } if tuned else {}
        self.env = {
            **inherited,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "ACCORD_HOME": str(home),
            "ACCORD_DATABASE_URL": database_url,
            "ACCORD_BROKER_URL": broker_url,
            "ACCORD_RESULT_BACKEND": result_backend or redis_url,
            "ACCORD_REDIS_URL": redis_url,
            "ACCORD_QUEUE_PREFIX": self.prefix,
            **tuning,
            **(extra_env or {}),
        }
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.scheduler: subprocess.Popen[bytes] | None = None
        self._logs: list[Any] = []

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (open while the process runs)
        self._logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "accord.cli.main", *args], cwd=REPO, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        concurrency = ["-c", str(self.concurrency)] if self.concurrency is not None else []
        proc = self._spawn(name, ["worker", "-Q", self.queues, *concurrency, "-P", self.pool,
                                  "-n", f"{name}@{self.prefix}", "-l", "INFO"])
        self.workers[name] = proc
        return proc

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        self.scheduler = self._spawn("scheduler", ["scheduler", "-l", "INFO"])
        return self.scheduler

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.workers)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                proc = self.workers[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"worker {name} exited {proc.returncode}:\n{self.log(name)[-3000:]}")
                if " ready." in self.log(name):
                    pending.discard(name)
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"workers not ready after {timeout}s: {sorted(pending)}\n"
                               + "\n".join(self.log(n)[-2000:] for n in pending))
        if self.scheduler is not None:
            while "scheduler started" not in self.log("scheduler"):
                if self.scheduler.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"scheduler did not start:\n{self.log('scheduler')[-3000:]}")
                time.sleep(0.2)

    def start(self) -> DistributedStack:
        for i in range(self.n_workers):
            self.start_worker(f"w{i + 1}")
        self.start_scheduler()
        self.wait_ready()
        return self

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_worker(self, name: str) -> None:
        """kill -9 the worker's whole process group (the worker and any pool children)."""
        proc = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        procs = [p for p in [*self.workers.values(), self.scheduler] if p is not None and p.poll() is None]
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def __enter__(self) -> DistributedStack:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tear_down(stack: DistributedStack | None, server: Any, db_name: str) -> None:
    """Stop the stack's processes and the fake provider, release the engines, drop the run's database."""
    if stack is not None:
        stack.stop()
    server.stop()
    dispose_engines()
    drop_pg_database(db_name)


def wait_for_run(engine: Engine, run_id: int, timeout: float = 90.0, *, stack: DistributedStack | None = None,
                 postprocessed: bool = False) -> Progress:
    """Poll until the run is terminal and finished (and post-processed, if asked)."""
    from accord.scheduler.run_control import get_run

    deadline = time.monotonic() + timeout
    while True:
        p = read_progress(engine, run_id)
        if p.status in TERMINAL and p.finished_at is not None:
            if not postprocessed:
                return p
            run = get_run(engine, run_id)
            if run.postprocessed_at is not None or run.error:
                return p
        if time.monotonic() > deadline:
            logs = "" if stack is None else "\n".join(
                f"--- {n}\n{stack.log(n)[-2500:]}" for n in [*stack.workers, "scheduler"])
            raise AssertionError(f"run {run_id} not finished after {timeout}s: {p}\n{logs}")
        time.sleep(0.25)


def rating_counts(engine: Engine, run_id: int) -> tuple[int, int, int]:
    """(requests, ratings, distinct request ids among the ratings) of a run."""
    with Session(engine) as s:
        n_req = s.execute(select(func.count()).select_from(RatingRequest).where(RatingRequest.run_id == run_id)).scalar_one()
        n_rat = s.execute(select(func.count()).select_from(Rating).where(Rating.run_id == run_id)).scalar_one()
        n_dis = s.execute(select(func.count(func.distinct(Rating.request_id))).where(Rating.run_id == run_id)).scalar_one()
    return int(n_req), int(n_rat), int(n_dis)


def status_counts(engine: Engine, run_id: int) -> dict[str, int]:
    with Session(engine) as s:
        rows = s.execute(select(RatingRequest.status, func.count()).where(RatingRequest.run_id == run_id)
                         .group_by(RatingRequest.status)).all()
    return {str(k): int(v) for k, v in rows}


def import_distinct_dataset(engine: Engine, folder: Path, n_items: int, name: str = "bench", seed: int = 0) -> None:
    """The synthetic sparse dataset with ``n_items`` items whose texts are all distinct (the generator
    reuses phrases; a case number on each final response makes every rating request a distinct call)."""
    import csv

    from accord.models.dataset_import import import_dataset
    from accord.models.import_spec import ImportSpec

    from tests.fakes.synthetic_dataset import make_sparse_dataset

    kwargs = make_sparse_dataset(folder, n_items=n_items, n_annotators=60, raters_per_item=(2, 4), seed=seed)
    path = Path(kwargs["items_file"])
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    for i, row in enumerate(rows):
        row["response"] = f"{row['response']} (case {i})"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    import_dataset(engine, ImportSpec(**{**kwargs, "name": name}))


def process_group_cpu_seconds(pgids: set[int]) -> float:
    """CPU seconds (user + system, reaped children included) of every live process in these process
    groups, from /proc (Linux)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is the state (field 3); pgrp is field 5, utime..cstime are fields 14..17
        if int(fields[2]) in pgids:
            total += sum(int(x) for x in fields[11:15]) / tick
    return total


# ---------------------------------------------------------------------- a Redis server of one's own
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_redis_server(workdir: Path, timeout: float = 10.0) -> Iterator[int]:
    """A ``redis-server`` (the machine's binary) on a free port, without persistence; yields the port.
    Flushing it touches nobody else's data. Raises ``RuntimeError`` if it cannot start."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make test installs it)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("could not start a private redis-server") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ---------------------------------------------------------------------- issue 13, item 3
RECOVERY_REQUESTS = 3000
RECOVERY_RPM = 6000
RECOVERY_SAMPLES = 20


@dataclass
class RecoveryFigures:
    total: int
    rpm: int
    ideal_s: float                      # total / rpm
    elapsed_s: float = 0.0              # submitted -> finished (terminal status with finished_at)
    fault_at_s: float = 0.0             # submitted -> kill -9 and FLUSHDB
    done_at_fault: int = 0
    status: str = ""
    done: int = 0
    failed: int = 0
    counts: tuple[int, int, int] = (0, 0, 0)     # (requests, ratings, distinct request ids rated)
    statuses: dict[str, int] = field(default_factory=dict)
    server_ok: int = 0                  # answers the server gave (redone calls of lost chunks included)
    released_lines: int = 0             # "whose lease expired" log lines (scheduler and workers)
    timeline: list[tuple[float, int]] = field(default_factory=list)   # (seconds since submit, done)
    log_dir: str = ""

    @property
    def ratio(self) -> float:
        return self.elapsed_s / self.ideal_s

    def summary(self) -> str:
        return (f"recovery scenario: {self.total} requests at {self.rpm}/min (ideal {self.ideal_s:.0f} s), fault "
                f"at {self.fault_at_s:.1f} s with {self.done_at_fault} done: kill -9 of a worker, FLUSHDB of the "
                f"broker's and the cache's Redis databases, a new worker; {self.status} {self.done} done "
                f"{self.failed} failed after {self.elapsed_s:.1f} s = {self.ratio:.2f} x ideal (target <= 1.5); "
                f"ratings {self.counts[1]} for {self.counts[0]} requests ({self.counts[2]} distinct); "
                f"{self.server_ok} answers from the server")


def recovery_scenario(home: Path, *, redis_port: int, database_url: str, server_base_url: str,
                      server_stats: Any = None, total: int = RECOVERY_REQUESTS, rpm: int = RECOVERY_RPM,
                      fault_after_s: float = 20.0, fault_at_share: float = 0.4, timeout: float = 600.0,
                      extra_env: dict[str, str] | None = None, fault: bool = True) -> RecoveryFigures:
    """A distributed run of ``total`` distinct requests at ``rpm`` with two workers and accord's default
    settings (``tuned=False``) against a private Redis server (broker: database 0, limiter and cache:
    database 1). ``fault_after_s`` after submission or at ``fault_at_share`` of the run done, whichever
    comes first: ``kill -9`` of one worker, ``FLUSHDB`` of both Redis databases, a new worker started.
    Returns the figures once the run finished (or ``timeout`` passed: then ``status`` is not terminal).
    ``database_url`` must hold an empty, migrated database; ``fault=False`` runs the same without the fault
    (the machine's own ideal)."""
    import redis
    from accord.models.migrate import init_db
    from accord.scheduler.campaign_spec import parse_campaign
    from accord.scheduler.expand import create_run

    if total % RECOVERY_SAMPLES:
        raise ValueError(f"total must be a multiple of {RECOVERY_SAMPLES}")
    engine = init_db(database_url)
    import_distinct_dataset(engine, home / "dataset", total // RECOVERY_SAMPLES, name="recovery")
    broker_url, cache_url = f"redis://127.0.0.1:{redis_port}/0", f"redis://127.0.0.1:{redis_port}/1"
    stack = DistributedStack(database_url=database_url, broker_url=broker_url, redis_url=cache_url, home=home,
                             workers=2, tuned=False, extra_env=extra_env)
    figures = RecoveryFigures(total=total, rpm=rpm, ideal_s=total / rpm * 60.0, log_dir=str(stack.log_dir))
    try:
        stack.start()
        spec = parse_campaign({
            "name": "recovery", "dataset": "recovery", "dimension": "Q_overall", "samples": RECOVERY_SAMPLES,
            "decoding": {"temperature": 0.7, "seed": 13, "max_tokens": 16},
            "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server_base_url,
                        "rpm": rpm, "max_concurrency": 64}],
            "templates": ["likert_unsafe"]})
        plan = create_run(engine, spec, mode="distributed")
        if plan.total != total:
            raise AssertionError(f"the campaign expanded to {plan.total} requests, not {total}")
        submitted = time.monotonic()
        done = 0
        faulted = not fault
        p = read_progress(engine, plan.run_id)
        while time.monotonic() - submitted < timeout:
            p = read_progress(engine, plan.run_id)
            now = time.monotonic() - submitted
            if not figures.timeline or figures.timeline[-1][1] != p.done:
                figures.timeline.append((round(now, 2), p.done))
            done = p.done
            if p.status in TERMINAL and p.finished_at is not None:
                break
            if not faulted and (now >= fault_after_s or done >= fault_at_share * total):
                stack.kill_worker("w1")
                for url in (broker_url, cache_url):
                    redis.Redis.from_url(url).flushdb()
                stack.start_worker("w3")
                figures.fault_at_s, figures.done_at_fault = now, read_progress(engine, plan.run_id).done
                faulted = True
            time.sleep(0.1)
        figures.elapsed_s = time.monotonic() - submitted
        figures.status, figures.done, figures.failed = p.status, p.done, p.failed
        figures.counts = rating_counts(engine, plan.run_id)
        figures.statuses = status_counts(engine, plan.run_id)
        if server_stats is not None:
            figures.server_ok = int(server_stats().get("ok", 0))
        figures.released_lines = sum(stack.log(n).count("whose lease expired") for n in [*stack.workers, "scheduler"])
        if p.status not in TERMINAL or p.finished_at is None:
            figures.status = f"not finished ({p.status}, {done} done)"
        return figures
    finally:
        stack.stop()
        engine.dispose()
