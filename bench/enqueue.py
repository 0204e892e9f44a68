"""Time to expand and enqueue a 1,000,000-request distributed run.

    python bench/enqueue.py [--items 5000] [--samples 200] [--chunk-size 16] [--sample-chunks 2000]

Against the machine's PostgreSQL (a throwaway database) and Redis (database 10, a queue of its own):
1. imports a synthetic dataset of ``--items`` items (all texts distinct);
2. ``create_run`` of a campaign with ``--samples`` samples per item (mode distributed): expansion
   (rendering, cache keys) and the bulk insert of every rating request, in one transaction;
3. the dispatcher's enqueue path: claim a chunk in the database and publish it to the provider queue
   (a real Celery message), ``--sample-chunks`` times, with 0% and with 90% of the run already done (the
   claim must not slow down as a run progresses); prints chunks/s and the projected time to enqueue the
   whole run. The dispatcher never does that at once (back-pressure keeps a few seconds of work queued),
   so the projection is the feeding capacity: how many requests per second one scheduler can hand out;
4. one dispatcher tick against the million-request run (what the scheduler does every 0.25 s).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench_cli import parse_args   # also puts the checkout on sys.path


BROKER_URL = "redis://127.0.0.1:6379/10"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__, argv, {"--items": 5000, "--samples": 200, "--chunk-size": 16, "--sample-chunks": 2000})

    prefix = f"accordbench{os.getpid()}"
    os.environ.update({"ACCORD_BROKER_URL": BROKER_URL, "ACCORD_RESULT_BACKEND": BROKER_URL,
                       "ACCORD_QUEUE_PREFIX": prefix})
    import redis
    from accord.models.db import dispose_engines
    from accord.models.migrate import init_db
    from accord.scheduler import run_control
    from accord.scheduler.campaign_spec import parse_campaign
    from accord.scheduler.chunk_leases import ChunkClaimer, analyze_requests
    from accord.scheduler.dispatcher import Dispatcher
    from accord.scheduler.expand import create_run
    from accord.worker.celery_app import EXECUTE_TASK, provider_queue, send
    from sqlalchemy import text

    from tests.conftest import drop_pg_database, make_pg_database
    from tests.integration.distributed_stack import import_distinct_dataset

    url, db_name = make_pg_database()
    queue = provider_queue("openai")
    broker = redis.Redis.from_url(BROKER_URL)
    try:
        engine = init_db(url)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            import_distinct_dataset(engine, Path(tmp) / "dataset", args.items)
            print(f"dataset: {args.items} items imported in {time.perf_counter() - started:.1f} s")
        spec = parse_campaign({
            "name": "million", "dataset": "bench", "dimension": "Q_overall", "samples": args.samples,
            "decoding": {"temperature": 0.7, "seed": 1, "max_tokens": 16},
            "models": [{"name": "gpt", "provider": "openai", "model": "gpt-4o-mini",
                        "base_url": "http://127.0.0.1:9/v1", "rpm": 6000}],
            "templates": ["likert_unsafe"]})
        started = time.perf_counter()
        plan = create_run(engine, spec, mode="distributed")
        expand_s = time.perf_counter() - started
        print(f"expand: {plan.total:,} rating requests created in {expand_s:.1f} s "
              f"({plan.total / expand_s:,.0f} requests/s)")
        run_control.mark_started(engine, plan.run_id)
        with engine.connect() as conn:
            spec_id = conn.execute(text("SELECT model_spec_id FROM rating_request WHERE run_id = :r LIMIT 1"),
                                   {"r": plan.run_id}).scalar_one()

        analyze_requests(engine)   # what the dispatcher does when a run starts

        def enqueue(n: int) -> float:
            claimer = ChunkClaimer(engine)    # a fresh dispatcher: its cursor starts at the first id
            started = time.perf_counter()
            for _ in range(n):
                chunk_id, ids = claimer.claim(plan.run_id, spec_id, args.chunk_size, 600)
                send(EXECUTE_TASK, [plan.run_id, chunk_id, ids], queue)
            return time.perf_counter() - started

        results = {}
        for label, done_fraction in (("0% done", 0.0), ("90% done", 0.9)):
            if done_fraction:
                with engine.begin() as conn:   # pretend most of the run is finished
                    conn.execute(text("UPDATE rating_request SET status = 'done' WHERE run_id = :r AND status = 'pending' "
                                      "AND id < (SELECT min(id) + :n FROM rating_request WHERE run_id = :r)"),
                                 {"r": plan.run_id, "n": int(plan.total * done_fraction)})
                analyze_requests(engine)
            seconds = enqueue(args.sample_chunks)
            results[label] = seconds
            rate = args.sample_chunks / seconds
            print(f"enqueue ({label}): {args.sample_chunks} chunks of {args.chunk_size} in {seconds:.2f} s: "
                  f"{rate:,.0f} chunks/s = {rate * args.chunk_size:,.0f} requests/s; the whole run would take "
                  f"{plan.total / args.chunk_size / rate:.0f} s")
        depth = broker.llen(queue)
        print(f"broker queue {queue}: {depth} messages")
        broker.delete(queue)
        with engine.begin() as conn:   # hand the sampled chunks back, as if they had never been sent
            conn.execute(text("UPDATE rating_request SET status = 'pending', chunk_id = NULL, leased_until = NULL "
                              "WHERE run_id = :r AND status = 'queued'"), {"r": plan.run_id})

        sent = []
        dispatcher = Dispatcher(engine, chunk_size=args.chunk_size, lease_seconds=600,
                                send_chunk=lambda q, r, c, ids: sent.append(len(ids)), on_finished=lambda r: None)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            dispatcher.tick()
            timings.append(time.perf_counter() - started)
        print(f"dispatcher tick with a {plan.total:,}-request run: {min(timings) * 1000:.0f}-{max(timings) * 1000:.0f} ms "
              f"({len(sent)} chunks handed out over 5 ticks)")
        print(f"SUMMARY expand_s={expand_s:.1f} expand_rps={plan.total / expand_s:.0f} "
              f"enqueue_rps_0={args.sample_chunks * args.chunk_size / results['0% done']:.0f} "
              f"enqueue_rps_90={args.sample_chunks * args.chunk_size / results['90% done']:.0f}")
    finally:
        broker.delete(queue)
        dispose_engines()
        drop_pg_database(db_name)


if __name__ == "__main__":
    main()
