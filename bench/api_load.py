"""Load test of the HTTP API on loopback: status and progress reads while a run is in flight.

    python bench/api_load.py [--duration 20] [--workers 16] [--streams 4]

What it does, all on 127.0.0.1:
1. starts a fake OpenAI-compatible provider (tests/fakes/openai_server.py, 300 ms per answer) in a child
   process, and the accord API (uvicorn, embedded execution, SQLite) in another;
2. uploads the bundled DICES demo subset over HTTP and starts a run against the fake provider
   (40 items x 2 templates x 4 samples = 320 requests, 4 at a time: ~30 s of work);
3. while the run is in flight, ``--workers`` asyncio clients (httpx) loop over run status, the runs list
   and rating pages, and ``--streams`` clients hold the run's server-sent event stream, for the first half
   of ``--duration`` seconds (the baseline mix); for the second half the readers also read the result pages:
   the item explorer and an item (JSON and dashboard HTML), the comparison, the dashboard's run page
   (bounded: it also stops after ``--max-requests``);
4. prints requests/s, p50/p95/p99 latency per endpoint and overall, errors, and how far the run got while
   being read (it must keep progressing), with both mixes side by side.

The per-key rate limit is raised for the benchmark (it measures the server, not the limiter)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench_cli import REPO, Opt, parse_args   # also puts the checkout on sys.path

DEMO = REPO / "cli" / "datasets" / "dices_demo"
KEY_ENV = "ACCORD_BENCH_PROVIDER_KEY"


def serve(db_url: str, port: int, base_url: str) -> None:
    """The API server process."""
    import uvicorn
    from accord.api.http.app import create_app
    from accord.api.http.config import ApiSettings
    from accord.models.migrate import init_db

    settings = ApiSettings(json_logs=False, rate_limit_per_minute=1e9, rate_limit_burst=1_000_000,
                           allowed_base_urls=[base_url], allowed_key_envs=[KEY_ENV],
                           key_endpoints={KEY_ENV: [base_url]}, sse_interval_s=0.5,
                           cookie_secure=False)   # plain http on loopback: the dashboard's session cookie
    app = create_app(init_db(db_url), settings=settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    events: int = 0

    def add(self, name: str, seconds: float, status: int) -> None:
        self.latencies.setdefault(name, []).append(seconds)
        if status >= 400:
            key = f"{name} HTTP {status}"
            self.errors[key] = self.errors.get(key, 0) + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


ITEM = "240"   # an item of the demo subset


def endpoints(run_id: int, mix: str) -> list[tuple[str, str]]:
    """What the readers read besides the run's status (read every other request)."""
    base = [("runs list", "/api/v1/runs?limit=20"),
            ("ratings page", f"/api/v1/runs/{run_id}/ratings?limit=50&status=done")]
    if mix == "baseline":
        return base
    return base + [("items page", f"/api/v1/runs/{run_id}/items?per_page=50"),
                   ("item", f"/api/v1/runs/{run_id}/items/{ITEM}"),
                   ("comparison", f"/api/v1/runs/{run_id}/comparison"),
                   ("dashboard items", f"/dashboard/runs/{run_id}/items?sort=group_gap"),
                   ("dashboard item", f"/dashboard/runs/{run_id}/items/{ITEM}"),
                   ("dashboard run", f"/dashboard/runs/{run_id}")]


