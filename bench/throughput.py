"""Throughput against a rate-limited provider: accord distributed, accord embedded and a plain asyncio loop
over the OpenAI SDK, side by side, at each limit given.

    python bench/throughput.py [--requests 20000] [--rpm 6000,24000] [--latency-ms 200] [--workers 2]
                               [--concurrency N] [--chunk-size 16] [--baseline-requests N] [--skip-baseline]
                               [--skip-distributed] [--skip-embedded] [--skip-cache]

All on this machine: PostgreSQL (a throwaway database), Redis (databases 8 and 9, queues of their own),
the OpenAI-wire fake server in a subprocess (``--latency-ms`` per answer, a hard limit of ``--rpm``
requests per sliding minute answered with 429 + retry-after beyond it).

1. accord: ``--requests`` distinct rating requests (1,000 items with distinct texts x samples) as one
   distributed run, ``--workers`` ``accord worker`` processes (prefork, ``--concurrency`` children each;
   by default as many chunk slots in all as the embedded stage keeps chunks in flight at the highest limit,
   so both modes hold the same number of chunks at a time) and an ``accord scheduler``. Prints the achieved requests/min at the server as a ratio of the limit
   (target >= 0.95), 429s received (target < 0.5% of requests), the most requests the server accepted in
   any 1 s and 60 s window, accord's CPU time per request (workers and scheduler, children included,
   from submit to the run's last rating; the metrics computed after the run are printed apart),
   and the end-to-end time (submit to finished) against the ideal requests / limit.
2. cache: the identical campaign again; every request is answered from the response cache (zero calls at
   the server). Prints requests/s from submit to finished, expansion included.
3. baseline: a plain asyncio loop over the official SDK (``AsyncOpenAI``, its own retries honouring
   retry-after) with a semaphore sized by Little's law (rate x latency), the same prompts and decoding,
   nothing stored. Same figures, side by side.
4. embedded: the same requests as one embedded run in this process (``accord run``'s path: the in-process
   limiter, the same execution function), against the same database; CPU is this process's.

The server enforces its limit as a token bucket of one second's capacity (``limit_mode: bucket``), the way
providers enforce short windows. Every accord stage but the cache stage calls the provider for every
request (``cache: false``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_cli import Opt, make_parser   # also puts the checkout on sys.path


BROKER_URL = "redis://127.0.0.1:6379/8"
REDIS_URL = "redis://127.0.0.1:6379/9"
SAMPLES = 20


@dataclass
class Figures:
    name: str
    requests: int
    calls: int
    rate_limited: int
    rpm: float
    max_1s: int
    max_60s: int
    cpu_s: float
    end_to_end_s: float


def window_figures(stats: dict[str, Any]) -> tuple[float, int, int]:
    from tests.fakes.server_core import max_in_window

    times = sorted(stats["accepted_times"])
    if len(times) < 2:
        return 0.0, len(times), len(times)
    rpm = (len(times) - 1) / (times[-1] - times[0]) * 60.0
    return rpm, max_in_window(times, 1.0), max_in_window(times, 60.0)


def model_concurrency(rpm: int, latency_ms: float) -> int:
    """The campaign's ``max_concurrency``: the calls in flight at the limit (Little's law on the server's
    latency) with a margin for the client's own time per call (rendering, parsing, the event loop's lag on a
    busy machine: a cap of 1.25x held the embedded run to 0.969 of the limit at 6,000/min)."""
    return math.ceil(rpm / 60.0 * latency_ms / 1000.0 * 1.5) + 2


def chunk_slots(rpm: int, latency_ms: float, chunk_size: int) -> int:
    """Chunks in flight: what the embedded stage runs at once, and (by default) the distributed stack's worker
    slots in all, so both modes hold the same number of chunks at a time."""
    from accord.models.settings import get_settings

    return max(get_settings().embedded_concurrency, math.ceil(model_concurrency(rpm, latency_ms) / chunk_size) + 2)


def campaign_doc(base_url: str, rpm: int, name: str, latency_ms: float = 200.0, cache: bool = False) -> dict[str, Any]:
    # enough calls in flight to reach the limit (Little's law, as the plain loop's semaphore, with a quarter
    # more for the spread of latencies): more would only keep idle connections for the HTTP pool to scan
    concurrency = model_concurrency(rpm, latency_ms)
    return {"name": name, "dataset": "bench", "dimension": "Q_overall", "samples": SAMPLES,
            "decoding": {"temperature": 0.7, "seed": 1, "max_tokens": 16}, "cache": cache,
            "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": base_url,
                        "rpm": rpm, "max_concurrency": concurrency}],
            "templates": ["likert_unsafe"]}


async def baseline_loop(base_url: str, jobs: list[dict[str, Any]], concurrency: int) -> None:
    """What one would write without accord: the SDK, a semaphore, its built-in retries."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=8)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(kwargs: dict[str, Any]) -> None:
        async with semaphore:
            await client.chat.completions.create(**kwargs)

    await asyncio.gather(*(one(job) for job in jobs))
    await client.close()


