"""Recovery from a lost broker and a killed worker (issue 13, item 3), with accord's default settings.

    python bench/recovery.py [--requests 3000] [--rpm 6000] [--fault-after 20] [--fault-at-share 0.4]
                             [--latency-ms 50] [--no-baseline]

All on this machine: PostgreSQL (a throwaway database), a private ``redis-server`` on a free port (broker:
database 0, limiter and cache: database 1; flushing it touches nobody else), the OpenAI-wire fake server in
a subprocess, two ``accord worker`` processes and an ``accord scheduler`` with default settings.

1. baseline (unless ``--no-baseline``): the run without a fault, this machine's own best time.
2. the scenario: ``--fault-after`` seconds after submission or at ``--fault-at-share`` of the run done,
   whichever comes first, ``kill -9`` of one worker, ``FLUSHDB`` of both Redis databases, a new worker.

Prints each run's end-to-end time (submit to finished) against the ideal (requests / rpm; target: the
scenario within 1.5 x), whether every request was rated exactly once, and progress over time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench_cli import parse_args   # also puts the checkout on sys.path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, {"--requests": 3000, "--rpm": 6000, "--fault-after": 20.0, "--fault-at-share": 0.4,
                                      "--latency-ms": 50.0, "--no-baseline": False})

    from accord.models.db import dispose_engines

    from tests.conftest import drop_pg_database, make_pg_database
    from tests.fakes.openai_server import openai_subprocess
    from tests.integration.distributed_stack import private_redis_server, recovery_scenario

    work = Path(tempfile.mkdtemp(prefix="accord-recovery-"))
    runs = [("baseline (no fault)", False)] if not args.no_baseline else []
    runs.append(("kill -9 + FLUSHDB + new worker", True))
    results = []
    ok = True
    for i, (name, fault) in enumerate(runs):
        url, db_name = make_pg_database()
        server = openai_subprocess({"latency_ms": args.latency_ms, "max_log": 0})
        try:
            server.start()
            with private_redis_server(work / f"redis{i}") as port:
                f = recovery_scenario(work / f"run{i}", redis_port=port, database_url=url,
                                      server_base_url=server.base_url, server_stats=server.stats,
                                      total=args.requests, rpm=args.rpm, fault_after_s=args.fault_after,
                                      fault_at_share=args.fault_at_share, fault=fault)
        finally:
            server.stop()
            dispose_engines()
            drop_pg_database(db_name)
        exactly_once = f.counts == (f.total, f.total, f.total) and f.statuses == {"done": f.total}
        ok = ok and exactly_once and f.status == "completed"
        results.append((name, f, exactly_once))
        print(f"{name}: {f.summary() if fault else f'{f.status} after {f.elapsed_s:.1f} s'}", flush=True)
        step = max(1, len(f.timeline) // 20)
        print("  progress (s: done): " + ", ".join(f"{t:.0f}: {d}" for t, d in f.timeline[::step]), flush=True)
        print(f"  logs: {f.log_dir}", flush=True)

    print()
    print(f"{args.requests:,} requests at {args.rpm:,}/min: ideal {args.requests / args.rpm * 60:.0f} s; "
          "default settings, two workers")
    print(f"{'':34} {'status':>10} {'time s':>7} {'x ideal':>8} {'once':>5} {'fault at':>9} {'done then':>9}")
    for name, f, once in results:
        fault_at = f"{f.fault_at_s:.1f} s" if f.fault_at_s else "-"
        done_then = f"{f.done_at_fault}" if f.fault_at_s else "-"
        print(f"{name:34} {f.status:>10} {f.elapsed_s:>7.1f} {f.ratio:>8.2f} {'yes' if once else 'NO':>5} "
              f"{fault_at:>9} {done_then:>9}")
    scenario = results[-1][1]
    print(f"target: the scenario within 1.5 x ideal: {'met' if scenario.ratio <= 1.5 else 'missed'} "
          f"({scenario.ratio:.2f})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