async def reader(client: httpx.AsyncClient, run_id: int, stats: Stats, stop_at: float, budget: list[int],
                 mix: str, cookie: str, offset: int = 0) -> None:
    """Reads the run's status every other request and the mix's other endpoints in turn, starting at
    ``offset`` in the rotation (readers start apart, so a short run on a slow machine still reads each)."""
    others = endpoints(run_id, mix)
    session = {"Cookie": f"accord_session={cookie}"}
    i = 2 * offset + 1
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        name, path = ("run status", f"/api/v1/runs/{run_id}") if i % 2 == 0 else others[(i // 2) % len(others)]
        i += 1
        started = time.perf_counter()
        try:
            response = await client.get(path, headers=session if path.startswith("/dashboard") else None)
            status = response.status_code
        except httpx.HTTPError:
            status = 599
        stats.add(name, time.perf_counter() - started, status)


async def streamer(client: httpx.AsyncClient, run_id: int, stats: Stats, stop_at: float) -> None:
    started = time.perf_counter()
    try:
        async with client.stream("GET", f"/api/v1/runs/{run_id}/events") as response:
            stats.add("event stream (open)", time.perf_counter() - started, response.status_code)
            async for line in response.aiter_lines():
                if line.startswith("event: progress"):
                    stats.events += 1
                if time.monotonic() >= stop_at:
                    return
    except httpx.HTTPError:
        stats.add("event stream (open)", time.perf_counter() - started, 599)


async def load(url: str, key: str, run_id: int, duration: float, workers: int, streams: int,
               max_requests: int, mix: str = "baseline", cookie: str = "") -> tuple[Stats, float]:
    stats = Stats()
    limits = httpx.Limits(max_connections=workers + streams + 4)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        started = time.monotonic()
        stop_at = started + duration
        budget = [max_requests]
        tasks = [reader(client, run_id, stats, stop_at, budget, mix, cookie, offset) for offset in range(workers)]
        tasks += [streamer(client, run_id, stats, stop_at) for _ in range(streams)]
        await asyncio.gather(*tasks)
        return stats, time.monotonic() - started


def summary(stats: Stats, elapsed: float) -> dict[str, Any]:
    """Requests, rate and latency percentiles of one load phase (event streams left out)."""
    latencies = [x for name, values in stats.latencies.items() if "stream" not in name for x in values]
    return {"duration_s": round(elapsed, 2), "requests": len(latencies),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
            "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2), "errors": stats.errors,
            "progress_events": stats.events}


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API server did not become ready")


def run_benchmark(duration: float = 20.0, workers: int = 16, streams: int = 4, max_requests: int = 200_000,
                  latency_ms: float = 300.0, samples: int = 4) -> dict[str, Any]:
    from accord.api.http.auth import create_key, create_project
    from accord.api.http.server import free_port
    from accord.cli.client import AccordClient
    from accord.models.migrate import init_db

    from tests.fakes.openai_server import openai_subprocess

    folder = Path(tempfile.mkdtemp(prefix="accord-api-load-"))
    db_url = f"sqlite:///{folder / 'accord.db'}"
    engine = init_db(db_url)
    project = create_project(engine, "load-test")
    key = create_key(engine, project.id).key  # type: ignore[arg-type]
    engine.dispose()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with openai_subprocess({"latency_ms": latency_ms}) as provider:
        env = {**os.environ, KEY_ENV: "bench-key", "ACCORD_HOME": str(folder),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", db_url, str(port),
                                   provider.base_url], env=env, cwd=REPO)
        try:
            wait_ready(url)
            spec = yaml.safe_load((DEMO / "import.yaml").read_text())
            mapping = {k: v for k, v in spec.items() if not k.endswith("_file")}
            with AccordClient(url, key) as client:
                client.upload_dataset(mapping, ratings_file=DEMO / spec["ratings_file"],
                                      items_file=DEMO / spec["items_file"])
                campaign = client.create_campaign({
                    "name": "load-test", "dataset": mapping["name"], "samples": samples,
                    "decoding": {"temperature": 0.7, "seed": 1},
                    "models": [{"name": "fake-gpt", "provider": "openai", "model": "gpt-4o-mini",
                                "base_url": provider.base_url, "api_key_env": KEY_ENV, "max_concurrency": 4}],
                    "templates": ["binary_unsafe", "likert_unsafe"]})
                run = client.start_run(campaign["id"])
                login = httpx.post(f"{url}/login", data={"api_key": key}, follow_redirects=False, timeout=30)
                cookie = login.cookies["accord_session"]
                time.sleep(1.0)
                before = client.run(run["id"])
                phases = {}
                for mix in ("baseline", "with_pages"):
                    phases[mix] = asyncio.run(load(url, key, run["id"], duration / 2, workers, streams,
                                                   max_requests // 2, mix, cookie))
                after = client.run(run["id"])
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    stats = Stats()
    for phase, _elapsed in phases.values():
        for name, values in phase.latencies.items():
            stats.latencies.setdefault(name, []).extend(values)
        for name, n in phase.errors.items():
            stats.errors[name] = stats.errors.get(name, 0) + n
        stats.events += phase.events
    elapsed = sum(e for _s, e in phases.values())
    result: dict[str, Any] = {
        "workers": workers, "streams": streams, **summary(stats, elapsed),
        "phases": {mix: summary(st, e) for mix, (st, e) in phases.items()},
        "run": {"id": run["id"], "total": run["total"], "finished_before": _finished(before),
                "finished_after": _finished(after), "status_after": after["status"]},
        "endpoints": {name: {"n": len(v), "p50_ms": round(statistics.median(v) * 1000, 2),
                             "p95_ms": round(percentile(v, 0.95) * 1000, 2)}
                      for name, v in sorted(stats.latencies.items())},
    }
    return result


def _finished(status: dict[str, Any]) -> int:
    return int(status["done"] + status["failed"] + status["cancelled"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    args = parse_args(__doc__, None, {
        "--duration": Opt(20.0, "Seconds of load (bounded)."), "--workers": Opt(16, "Concurrent request loops."),
        "--streams": Opt(4, "Concurrent SSE progress streams."),
        "--max-requests": Opt(200_000, "Stop after this many requests."),
        "--json": Opt(False, "Print the result as JSON only.")})
    result = run_benchmark(args.duration, args.workers, args.streams, args.max_requests)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    r = result
    print(f"API load on loopback: {r['workers']} readers + {r['streams']} SSE streams for {r['duration_s']} s "
          f"while run {r['run']['id']} ({r['run']['total']} requests) was in flight")
    for mix, p in r["phases"].items():
        label = "baseline mix (status, runs, ratings)" if mix == "baseline" else "with the result pages in the mix"
        print(f"  {label:40s} {p['requests']:6d} requests, {p['requests_per_s']:6.1f} requests/s; latency p50 "
              f"{p['p50_ms']} ms, p95 {p['p95_ms']} ms, p99 {p['p99_ms']} ms; errors: {p['errors'] or 'none'}")
    for name, e in r["endpoints"].items():
        print(f"  {name:22s} n={e['n']:6d}  p50 {e['p50_ms']:8.2f} ms  p95 {e['p95_ms']:8.2f} ms")
    print(f"  the run went from {r['run']['finished_before']} to {r['run']['finished_after']} finished requests "
          f"during the load ({r['run']['status_after']}); {r['progress_events']} progress events streamed")


if __name__ == "__main__":
    main()