def baseline_jobs(engine: Any, n: int) -> list[dict[str, Any]]:
    """The accord run's prompts and decoding as plain chat.completions arguments."""
    from accord.models.schema import Item
    from accord.worker.prompt_templates import load_template, render_messages
    from accord.worker.providers.openai_provider import TOP_LOGPROBS, response_format
    from sqlmodel import Session, select

    template = load_template("likert_unsafe")
    with Session(engine) as session:
        items = list(session.exec(select(Item).order_by(Item.id)))
    jobs = []
    for sample in range(SAMPLES):
        for item in items:
            jobs.append({"model": "gpt-4o-mini", "messages": render_messages(template, item.content),
                         "temperature": 0.7, "seed": 1 + sample, "max_tokens": 16, "logprobs": True,
                         "top_logprobs": TOP_LOGPROBS, "response_format": response_format(list(template.labels), False)})
            if len(jobs) == n:
                return jobs
    return jobs


def run_limit(args: argparse.Namespace, rpm_limit: int, engine: Any, server: Any, stack: Any,
              pgids: set[int]) -> list[Figures]:
    """The stages at one limit; the server's bucket starts full for each."""
    from accord.scheduler.campaign_spec import parse_campaign
    from accord.scheduler.embedded import run_embedded
    from accord.scheduler.expand import create_run
    from accord.worker.rate_limiter import LocalRateLimiter

    from tests.integration.distributed_stack import process_group_cpu_seconds, rating_counts, wait_for_run

    figures: list[Figures] = []
    ideal_s = args.requests / rpm_limit * 60.0

    def fresh_server() -> None:
        server.configure(rpm=rpm_limit, window_s=1.0, limit_mode="bucket")
        server.reset_stats()

    # 1. accord, distributed
    if not args.skip_distributed:
        fresh_server()
        spec = parse_campaign(campaign_doc(server.base_url, rpm_limit, f"throughput-{rpm_limit}", args.latency_ms))
        started = time.perf_counter()
        plan = create_run(engine, spec, mode="distributed")
        expand_s = time.perf_counter() - started
        cpu_before = process_group_cpu_seconds(pgids)
        submitted = time.perf_counter()
        p = wait_for_run(engine, plan.run_id, timeout=ideal_s * 6 + 120, stack=stack)
        end_to_end = time.perf_counter() - submitted
        cpu = process_group_cpu_seconds(pgids) - cpu_before
        # The run's metrics are computed after it finishes (a worker's postprocess task); wait for them, so that
        # they neither race into the execution figure nor run beside the next stage, and report them apart.
        wait_for_run(engine, plan.run_id, timeout=600, stack=stack, postprocessed=True)
        analysis_cpu = process_group_cpu_seconds(pgids) - cpu_before - cpu
        stats = server.stats()
        rpm, max_1s, max_60s = window_figures(stats)
        n_req, n_rat, n_dis = rating_counts(engine, plan.run_id)
        print(f"[{rpm_limit}/min] accord distributed, run {plan.run_id}: {p.status}, {p.done} rated "
              f"({p.cached} cached), {p.failed} failed; ratings {n_rat} for {n_req} requests ({n_dis} distinct); "
              f"expansion {expand_s:.1f} s; metrics after the run {analysis_cpu:.1f} s of cpu (not in the table's "
              "cpu, as for the other stages)", flush=True)
        figures.append(Figures("accord (distributed)", plan.total, stats["accepted"], stats["rate_limited"], rpm,
                               max_1s, max_60s, cpu, end_to_end))

        # 2. cache hits: the same requests again, answered from the response cache
        if not args.skip_cache:
            server.reset_stats()
            started = time.perf_counter()
            doc = campaign_doc(server.base_url, rpm_limit, f"throughput-{rpm_limit}", args.latency_ms, cache=True)
            again = create_run(engine, parse_campaign(doc), mode="distributed")
            p2 = wait_for_run(engine, again.run_id, timeout=600, stack=stack)
            cache_s = time.perf_counter() - started
            wait_for_run(engine, again.run_id, timeout=600, stack=stack, postprocessed=True)   # not beside the next
            calls = server.stats()["requests"]
            print(f"[{rpm_limit}/min] cache: run {again.run_id} {p2.status}, {p2.cached}/{again.total} from the "
                  f"cache, {calls} calls at the server, {cache_s:.1f} s submit to finished "
                  f"({again.total / cache_s:,.0f} requests/s)", flush=True)

    # 3. accord, embedded (this process)
    if not args.skip_embedded:
        fresh_server()
        spec = parse_campaign(campaign_doc(server.base_url, rpm_limit, f"throughput-embedded-{rpm_limit}",
                                           args.latency_ms))
        plan = create_run(engine, spec)
        limiter = LocalRateLimiter()   # what run_embedded would make, kept to read its figures
        cpu0 = time.process_time()
        started = time.perf_counter()
        p = run_embedded(engine, plan.run_id, chunk_size=args.chunk_size, limiter=limiter,
                         concurrency=chunk_slots(rpm_limit, args.latency_ms, args.chunk_size))
        elapsed = time.perf_counter() - started
        cpu_e = time.process_time() - cpu0
        stats = server.stats()
        rpm_e, max_1s_e, max_60s_e = window_figures(stats)
        n_req, n_rat, n_dis = rating_counts(engine, plan.run_id)
        print(f"[{rpm_limit}/min] accord embedded, run {plan.run_id}: {p.status}, {p.done} rated, {p.failed} failed; "
              f"ratings {n_rat} for {n_req} requests ({n_dis} distinct); limiter: {limiter.stats.counts['acquired']} "
              f"admitted, {limiter.stats.counts['window_waits']} held at send time (woke up late into a full second)", flush=True)
        figures.append(Figures("accord (embedded)", plan.total, stats["accepted"], stats["rate_limited"], rpm_e,
                               max_1s_e, max_60s_e, cpu_e, elapsed))

    # 4. baseline
    if not args.skip_baseline:
        n = args.baseline_requests or args.requests
        jobs = baseline_jobs(engine, n)
        fresh_server()
        concurrency = math.ceil(rpm_limit / 60.0 * args.latency_ms / 1000.0)
        cpu0 = time.process_time()
        started = time.perf_counter()
        asyncio.run(baseline_loop(server.base_url, jobs, concurrency))
        elapsed = time.perf_counter() - started
        cpu_b = time.process_time() - cpu0
        stats = server.stats()
        rpm_b, max_1s_b, max_60s_b = window_figures(stats)
        figures.append(Figures(f"plain SDK loop (semaphore {concurrency})", len(jobs), stats["accepted"],
                               stats["rate_limited"], rpm_b, max_1s_b, max_60s_b, cpu_b, elapsed))
    return figures


