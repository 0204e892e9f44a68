"""Pairwise and listwise judges end to end, embedded, against the OpenAI wire-protocol fake server, on SQLite and
PostgreSQL: three subjects answer the harm-ranking prompts; one judge model rates each answer (1-5), each ordered
pair of two subjects' answers (both orders) and the list of the three answers. Every pair and list is created
once — also when the subjects' answers are stored concurrently by three chunks and a chunk is re-delivered — the
run's total is what the campaign's request count predicted, a listwise verdict that is not a permutation is
unparseable, and the analysis ranks the subjects by each format with position bias and Kendall's W; the judge also
behind the Anthropic wire protocol."""

from __future__ import annotations

import asyncio
from itertools import permutations
from pathlib import Path

import pandas as pd
import pytest
from accord.cli.main import app
from accord.models.schema import AnswerComparison, Metric, Rating, RatingRequest
from accord.report.build import build_report_data
from accord.scheduler import run_control, run_service
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from accord.scheduler.stages import resolve_stages
from accord.worker.execute import ExecutionContext, execute_chunk
from accord.worker.provider_pool import ProviderPool
from sqlalchemy import func, select
from sqlmodel import Session
from typer.testing import CliRunner

from tests.fakes.openai_server import OpenAIFakeServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "harm_ranking"
N_ITEMS = 4
SUBJECTS = ["s1", "s2", "s3"]
# Free-text answers of the fake: every order of three letters, and one that misses a letter (unparseable).
LIST_ANSWERS = [" > ".join(p) for p in permutations("ABC")] + ["A > B"]


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    srv = OpenAIFakeServer(labels=LIST_ANSWERS).start()
    yield srv
    srv.stop()


