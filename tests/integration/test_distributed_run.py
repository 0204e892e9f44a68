"""Distributed execution end to end with real processes: two `accord worker` processes (Celery, prefork)
and an `accord scheduler` against the machine's Redis (dedicated database numbers, a queue prefix of their
own) and a throwaway PostgreSQL database, rating against the OpenAI-wire fake server in a subprocess.

Covers: every request rated exactly once; the global rate limit at the server with two workers; 429s with
retry-after honoured; kill -9 of a worker mid-run; pause / resume; cancel; budget cap; cache hits across
runs; `accord run --distributed`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from accord.models.schema import Metric
from accord.scheduler import run_control
from accord.scheduler.campaign_spec import CampaignSpec, parse_campaign
from accord.scheduler.expand import create_run
from sqlalchemy import func, select
from sqlmodel import Session

from tests.fakes.server_core import max_in_window
from tests.integration.distributed_stack import (
    DistributedStack,
    rating_counts,
    status_counts,
    tear_down,
    wait_for_run,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

BROKER_URL = "redis://127.0.0.1:6379/14"
REDIS_URL = "redis://127.0.0.1:6379/15"
N_ITEMS = 40


def services_up() -> bool:
    import socket

    for port in (5432, 6379):
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return False
    return True


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    if not services_up():
        pytest.skip("PostgreSQL and Redis must run on 127.0.0.1 (make test starts them)")
    from accord.models.dataset_import import import_dataset
    from accord.models.import_spec import ImportSpec
    from accord.models.migrate import init_db

    from tests.conftest import make_pg_database
    from tests.fakes.openai_server import openai_subprocess
    from tests.fakes.synthetic_dataset import make_sparse_dataset

    home = tmp_path_factory.mktemp("distributed")
    url, db_name = make_pg_database()
    server = openai_subprocess({"latency_ms": 50, "max_log": 2000})
    stack: DistributedStack | None = None
    try:
        engine = init_db(url)
        kwargs = make_sparse_dataset(home / "dataset", n_items=N_ITEMS, n_annotators=30, seed=5)
        import_dataset(engine, ImportSpec(**{**kwargs, "name": "syn"}))
        server.start()
        try:   # the server stands in for a remote provider with CPUs of its own: keep it responsive
            os.setpriority(os.PRIO_PROCESS, server.process.pid, -5)  # type: ignore[union-attr]
        except OSError:
            pass
        stack = DistributedStack(database_url=url, broker_url=BROKER_URL, redis_url=REDIS_URL, home=home,
                                 workers=2, concurrency=2, chunk_size=8, lease_seconds=10, reconcile_seconds=2,
                                 extra_env={"ACCORD_MAX_ATTEMPTS": "6", "ACCORD_DISPATCH_AHEAD_SECONDS": "3"})
        stack.start()
        yield {"engine": engine, "server": server, "stack": stack, "home": home, "url": url}
    finally:
        tear_down(stack, server, db_name)
        flush_dedicated(BROKER_URL, REDIS_URL)


def flush_dedicated(*urls: str) -> None:
    """Empty this module's own Redis databases (hot-cache entries would otherwise linger for their TTL)."""
    import redis

    for url in urls:
        try:
            redis.Redis.from_url(url, socket_timeout=5).flushdb()
        except redis.RedisError:
            pass


def campaign(server: Any, name: str, *, samples: int = 2, rpm: int | None = 3000, items: int | None = None,
             **over: Any) -> CampaignSpec:
    model = {"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
             "max_concurrency": 16, "price": {"input": 0.15, "output": 0.6}}
    if rpm is not None:
        model["rpm"] = rpm
    model.update(over.pop("model", {}))
    # A decoding seed per campaign name: runs of different tests never answer each other from the cache.
    doc = {"name": name, "dataset": "syn", "dimension": "Q_overall", "samples": samples,
           "decoding": {"temperature": 0.7, "seed": zlib.crc32(name.encode()) % 100_000, "max_tokens": 32},
           "models": [model],
           "templates": ["likert_unsafe"]}
    if items is not None:
        doc["items"] = {"limit": items}
    doc.update(over)
    return parse_campaign(doc)