def print_table(rpm_limit: int, latency_ms: float, figures: list[Figures]) -> None:
    print()
    print(f"limit {rpm_limit} requests/min (token bucket, 1 s capacity), {latency_ms:g} ms per answer")
    header = f"{'':34} {'requests':>9} {'rpm':>8} {'ratio':>6} {'429s':>6} {'429 %':>6} {'max/1s':>7} " \
             f"{'max/60s':>8} {'cpu ms/req':>10} {'time s':>7} {'vs ideal':>8}"
    print(header)
    base = next((f for f in figures if f.name.startswith("plain")), None)
    for f in figures:
        ideal = f.requests / rpm_limit * 60.0
        print(f"{f.name:34} {f.requests:>9,} {f.rpm:>8.0f} {f.rpm / rpm_limit:>6.3f} {f.rate_limited:>6} "
              f"{100.0 * f.rate_limited / max(f.requests, 1):>6.2f} {f.max_1s:>7} {f.max_60s:>8} "
              f"{1000.0 * f.cpu_s / max(f.requests, 1):>10.2f} {f.end_to_end_s:>7.0f} {f.end_to_end_s / ideal:>8.2f}")
    if base is not None:
        per_req = base.cpu_s / max(base.requests, 1)
        for f in figures:
            if f is not base and per_req > 0:
                print(f"  {f.name}: cpu per request {f.cpu_s / max(f.requests, 1) / per_req:.2f}x the loop's, "
                      f"ratio {f.rpm / max(base.rpm, 1e-9):.3f}x the loop's")
    print(f"(cpu: accord distributed = its worker and scheduler processes; embedded and the loop = this process. "
          f"os.cpu_count() = {os.cpu_count()}, shared with the fake server and PostgreSQL)")


