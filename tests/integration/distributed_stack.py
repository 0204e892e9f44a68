"""A real distributed accord stack for tests and benchmarks: ``accord worker`` and ``accord scheduler``
subprocesses against a broker, Redis and PostgreSQL, with their own queue prefix (so concurrent test
sessions on one broker never share queues) and their own logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from accord.models.schema import TERMINAL_RUN_STATUSES, Rating, RatingRequest
from accord.scheduler.run_control import Progress, read_progress
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {s.value for s in TERMINAL_RUN_STATUSES}


class DistributedStack:
    def __init__(self, *, database_url: str, broker_url: str, redis_url: str, home: Path,
                 result_backend: str | None = None, workers: int = 2, concurrency: int = 2, chunk_size: int = 8,
                 lease_seconds: int = 10, reconcile_seconds: float = 2.0, queues: str = "openai,control",
                 pool: str = "prefork", extra_env: dict[str, str] | None = None) -> None:
        self.prefix = f"accordtest{uuid.uuid4().hex[:8]}"
        self.home = home
        self.log_dir = home / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.n_workers = workers
        self.concurrency = concurrency
        self.queues = queues
        self.pool = pool
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "ACCORD_HOME": str(home),
            "ACCORD_DATABASE_URL": database_url,
            "ACCORD_BROKER_URL": broker_url,
            "ACCORD_RESULT_BACKEND": result_backend or redis_url,
            "ACCORD_REDIS_URL": redis_url,
            "ACCORD_QUEUE_PREFIX": self.prefix,
            "ACCORD_CHUNK_SIZE": str(chunk_size),
            "ACCORD_LEASE_SECONDS": str(lease_seconds),
            "ACCORD_RECONCILE_SECONDS": str(reconcile_seconds),
            "ACCORD_POSTPROCESS_GRACE_SECONDS": "30",
            "ACCORD_DISPATCH_INTERVAL": "0.1",
            **(extra_env or {}),
        }
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.scheduler: subprocess.Popen[bytes] | None = None
        self._logs: list[Any] = []

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (open while the process runs)
        self._logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "accord.api.cli", *args], cwd=REPO, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        proc = self._spawn(name, ["worker", "-Q", self.queues, "-c", str(self.concurrency), "-P", self.pool,
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