def chunk_lines(stack: DistributedStack, worker: str) -> int:
    return stack.log(worker).count("chunk ")


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def test_run_rates_every_request_exactly_once(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack = env["engine"], env["server"], env["stack"]
    server.reset_stats()
    plan = create_run(engine, campaign(server, "once", samples=3), mode="distributed")
    assert plan.total == N_ITEMS * 3
    p = wait_for_run(engine, plan.run_id, 120, stack=stack, postprocessed=True)
    assert (p.status, p.done, p.failed, p.cancelled) == ("completed", plan.total, 0, 0)
    assert rating_counts(engine, plan.run_id) == (plan.total, plan.total, plan.total)
    assert status_counts(engine, plan.run_id) == {"done": plan.total}
    stats = server.stats()
    assert stats["ok"] == p.done - p.cached           # one call per request not answered from the cache
    assert chunk_lines(stack, "w1") > 0 and chunk_lines(stack, "w2") > 0    # both workers took chunks
    run = run_control.get_run(engine, plan.run_id)
    assert run.error is None
    with Session(engine) as s:
        n_metrics = s.execute(select(func.count()).select_from(Metric).where(Metric.run_id == plan.run_id)).scalar_one()
    assert n_metrics > 0                               # post-processing ran once the run completed


def test_global_rate_limit_holds_across_two_workers(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack = env["engine"], env["server"], env["stack"]
    server.reset_stats()
    before = (chunk_lines(stack, "w1"), chunk_lines(stack, "w2"))
    rpm = 300                                          # 5 requests per second, shared by both workers
    # The server enforces the limit as providers do over short windows: a token bucket of one second's
    # capacity. Arrival jitter on a loaded machine can put six requests in some second; the bucket absorbs
    # that, a rate above the limit it does not.
    server.configure(rpm=rpm, window_s=1.0, limit_mode="bucket")
    try:
        plan = create_run(engine, campaign(server, "limit", samples=2, rpm=rpm, items=20), mode="distributed")
        p = wait_for_run(engine, plan.run_id, 120, stack=stack)
    finally:
        server.configure(rpm=None, window_s=60.0, limit_mode="window")
    assert (p.status, p.done, p.failed) == ("completed", plan.total, 0)
    stats = server.stats()
    assert stats["rate_limited"] <= 1                   # < 0.5% of 80 requests would be none; one at the most
    times = sorted(stats["accepted_times"])
    assert len(times) == plan.total - p.cached
    assert max_in_window(times, 60.0) <= rpm           # never more than the limit in any minute
    achieved = (len(times) - 1) / (times[-1] - times[0]) * 60
    assert 0.85 * rpm <= achieved <= 1.05 * rpm        # and close to it, not above it
    assert chunk_lines(stack, "w1") > before[0] and chunk_lines(stack, "w2") > before[1]


def test_server_429s_are_honoured_and_slow_the_limiter(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack = env["engine"], env["server"], env["stack"]
    server.reset_stats()
    server.configure(rpm=240, window_s=1.0)            # the provider allows 4/s ...
    try:
        plan = create_run(engine, campaign(server, "429", samples=1, rpm=600, items=40), mode="distributed")  # ... we claim 10/s
        p = wait_for_run(engine, plan.run_id, 120, stack=stack)
    finally:
        server.configure(rpm=None, window_s=60.0)
    stats = server.stats()
    assert (p.status, p.done, p.failed) == ("completed", plan.total, 0)   # retried, nothing lost
    assert stats["rate_limited"] > 0
    assert stats["rate_limited"] < plan.total          # retry-after and the slow-down kept 429s in check
    assert rating_counts(engine, plan.run_id) == (plan.total, plan.total, plan.total)


def test_kill_minus_nine_of_a_worker_mid_run_loses_and_duplicates_nothing(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack = env["engine"], env["server"], env["stack"]
    server.reset_stats()
    plan = create_run(engine, campaign(server, "kill", samples=6, rpm=2400), mode="distributed")
    wait_until(lambda: run_control.read_progress(engine, plan.run_id).done >= 30, 60, "first ratings")
    stack.kill_worker("w1")
    assert status_counts(engine, plan.run_id).get("done", 0) < plan.total      # killed mid-run
    try:
        p = wait_for_run(engine, plan.run_id, 120, stack=stack)
        assert (p.status, p.done, p.failed) == ("completed", plan.total, 0)
        assert rating_counts(engine, plan.run_id) == (plan.total, plan.total, plan.total)
        assert status_counts(engine, plan.run_id) == {"done": plan.total}
        logs = stack.log("w2") + stack.log("scheduler")
        assert "whose lease expired" in logs               # the killed worker's chunks came back by lease expiry
    finally:
        stack.start_worker("w1")
        stack.wait_ready()


def test_pause_stops_progress_and_resume_completes(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack = env["engine"], env["server"], env["stack"]
    plan = create_run(engine, campaign(server, "pause", samples=3, rpm=2400), mode="distributed")
    wait_until(lambda: run_control.read_progress(engine, plan.run_id).done >= 16, 60, "first ratings")
    run_control.pause_run(engine, plan.run_id)
    # in-flight chunks finish, queued ones hand their requests back
    wait_until(lambda: "queued" not in status_counts(engine, plan.run_id), 30, "queued chunks to drain")
    paused_done = run_control.read_progress(engine, plan.run_id).done
    time.sleep(2.0)
    p = run_control.read_progress(engine, plan.run_id)
    assert (p.status, p.done) == ("paused", paused_done)      # no progress while paused
    assert paused_done < plan.total
    run_control.resume_run(engine, plan.run_id)
    p = wait_for_run(engine, plan.run_id, 120, stack=stack)
    assert (p.status, p.done, p.failed) == ("completed", plan.total, 0)
    assert rating_counts(engine, plan.run_id) == (plan.total, plan.total, plan.total)


def test_cancel_ends_the_run_with_consistent_counts(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack = env["engine"], env["server"], env["stack"]
    plan = create_run(engine, campaign(server, "cancel", samples=4, rpm=1200), mode="distributed")
    wait_until(lambda: run_control.read_progress(engine, plan.run_id).done >= 16, 60, "first ratings")
    run_control.cancel_run(engine, plan.run_id)
    p = wait_for_run(engine, plan.run_id, 60, stack=stack)
    assert p.status == "cancelled"
    assert p.done + p.failed + p.cancelled == plan.total
    assert 16 <= p.done < plan.total and p.cancelled > 0
    counts = status_counts(engine, plan.run_id)
    assert "pending" not in counts and "queued" not in counts
    assert counts["done"] == p.done and counts["cancelled"] == p.cancelled
    assert rating_counts(engine, plan.run_id)[1:] == (p.done, p.done)
    time.sleep(1.0)
    assert run_control.read_progress(engine, plan.run_id).done == p.done      # in-flight work finished before


def test_budget_cap_ends_the_run_budget_exhausted(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack = env["engine"], env["server"], env["stack"]
    per_mtok = 10.0                                    # ~170 input tokens a request: ~$0.0017 each
    budget = 0.03
    spec = campaign(server, "budget", samples=3, rpm=1200, budget_usd=budget,
                    model={"price": {"input": per_mtok, "output": per_mtok}})
    plan = create_run(engine, spec, mode="distributed")
    p = wait_for_run(engine, plan.run_id, 90, stack=stack)
    assert p.status == "budget_exhausted"
    assert p.done + p.failed + p.cancelled == plan.total
    assert 0 < p.done < plan.total and p.cancelled > 0
    counts = status_counts(engine, plan.run_id)
    assert "pending" not in counts and "queued" not in counts
    assert rating_counts(engine, plan.run_id)[1:] == (p.done, p.done)
    assert p.cost_usd <= budget                        # reserved before sending: never past the budget


def test_identical_run_is_answered_from_the_cache(env) -> None:  # type: ignore[no-untyped-def]
    engine, server, stack = env["engine"], env["server"], env["stack"]
    first = create_run(engine, campaign(server, "cache", samples=2, rpm=3000, items=20), mode="distributed")
    p1 = wait_for_run(engine, first.run_id, 90, stack=stack)
    assert (p1.status, p1.done) == ("completed", first.total)
    server.reset_stats()
    second = create_run(engine, campaign(server, "cache", samples=2, rpm=3000, items=20), mode="distributed")
    assert second.cached == second.total
    p2 = wait_for_run(engine, second.run_id, 60, stack=stack)
    assert (p2.status, p2.done, p2.cached, p2.cost_usd) == ("completed", second.total, second.total, 0.0)
    assert server.stats()["requests"] == 0             # zero calls at the server
    assert rating_counts(engine, second.run_id) == (second.total, second.total, second.total)


def test_cli_run_distributed_follows_the_run_to_the_end(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, stack = env["server"], env["stack"]
    doc = campaign(server, "cli", samples=1, rpm=3000, items=16).model_dump(mode="json", exclude_none=True)
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "accord.cli.main", "run", "--distributed", str(path)],
                            check=False, env=stack.env, cwd=stack.env["PYTHONPATH"].split(os.pathsep)[0], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted: 16 rating requests" in result.stdout
    assert "completed" in result.stdout
    assert "no `accord scheduler` is running" not in result.stdout


def test_fine_subjects_and_judges_distributed(env) -> None:  # type: ignore[no-untyped-def]
    """Subjects answer and a judge rates the open answers through the Celery workers: every subject asked once,
    every open answer judged once, judge requests created as the answers are stored."""
    from accord.models.schema import Answer, Rating, RatingRequest

    engine, server, stack = env["engine"], env["server"], env["stack"]
    server.reset_stats()
    example = Path(__file__).resolve().parents[2] / "examples" / "fake_alignment"
    gpt = {"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
           "price": {"input": 0.15, "output": 0.6}}
    spec = parse_campaign({
        "name": "fine-distributed", "dataset": "fake_alignment", "dataset_import": str(example / "import.yaml"),
        "items": {"limit": 6}, "decoding": {"temperature": 0.7, "seed": 4242},
        "subjects": {"models": [gpt], "templates": ["fine_open_question",
                                                    {"name": "fine_multiple_choice", "params": {"option_order": "AB"}},
                                                    {"name": "fine_multiple_choice", "params": {"option_order": "BA"}}]},
        "judges": {"models": [{**gpt, "name": "judge"}], "templates": ["fine_judge_safety"]}})
    plan = create_run(engine, spec, mode="distributed")
    p = wait_for_run(engine, plan.run_id, 120, stack=stack, postprocessed=True)
    assert (p.status, p.done, p.failed, p.total) == ("completed", 6 * 4, 0, 6 * 4)
    assert server.stats()["ok"] == 6 * 4 - p.cached
    with Session(engine) as s:
        n_answers = s.execute(select(func.count()).select_from(Answer).where(Answer.run_id == plan.run_id)).scalar_one()
        judged = s.execute(select(func.count(func.distinct(RatingRequest.answer_id))).join(Rating).where(
            RatingRequest.run_id == plan.run_id, RatingRequest.stage == "judge")).scalar_one()
        names = set(s.execute(select(Metric.name).where(Metric.run_id == plan.run_id)).scalars())
    assert (n_answers, judged) == (6 * 3, 6)
    assert {"fine_cs", "fine_css"} <= names


def test_kill_minus_nine_during_judging_asks_nothing_stored_again(env) -> None:  # type: ignore[no-untyped-def]
    """A worker killed while the judges run: the run completes with every answer stored once and judged once;
    the only calls made again are those the killed worker had in flight (at most a chunk per process)."""
    from accord.models.schema import Answer, Rating, RatingRequest

    engine, server, stack = env["engine"], env["server"], env["stack"]
    server.reset_stats()
    example = Path(__file__).resolve().parents[2] / "examples" / "fake_alignment"
    gpt = {"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
           "price": {"input": 0.15, "output": 0.6}}
    spec = parse_campaign({
        "name": "fine-kill", "dataset": "fake_alignment", "dataset_import": str(example / "import.yaml"),
        "cache": False, "decoding": {"temperature": 0.7, "seed": 777},
        "subjects": {"models": [gpt], "samples": 2, "templates": ["fine_open_question"]},
        "judges": {"models": [{**gpt, "name": "judge", "rpm": 600}], "templates": ["fine_judge_safety"],
                   "samples": 2}})
    plan = create_run(engine, spec, mode="distributed")
    n_gen, n_judge = 36 * 2, 36 * 2 * 2

    def judged() -> int:
        with Session(engine) as s:
            return int(s.execute(select(func.count()).select_from(Rating).where(Rating.run_id == plan.run_id)).scalar_one())

    wait_until(lambda: judged() >= 4, 90, "first judgments")
    stack.kill_worker("w1")
    assert judged() < n_judge                                                    # killed while judging
    try:
        p = wait_for_run(engine, plan.run_id, 180, stack=stack)
        assert (p.status, p.done, p.failed, p.total) == ("completed", n_gen + n_judge, 0, n_gen + n_judge)
        with Session(engine) as s:
            answers = s.execute(select(func.count(), func.count(func.distinct(Answer.request_id)))
                                .where(Answer.run_id == plan.run_id)).one()
            judgments = s.execute(select(func.count(), func.count(func.distinct(Rating.request_id)))
                                  .where(Rating.run_id == plan.run_id)).one()
            per_answer = s.execute(select(RatingRequest.answer_id, func.count()).where(
                RatingRequest.run_id == plan.run_id, RatingRequest.stage == "judge")
                .group_by(RatingRequest.answer_id)).all()
        assert tuple(answers) == (n_gen, n_gen) and tuple(judgments) == (n_judge, n_judge)
        assert len(per_answer) == n_gen and {n for _, n in per_answer} == {2}   # each answer: its 2 judge samples
        extra = server.stats()["ok"] - (n_gen + n_judge)
        assert 0 <= extra <= 2 * 8          # at most the killed worker's in-flight chunks (2 processes x 8)
    finally:
        stack.start_worker("w1")
        stack.wait_ready()


def test_pairwise_and_listwise_judges_distributed(env) -> None:  # type: ignore[no-untyped-def]
    """Three subjects answer through the Celery workers, which store their answers concurrently; each ordered pair
    of two subjects' answers and each item's list is created once (the run row is locked while comparisons are
    created) and judged once."""
    from accord.models.schema import AnswerComparison, Rating, RatingRequest
    from accord.scheduler.stages import resolve_stages

    engine, server, stack = env["engine"], env["server"], env["stack"]
    server.reset_stats()
    example = Path(__file__).resolve().parents[2] / "examples" / "harm_ranking"

    def model(name: str, seed: int) -> dict:  # type: ignore[type-arg]
        return {"name": name, "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                "decoding": {"seed": seed}}

    n_items = 6
    spec = parse_campaign({
        "name": "ranking-distributed", "dataset": "harm_ranking", "dataset_import": str(example / "import.yaml"),
        "items": {"limit": n_items}, "cache": False,
        "subjects": {"models": [model(f"s{k}", k) for k in range(3)], "templates": ["answer_prompt"]},
        "judges": {"models": [model("judge", 9)], "templates": ["judge_harm_pairwise", "judge_harm_listwise"]}})
    expected = resolve_stages(spec).request_count(spec, n_items)
    assert expected == n_items * (3 + 6 + 1)
    plan = create_run(engine, spec, mode="distributed")
    p = wait_for_run(engine, plan.run_id, 120, stack=stack, postprocessed=True)
    assert (p.status, p.failed, p.total, p.done) == ("completed", 0, expected, expected)
    assert server.stats()["ok"] == expected
    with Session(engine) as s:
        kinds = s.execute(select(AnswerComparison.kind, func.count()).where(AnswerComparison.run_id == plan.run_id)
                          .group_by(AnswerComparison.kind)).all()
        rated = s.execute(select(func.count(func.distinct(RatingRequest.comparison_id))).join(Rating).where(
            RatingRequest.run_id == plan.run_id)).scalar_one()
        names = set(s.execute(select(Metric.name).where(Metric.run_id == plan.run_id)).scalars())
    assert dict(kinds) == {"pair": n_items * 6, "list": n_items} and rated == n_items * 7
    assert {"judge_position_flip_share", "judge_comparison_parsed"} <= names