def main(argv: list[str] | None = None) -> None:
    parser = make_parser(__doc__, {
        "--requests": 20_000, "--rpm": Opt("6000,24000", "one limit or several, comma-separated"),
        "--latency-ms": 200.0, "--workers": 2,
        "--concurrency": Opt(None, "prefork children per worker (default: the embedded stage's chunks in flight at "
                                   "the highest limit, split over the workers)", int),
        "--chunk-size": 16, "--baseline-requests": Opt(None, "default: --requests", int), "--skip-baseline": False,
        "--skip-cache": False, "--skip-embedded": False,
        "--skip-distributed": Opt(False, "no worker processes: the embedded run and the loop only, no cache stage")})
    args = parser.parse_args(argv)
    if args.requests % SAMPLES:
        parser.error(f"--requests must be a multiple of {SAMPLES}")
    limits = [int(x) for x in str(args.rpm).split(",") if x.strip()]
    if args.concurrency is None:
        args.concurrency = math.ceil(chunk_slots(max(limits), args.latency_ms, args.chunk_size) / args.workers)

    from accord.models.migrate import init_db

    from tests.conftest import make_pg_database
    from tests.fakes.openai_server import openai_subprocess
    from tests.integration.distributed_stack import DistributedStack, import_distinct_dataset, tear_down

    url, db_name = make_pg_database()
    server = openai_subprocess({"latency_ms": args.latency_ms, "rpm": limits[0], "window_s": 1.0,
                                "limit_mode": "bucket", "max_log": 0})
    stack = None
    results: list[tuple[int, list[Figures]]] = []
    try:
        engine = init_db(url)
        home = Path(tempfile.mkdtemp(prefix="accord-bench-"))
        import_distinct_dataset(engine, home / "dataset", args.requests // SAMPLES)
        server.start()
        pgids: set[int] = set()
        if not args.skip_distributed:
            stack = DistributedStack(database_url=url, broker_url=BROKER_URL, redis_url=REDIS_URL, home=home,
                                     workers=args.workers, concurrency=args.concurrency, chunk_size=args.chunk_size,
                                     lease_seconds=120, reconcile_seconds=5,
                                     extra_env={"ACCORD_DISPATCH_INTERVAL": "0.25"})
            stack.start()
            pgids = {p.pid for p in [*stack.workers.values(), stack.scheduler] if p is not None}
            print(f"stack: {args.workers} workers x {args.concurrency} processes, chunks of {args.chunk_size}; "
                  f"server: {args.latency_ms:g} ms; logs in {stack.log_dir}", flush=True)
        for rpm_limit in limits:
            results.append((rpm_limit, run_limit(args, rpm_limit, engine, server, stack, pgids)))
    finally:
        tear_down(stack, server, db_name)
        import redis

        for redis_url in (BROKER_URL, REDIS_URL):   # the benchmark's own Redis databases
            redis.Redis.from_url(redis_url).flushdb()
    for rpm_limit, figures in results:
        print_table(rpm_limit, args.latency_ms, figures)


if __name__ == "__main__":
    main()
