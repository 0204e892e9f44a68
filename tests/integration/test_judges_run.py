"""Subjects answer, judges rate the answers: the FINE study end to end, embedded, against the OpenAI
wire-protocol fake server, on SQLite and PostgreSQL. Every subject asked once, every answer judged once, a
re-delivered chunk or a restart between the stages asks no model twice, and a re-run is answered from cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from accord.models.schema import Answer, Rating, RatingRequest, Run
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from accord.worker.execute import ExecutionContext, execute_chunk
from accord.worker.provider_pool import ProviderPool
from tests.fakes.openai_server import OpenAIFakeServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fake_alignment"
N_ITEMS = 4


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    srv = OpenAIFakeServer().start()
    yield srv
    srv.stop()


def fine_campaign(server, **over):  # type: ignore[no-untyped-def]
    gpt = {"name": "gpt", "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
           "price": {"input": 0.15, "output": 0.6}}
    doc = {"name": "fine", "dataset": "fake_alignment", "dataset_import": str(EXAMPLE / "import.yaml"),
           "items": {"limit": N_ITEMS}, "decoding": {"temperature": 0, "seed": 3},
           "subjects": {"models": [gpt], "templates": ["fine_open_question",
                                                       {"name": "fine_multiple_choice", "params": {"option_order": "AB"}},
                                                       {"name": "fine_multiple_choice", "params": {"option_order": "BA"}}]},
           "judges": {"models": [{**gpt, "name": "judge"}], "templates": ["fine_judge_safety"]}}
    doc.update(over)
    return parse_campaign(doc)


def scalar(engine, q):  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return s.execute(q).scalar_one()


def count(engine, model, *where) -> int:  # type: ignore[no-untyped-def]
    return scalar(engine, select(func.count()).select_from(model).where(*where))


@pytest.fixture
def db(engine, server):  # type: ignore[no-untyped-def]
    server.reset()
    return engine


def test_fine_study_generate_then_judge_then_all_cache(db, server) -> None:  # type: ignore[no-untyped-def]
    plan = create_run(db, fine_campaign(server))
    assert plan.total == N_ITEMS * 3                        # judge requests appear as answers are stored
    progress = run_embedded(db, plan.run_id, backoff_initial=0.01)
    assert (progress.status, progress.failed) == ("completed", 0)
    assert progress.total == progress.done == N_ITEMS * 3 + N_ITEMS     # + one judgment per open answer
    assert server.stats()["ok"] == N_ITEMS * 4
    rid = plan.run_id
    assert count(db, Answer, Answer.run_id == rid) == N_ITEMS * 3
    with Session(db) as s:
        answers = s.execute(select(Answer).where(Answer.run_id == rid)).scalars().all()
        judged = s.execute(select(RatingRequest, Rating).join(Rating, Rating.request_id == RatingRequest.id)
                           .where(RatingRequest.run_id == rid)).all()
    mc = [a for a in answers if a.label is not None]
    assert len(mc) == N_ITEMS * 2 and {a.label for a in mc} <= {"A", "B"} and all(a.status == "ok" for a in mc)
    open_ids = {a.id for a in answers if a.label is None}
    assert all(a.text and a.input_tokens > 0 and a.cost_usd > 0 for a in answers)
    assert len(judged) == N_ITEMS and {r.stage for r, _ in judged} == {"judge"}
    assert {r.answer_id for r, _ in judged} == open_ids     # every open answer judged once, nothing else
    assert {rt.label for _, rt in judged} <= {"safe", "unsafe"}

    from accord.models.schema import Metric
    from accord.scheduler import run_service

    analysis = run_service.finish(db, rid)
    assert analysis.ran and analysis.error is None
    with Session(db) as s:
        metrics = s.execute(select(Metric).where(Metric.run_id == rid, Metric.slice == "all")).scalars().all()
    by_name = {m.name: m for m in metrics}
    assert {"fine_cs", "fine_css"} <= set(by_name)
    cs = by_name["fine_cs"]
    assert (cs.model, cs.template) == ("gpt", "judge") and cs.n + cs.details["n_undetermined"] == N_ITEMS
    if cs.n:
        assert cs.ci_low <= cs.value <= cs.ci_high

    server.reset_stats()
    again = create_run(db, fine_campaign(server))
    p2 = run_embedded(db, again.run_id)
    assert (p2.status, p2.done, p2.cached, p2.cost_usd) == ("completed", N_ITEMS * 4, N_ITEMS * 4, 0.0)
    assert server.stats()["ok"] == 0


def test_restart_between_stages_and_redelivery_ask_no_model_twice(db, server) -> None:  # type: ignore[no-untyped-def]
    plan = create_run(db, fine_campaign(server, cache=False))
    rid = plan.run_id
    with Session(db) as s:
        gen_ids = s.execute(select(RatingRequest.id).where(RatingRequest.run_id == rid)).scalars().all()

    async def chunk(ids):  # type: ignore[no-untyped-def]
        pool = ProviderPool()
        try:
            return await execute_chunk(ExecutionContext(engine=db, providers=pool, backoff_initial=0.01), ids)
        finally:
            await pool.aclose()

    from accord.scheduler import run_control
    run_control.mark_started(db, rid)
    first = asyncio.run(chunk(list(gen_ids)))          # stage one only: the process "dies" before judging
    assert first.counts["done"] == N_ITEMS * 3 and server.stats()["ok"] == N_ITEMS * 3
    assert count(db, RatingRequest, RatingRequest.run_id == rid, RatingRequest.stage == "judge",
                 RatingRequest.status == "pending") == N_ITEMS
    again = asyncio.run(chunk(list(gen_ids)))          # the same chunk delivered again: nothing is asked
    assert again.counts["skipped"] == N_ITEMS * 3 and server.stats()["ok"] == N_ITEMS * 3
    progress = run_embedded(db, rid, backoff_initial=0.01)   # a new process resumes: only the judges are asked
    assert (progress.status, progress.done, progress.total) == ("completed", N_ITEMS * 4, N_ITEMS * 4)
    assert server.stats()["ok"] == N_ITEMS * 4
    assert count(db, Answer, Answer.run_id == rid) == N_ITEMS * 3
    assert count(db, Rating, Rating.run_id == rid) == N_ITEMS
    assert scalar(db, select(func.count(func.distinct(RatingRequest.answer_id))).where(
        RatingRequest.run_id == rid, RatingRequest.stage == "judge")) == N_ITEMS


def test_bad_stage_input_is_one_line_and_changes_nothing(db, server) -> None:  # type: ignore[no-untyped-def]
    from accord.scheduler.campaign_spec import CampaignSpecError
    from accord.scheduler.expand import CampaignError

    with pytest.raises(CampaignSpecError, match="judges: judges rate the subjects' answers; add subjects:"):
        parse_campaign({"name": "x", "dataset": "d", "judges": {"models": [{"name": "j", "provider": "local"}],
                                                                 "templates": ["fine_judge_safety"]}})
    runs_before = count(db, Run)
    with pytest.raises(CampaignError, match="judges.templates: 'fine_open_question' is open_ended"):
        create_run(db, fine_campaign(server, judges={"models": [{"name": "j", "provider": "local"}],
                                                     "templates": ["fine_open_question"]}))
    with pytest.raises(CampaignError, match="judges.answers_of: no subjects template named 'nope'"):
        create_run(db, fine_campaign(server, judges={"models": [{"name": "j", "provider": "local"}],
                                                     "templates": ["fine_judge_safety"], "answers_of": ["nope"]}))
    assert count(db, Run) == runs_before


def test_plan_prices_both_stages_before_and_after_a_run(db, server) -> None:  # type: ignore[no-untyped-def]
    from accord.scheduler.plan import plan_campaign

    spec = fine_campaign(server)
    plan = plan_campaign(db, spec)
    rows = {(m.stage, m.model): m for m in plan.models}
    subjects, judges = rows[("subjects", "gpt")], rows[("judges", "judge")]
    assert (subjects.requests, subjects.cached, judges.requests) == (N_ITEMS * 3, 0, N_ITEMS)
    assert subjects.cost_usd > 0 and judges.cost_usd > 0
    assert judges.output_tokens == N_ITEMS * 4           # the judge template's cap
    assert judges.input_tokens > N_ITEMS * 96            # room for an answer as long as the open question's cap
    assert plan.cost_usd == pytest.approx(subjects.cost_usd + judges.cost_usd)
    run_embedded(db, create_run(db, spec).run_id, backoff_initial=0.01)
    after = {(m.stage, m.model): m for m in plan_campaign(db, spec).models}
    assert after[("subjects", "gpt")].cached == N_ITEMS * 3 and after[("subjects", "gpt")].cost_usd == 0.0


@pytest.fixture(scope="module")
def claude_server():  # type: ignore[no-untyped-def]
    from tests.fakes.anthropic_server import AnthropicFakeServer

    srv = AnthropicFakeServer().start()
    yield srv
    srv.stop()


def test_anthropic_subject_judged_by_an_openai_judge(db, server, claude_server) -> None:  # type: ignore[no-untyped-def]
    claude_server.reset()
    claude = {"name": "claude", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
              "base_url": claude_server.base_url, "price": {"input": 0.8, "output": 4.0}}
    spec = fine_campaign(server, subjects={"models": [claude], "samples": 2, "decoding": {"temperature": 0.7},
                                           "templates": ["fine_open_question",
                                                         {"name": "fine_multiple_choice", "params": {"option_order": "AB"}},
                                                         {"name": "fine_multiple_choice", "params": {"option_order": "BA"}}]})
    plan = create_run(db, spec)
    progress = run_embedded(db, plan.run_id, backoff_initial=0.01)
    assert (progress.status, progress.failed) == ("completed", 0)
    assert claude_server.stats()["ok"] == N_ITEMS * 3 * 2 and server.stats()["ok"] == N_ITEMS * 2
    with Session(db) as s:
        seeds = s.execute(select(Answer.decoding).where(Answer.run_id == plan.run_id)).scalars().all()
    assert all(d["temperature"] == 0.7 for d in seeds)           # the stage's decoding over the campaign's
    assert {d["seed"] for d in seeds} == {3, 4}                   # one seed per sample


def test_an_answer_landing_after_cancel_creates_no_judge_work_and_the_run_finishes(db, server) -> None:  # type: ignore[no-untyped-def]
    from accord.scheduler import run_control
    from accord.worker.answers import store_answers
    from accord.worker.execute import load_jobs
    from accord.worker.providers.base import ProviderResponse

    plan = create_run(db, fine_campaign(server, cache=False))
    run_control.mark_started(db, plan.run_id)
    _, ids = run_control.claim_pending(db, plan.run_id, 100, 60)     # in flight when the cancel comes
    with Session(db, expire_on_commit=False) as s:
        jobs, _ = load_jobs(s, ids)
    run_control.cancel_run(db, plan.run_id)
    from accord.worker.answers import generation_fields
    job = next(j for j in jobs if not j.template.labels)
    fields = generation_fields(job, ProviderResponse(text="A late answer.", finish_reason="stop"), 0.0)
    assert list(store_answers(db, [(job, fields, False, 1)])) == [job.request.id]      # the answer is kept
    assert count(db, RatingRequest, RatingRequest.run_id == plan.run_id, RatingRequest.stage == "judge") == 0
    run_control.release_all_queued(db, plan.run_id)
    assert run_control.finalize_if_done(db, plan.run_id) == "cancelled"


def test_two_subjects_two_judges_store_rankings_and_concordance(db, server) -> None:  # type: ignore[no-untyped-def]
    from accord.models.schema import Metric
    from accord.scheduler import run_service

    gpt = {"provider": "openai", "base_url": server.base_url}
    spec = fine_campaign(server, items={"ids": ["fa01", "fa02", "fa07", "fa08", "fa13", "fa14"]},
                         subjects={"models": [{**gpt, "name": "mini", "model": "gpt-4o-mini"},
                                              {**gpt, "name": "big", "model": "gpt-4o"}],
                                   "templates": ["fine_open_question"]},
                         judges={"models": [{**gpt, "name": "j1", "model": "gpt-4o-mini"},
                                            {**gpt, "name": "j2", "model": "gpt-4.1-mini"}],
                                 "templates": ["fine_judge_safety"]})
    plan = create_run(db, spec)
    progress = run_embedded(db, plan.run_id, backoff_initial=0.01)
    assert (progress.status, progress.done) == ("completed", 6 * 2 + 6 * 2 * 2)
    assert run_service.finish(db, plan.run_id).error is None
    with Session(db) as s:
        rows = s.execute(select(Metric.name, Metric.model, Metric.template).where(Metric.run_id == plan.run_id)).all()
        slices = set(s.execute(select(Metric.slice).where(Metric.run_id == plan.run_id,
                                                          Metric.name == "judge_subject_mean")).scalars())
    assert slices == {"all", "category=privacy", "category=physical_harm", "category=discrimination"}
    names = {r[0] for r in rows}
    assert {"judge_subject_mean", "judge_subject_paired_diff", "judge_pair_kendall_tau", "judges_kendall_w"} <= names
    assert "fine_cs" not in names                          # no multiple choice asked: no FINE figures
    assert {(m, t) for n, m, t in rows if n == "judge_subject_mean"} == {  # per slice: every subject x judge
        (s_, j) for s_ in ("mini", "big") for j in ("j1", "j2")}
    from accord.report.build import build_report_data, render_html

    data = build_report_data(db, plan.run_id)
    sections = {s["id"]: s for s in data.to_json()["sections"]}
    assert "judges" in sections and "fine" not in sections
    assert any("ranks the subjects by mean judged score" in r for r in sections["judges"]["readings"])
    assert "Subject models as their judges see them" in render_html(data)
    summary = " ".join(sections["summary"]["readings"])
    assert "2 subject models (big, mini) answered 6 items under 1 generation template: 12 answers" in summary
    assert "2 judges (j1, j2) rated them in 24 judgments" in summary
    assert any(t["id"] == "judges-categories" for t in sections["judges"]["tables"])


@pytest.mark.parametrize("example, subjects, judges", [
    ("fake_alignment.yaml", {"smollm2": 12 * 3}, {"smollm2-judge": 12}),
    # 8 prompts x 3 subjects: each answer rated (24), every ordered pair (8 x 6), one list per prompt (8)
    ("harm_ranking.yaml", {"smollm2-greedy": 8, "smollm2-warm": 8, "smollm2-hot": 8}, {"judge": 24 + 48 + 8}),
    ("trust_verticals.yaml", {"variant-greedy": 10, "variant-sampled": 10}, {"judge": 10 * 2}),
])
def test_bundled_examples_plan_without_network(db, example, subjects, judges) -> None:  # type: ignore[no-untyped-def]
    from accord.scheduler.campaign_spec import load_campaign
    from accord.scheduler.plan import plan_campaign

    spec = load_campaign(EXAMPLE.parent / example)
    plan = plan_campaign(db, spec)                       # imports the example's data set on first use
    by_stage = {(m.stage, m.model): m.requests for m in plan.models}
    assert by_stage == {**{("subjects", k): v for k, v in subjects.items()},
                        **{("judges", k): v for k, v in judges.items()}}
    assert plan.cost_usd == 0.0                           # local models only


def test_judge_templates_are_raters_of_their_own() -> None:
    import pandas as pd

    from accord.analysis.judge_ranking_metrics import ranking_text
    from accord.models.answer_frames import as_raters

    df = pd.DataFrame({"judge": ["j", "j", "k"], "template": ["likert", "binary", "binary"]})
    assert as_raters(df)["judge"].tolist() == ["j · likert", "j · binary", "k"]
    assert ranking_text(["a", "b", "c"], [0.5, 0.7, 0.5]) == "b > a = c"
