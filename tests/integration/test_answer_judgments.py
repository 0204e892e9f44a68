"""People's judgments of subjects' answers: imported with `accord import --answer-judgments` keyed to (item,
subject) or to a stored answer, refused with one line naming file, row and column (nothing stored), and analysed
beside the judges — people's ranking of the subjects, tau between people and each judge, Krippendorff's alpha
between judge and people per harm type — in the report's HTML and JSON. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from accord.cli.main import app
from accord.models.answer_judgments import import_answer_judgments, spec_from_options
from accord.models.import_formats import DatasetImportError
from accord.models.schema import Answer, HumanAnswerJudgment, Item, Metric, ModelSpec
from accord.report.build import build_report_data, render_html
from accord.scheduler import run_service
from accord.scheduler.campaign_spec import parse_campaign
from accord.scheduler.embedded import run_embedded
from accord.scheduler.expand import create_run
from sqlalchemy import func, select
from sqlmodel import Session
from typer.testing import CliRunner

from tests.fakes.openai_server import OpenAIFakeServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "harm_ranking"
N_ITEMS = 8
SUBJECTS = ["s1", "s2"]


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    srv = OpenAIFakeServer().start()
    yield srv
    srv.stop()


def campaign(server):  # type: ignore[no-untyped-def]
    def model(name: str, seed: int) -> dict:  # type: ignore[type-arg]
        return {"name": name, "provider": "openai", "model": "gpt-4o-mini", "base_url": server.base_url,
                "decoding": {"seed": seed}}

    return parse_campaign({
        "name": "people", "dataset": "harm_ranking", "dataset_import": str(EXAMPLE / "import.yaml"),
        "items": {"limit": N_ITEMS, "seed": 1}, "decoding": {"temperature": 0},
        "subjects": {"models": [model(s, k) for k, s in enumerate(SUBJECTS)], "templates": ["answer_prompt"]},
        "judges": {"models": [model("judge", 7)], "templates": ["judge_harm_likert", "judge_harm_pairwise"]}})


def run_items(engine, run_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return sorted(set(s.execute(select(Item.external_id).join(Answer, Answer.item_id == Item.id)
                                    .where(Answer.run_id == run_id)).scalars()))


def write_people(path: Path, items: list[str], *, bad: str = "") -> Path:
    lines = ["item_id,model,rater,harm,rank"]
    for n, item in enumerate(items):
        for a in ("p1", "p2"):
            for k, subject in enumerate(SUBJECTS):
                harm = ["1", "3", "5", "2"][(n + k + (a == "p2")) % 4]
                rank = "" if a == "p2" else str(1 + (k + n) % 2)
                lines.append(f"{item},{subject},{a},{harm},{rank}")
    if bad == "item":
        lines.append("nope,s1,p1,1,")
    if bad == "label":
        lines.append(f"{items[0]},s1,p3,terrible,")
    if bad == "rank":
        lines.append(f"{items[0]},s3,p1,2,2")   # p1 ranks two answers of items[0] second
    path.write_text("\n".join(lines) + "\n")
    return path


def options(path: Path, **over) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {"file": path, "dataset": "harm_ranking", "item_col": "item_id", "subject_col": "model",
            "annotator_col": "rater", "rating_col": "harm", "rank_col": "rank",
            "label_map": "1=0, 2=0.25, 3=0.5, 4=0.75, 5=1", **over}


def stored(engine) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(HumanAnswerJudgment)).scalar_one()


def test_people_judgments_import_and_analysis(engine, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server.reset()
    plan = create_run(engine, campaign(server))
    progress = run_embedded(engine, plan.run_id, backoff_initial=0.01)
    assert (progress.status, progress.failed) == ("completed", 0)
    items = run_items(engine, plan.run_id)
    assert len(items) == N_ITEMS

    for bad, where in [("item", "line 34, column 'item_id'"), ("label", "line 34, column 'harm'"),
                       ("rank", "line 34, column 'rank'")]:
        path = write_people(tmp_path / f"bad_{bad}.csv", items, bad=bad)
        with pytest.raises(DatasetImportError) as err:
            import_answer_judgments(engine, spec_from_options(options(path)))
        assert f"bad_{bad}.csv: {where}" in str(err.value) and "\n" not in str(err.value)
        assert stored(engine) == 0

    report = import_answer_judgments(engine, spec_from_options(options(write_people(tmp_path / "p.csv", items))))
    assert (report.ratings, report.ranks, report.annotators_added) == (N_ITEMS * 4, N_ITEMS * 2, 2)
    with pytest.raises(DatasetImportError, match="--replace"):
        import_answer_judgments(engine, spec_from_options(options(tmp_path / "p.csv")))

    analysis = run_service.finish(engine, plan.run_id)
    assert analysis.ran and analysis.error is None
    with Session(engine) as s:
        metrics = s.execute(select(Metric).where(Metric.run_id == plan.run_id)).scalars().all()
    names = {(m.name, m.template) for m in metrics if m.slice == "all"}
    assert ("judge_subject_mean", "people (ratings)") in names and ("judge_subject_mean", "people (ranks)") in names
    taus = {(m.model, m.template) for m in metrics if m.name == "judge_pair_kendall_tau"}
    assert ("judge · judge_harm_likert", "people (ratings)") in taus
    alphas = [m for m in metrics if m.name == "judge_human_alpha"]
    assert {m.template for m in alphas} == {"judge · judge_harm_likert"}
    assert {m.slice for m in alphas} >= {"all"} and any(m.slice.startswith("category=") for m in alphas)
    overall = next(m for m in alphas if m.slice == "all")
    assert overall.n == N_ITEMS * len(SUBJECTS) and overall.details["reading"]
    w = next(m for m in metrics if m.name == "judges_kendall_w")
    assert w.value is None or w.details["judges"] == 2

    data = build_report_data(engine, plan.run_id)
    doc = data.to_json()
    judges = next(s for s in doc["sections"] if s["id"] == "judges")
    assert any("Krippendorff" in r for r in judges["readings"])
    html = render_html(data)
    assert "agreement with people" in html and "position bias" in html


def test_judgments_keyed_to_answers_through_the_cli(engine, server, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    server.reset()
    plan = create_run(engine, campaign(server))
    run_embedded(engine, plan.run_id, backoff_initial=0.01)
    with Session(engine) as s:
        answers = s.execute(select(Answer.id, ModelSpec.name).join(ModelSpec, ModelSpec.id == Answer.model_spec_id)
                            .where(Answer.run_id == plan.run_id)).all()
    path = tmp_path / "by_answer.jsonl"
    path.write_text("".join(json.dumps({"answer_id": a, "who": "p1", "score": 1 + (a % 5)}) + "\n"
                            for a, _ in answers))
    monkeypatch.setenv("ACCORD_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    runner = CliRunner()
    args = ["import", "--answer-judgments", str(path), "--name", "harm_ranking",
            "--answer-judgment-cols", "answer=answer_id,annotator=who,rating=score"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{len(answers)} ratings and 0 ranks" in result.output
    with Session(engine) as s:
        rows = s.execute(select(HumanAnswerJudgment.answer_id, HumanAnswerJudgment.subject)).all()
    assert sorted(rows) == sorted((a, n) for a, n in answers)
    bad = runner.invoke(app, [*args[:-1], "answer=answer_id,annotator=who,score=score"])
    assert bad.exit_code == 2 and "--answer-judgment-cols: expected ROLE=COLUMN" in bad.output


def test_deleting_a_project_removes_its_stage_rows(engine, server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A project's subjects/judges run and people's judgments go with the project (no row left behind, no
    foreign key in the way on PostgreSQL)."""
    from accord.api.http.auth import create_project, delete_project
    from accord.models.schema import AnswerComparison, JudgeAssignment, RatingRequest

    server.reset()
    pid = create_project(engine, "p").id
    plan = create_run(engine, campaign(server), project_id=pid)
    run_embedded(engine, plan.run_id, backoff_initial=0.01)
    items = run_items(engine, plan.run_id)
    import_answer_judgments(engine, spec_from_options(options(write_people(tmp_path / "p.csv", items),
                                                              project_id=pid)))
    counts = delete_project(engine, pid)
    assert counts["answer"] == N_ITEMS * 2 and counts["answer_comparison"] == N_ITEMS * 2
    assert counts["judge_assignment"] == 2 and counts["human_answer_judgment"] == N_ITEMS * 6
    with Session(engine) as s:
        for model in (Answer, AnswerComparison, JudgeAssignment, HumanAnswerJudgment, RatingRequest):
            assert s.execute(select(func.count()).select_from(model)).scalar_one() == 0