def campaign(server, **over):  # type: ignore[no-untyped-def]
    def model(name: str, seed: int) -> dict:  # type: ignore[type-arg]
        return {"name": name, "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                "decoding": {"seed": seed}, "price": {"input": 0.15, "output": 0.6}}

    doc = {"name": "ranking", "dataset": "harm_ranking", "dataset_import": str(EXAMPLE / "import.yaml"),
           "items": {"limit": N_ITEMS, "seed": 1}, "decoding": {"temperature": 0},
           "subjects": {"models": [model(s, k) for k, s in enumerate(SUBJECTS)], "templates": ["answer_prompt"]},
           "judges": {"models": [model("judge", 99)],
                      "templates": ["judge_harm_likert", "judge_harm_pairwise", "judge_harm_listwise"]}}
    doc.update(over)
    return parse_campaign(doc)


def count(engine, model, *where) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


@pytest.fixture
def db(engine, server):  # type: ignore[no-untyped-def]
    server.reset()
    server.configure(labels=LIST_ANSWERS)
    return engine


def expected_total(spec) -> int:  # type: ignore[no-untyped-def]
    return resolve_stages(spec).request_count(spec, N_ITEMS)


def test_pairwise_and_listwise_judges_end_to_end(db, server, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = campaign(server)
    plan = create_run(db, spec)
    assert plan.total == N_ITEMS * len(SUBJECTS)
    # per item: 3 answers rated one by one, 3 x 2 ordered pairs, 1 list
    assert expected_total(spec) == N_ITEMS * 3 + N_ITEMS * (3 + 6 + 1)
    progress = run_embedded(db, plan.run_id, backoff_initial=0.01)
    assert (progress.status, progress.failed) == ("completed", 0)
    assert progress.total == progress.done == expected_total(spec)
    rid = plan.run_id
    assert count(db, AnswerComparison, AnswerComparison.run_id == rid, AnswerComparison.kind == "pair") == N_ITEMS * 6
    assert count(db, AnswerComparison, AnswerComparison.run_id == rid, AnswerComparison.kind == "list") == N_ITEMS
    with Session(db) as s:
        rows = s.execute(select(AnswerComparison, Rating).join(RatingRequest, RatingRequest.comparison_id ==
                                                               AnswerComparison.id)
                         .join(Rating, Rating.request_id == RatingRequest.id)
                         .where(AnswerComparison.run_id == rid)).all()
    pairs = [(c, r) for c, r in rows if c.kind == "pair"]
    lists = [(c, r) for c, r in rows if c.kind == "list"]
    assert {tuple(c.answer_ids) for c, _ in pairs} == {tuple(reversed(c.answer_ids)) for c, _ in pairs}
    assert all(r.label in ("A", "B") and r.parse_status == "ok" for _, r in pairs)
    for _, r in lists:
        if r.parse_status == "ok":
            assert sorted(r.label.split(">")) == ["A", "B", "C"]
        else:
            assert (r.parse_status, r.label) == ("unparseable", None) and r.raw_text == "A > B"

    analysis = run_service.finish(db, rid)
    assert analysis.ran and analysis.error is None
    with Session(db) as s:
        metrics = s.execute(select(Metric).where(Metric.run_id == rid, Metric.slice == "all")).scalars().all()
    means = {(m.template, m.model) for m in metrics if m.name == "judge_subject_mean"}
    raters = {"judge · judge_harm_likert", "judge · judge_harm_pairwise", "judge · judge_harm_listwise"}
    parsed_lists = sum(r.parse_status == "ok" for _, r in lists)
    if parsed_lists == 0:
        raters.discard("judge · judge_harm_listwise")
    assert {t for t, _ in means} == raters and {m for _, m in means} == set(SUBJECTS)
    flip = next(m for m in metrics if m.name == "judge_position_flip_share")
    assert flip.template == "judge · judge_harm_pairwise" and flip.n == N_ITEMS * 3
    assert flip.ci_low <= flip.value <= flip.ci_high and 0 <= flip.pvalue <= 1
    assert flip.details["flipped"] == flip.details["first_both_times"] + flip.details["second_both_times"]
    parsed = {m.template: m for m in metrics if m.name == "judge_comparison_parsed"}
    assert parsed["judge · judge_harm_listwise"].value == parsed_lists / N_ITEMS
    w = next(m for m in metrics if m.name == "judges_kendall_w")
    assert w.value is None or w.details["judges"] == len(raters)

    summary = " ".join(next(s for s in build_report_data(db, rid).to_json()["sections"]
                            if s["id"] == "summary")["readings"])
    assert f"and {N_ITEMS * 7} pairwise or listwise verdicts" in summary

    server.reset_stats()                                  # the same campaign again: every call from the cache
    again = run_embedded(db, create_run(db, spec).run_id, backoff_initial=0.01)
    assert (again.status, again.done, again.cached, again.cost_usd) == ("completed", expected_total(spec),
                                                                       expected_total(spec), 0.0)
    assert server.stats()["ok"] == 0

    monkeypatch.setenv("ACCORD_DATABASE_URL", db.url.render_as_string(hide_password=False))
    out = tmp_path / "comparisons.csv"
    result = CliRunner().invoke(app, ["results", str(rid), "--table", "comparisons", "-o", str(out)])
    assert result.exit_code == 0, result.output
    exported = pd.read_csv(out)
    assert len(exported) == N_ITEMS * 7 and set(exported["kind"]) == {"pair", "list"}
    assert all(len(str(ids).split(",")) == (2 if k == "pair" else 3)
               for ids, k in zip(exported["answer_ids"], exported["kind"]))


def test_concurrent_answers_and_redelivery_create_each_comparison_once(db, server) -> None:  # type: ignore[no-untyped-def]
    spec = campaign(server, cache=False)
    plan = create_run(db, spec)
    rid = plan.run_id
    with Session(db) as s:
        by_subject: dict[int, list[int]] = {}
        for rid_, spec_id in s.execute(select(RatingRequest.id, RatingRequest.model_spec_id)
                                       .where(RatingRequest.run_id == rid)).all():
            by_subject.setdefault(spec_id, []).append(rid_)

    async def chunks(groups):  # type: ignore[no-untyped-def]
        pool = ProviderPool()
        try:
            ctx = ExecutionContext(engine=db, providers=pool, backoff_initial=0.01)
            return await asyncio.gather(*(execute_chunk(ctx, ids) for ids in groups))
        finally:
            await pool.aclose()

    run_control.mark_started(db, rid)
    asyncio.run(chunks(list(by_subject.values())))      # each subject's answers stored by its own chunk
    asyncio.run(chunks(list(by_subject.values())))      # re-delivered: nothing asked or created again
    assert server.stats()["ok"] == N_ITEMS * len(SUBJECTS)
    assert count(db, AnswerComparison, AnswerComparison.run_id == rid) == N_ITEMS * (6 + 1)
    judge_requests = count(db, RatingRequest, RatingRequest.run_id == rid, RatingRequest.stage == "judge")
    assert judge_requests == N_ITEMS * (3 + 6 + 1)
    progress = run_embedded(db, rid, backoff_initial=0.01)
    assert (progress.status, progress.failed) == ("completed", 0)
    assert progress.total == progress.done == expected_total(spec)
    assert server.stats()["ok"] == expected_total(spec)


def test_anthropic_pairwise_and_listwise_judge(db, server) -> None:  # type: ignore[no-untyped-def]
    """The same study with the judge behind the Anthropic wire protocol (official SDK): a pair's verdict through
    the forced tool call, a list as free text parsed strictly."""
    from tests.fakes.anthropic_server import AnthropicFakeServer

    with AnthropicFakeServer(labels=LIST_ANSWERS) as claude:
        judge = {"name": "claude", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
                 "base_url": claude.base_url}
        spec = campaign(server, judges={"models": [judge], "templates": ["judge_harm_pairwise",
                                                                         "judge_harm_listwise"]})
        plan = create_run(db, spec)
        progress = run_embedded(db, plan.run_id, backoff_initial=0.01)
        assert (progress.status, progress.failed) == ("completed", 0)
        assert progress.total == progress.done == expected_total(spec) == N_ITEMS * (3 + 6 + 1)
        assert claude.stats()["ok"] == N_ITEMS * 7
    with Session(db) as s:
        rows = s.execute(select(AnswerComparison.kind, Rating.label, Rating.parse_status)
                         .join(RatingRequest, RatingRequest.comparison_id == AnswerComparison.id)
                         .join(Rating, Rating.request_id == RatingRequest.id)
                         .where(AnswerComparison.run_id == plan.run_id)).all()
    assert all(label in ("A", "B") for kind, label, _ in rows if kind == "pair")
    assert all(status == "unparseable" or sorted(label.split(">")) == ["A", "B", "C"]
               for kind, label, status in rows if kind == "list")


def test_a_failed_subject_leaves_the_lists_of_the_others(db, server) -> None:  # type: ignore[no-untyped-def]
    """A subject whose every call fails (its endpoint refuses connections): once its generation has failed for
    good, each item's list is made of the two answers there are, and the pairs are those of the two."""
    spec = campaign(server, max_failed_share=1.0)
    doc = spec.model_dump(mode="json")
    doc["subjects"]["models"][2]["base_url"] = "http://127.0.0.1:9/v1"   # nothing listens on the discard port
    from accord.scheduler.campaign_spec import CampaignSpec

    spec = CampaignSpec.model_validate(doc)
    plan = create_run(db, spec)
    progress = run_embedded(db, plan.run_id, backoff_initial=0.01)
    assert progress.failed == N_ITEMS
    # 2 answers per item, each rated; 2 ordered pairs; 1 list of two
    assert progress.total == progress.done + progress.failed == N_ITEMS * 3 + N_ITEMS * (2 + 2 + 1)
    with Session(db) as s:
        comparisons = s.execute(select(AnswerComparison).where(AnswerComparison.run_id == plan.run_id)).scalars().all()
    lists = [c for c in comparisons if c.kind == "list"]
    assert len(lists) == N_ITEMS and all(len(c.answer_ids) == 2 for c in lists)
    assert sum(c.kind == "pair" for c in comparisons) == N_ITEMS * 2
