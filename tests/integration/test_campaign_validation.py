"""Campaign validation of issue 14: duplicate template or model names, the `analysis:` section and the scale
check are refused with one line, identically by `accord plan`, `accord run` and the HTTP API, before any
call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from accord.cli.main import app
from accord.models.dataset_import import import_dataset
from accord.models.import_spec import ImportSpec
from accord.models.migrate import init_db
from accord.models.schema import RatingRequest
from accord.models.settings import get_settings
from accord.scheduler.campaign_spec import CampaignSpecError, parse_campaign
from accord.scheduler.expand import CampaignError, create_run
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from tests.integration.api_helpers import ApiEnv, campaign_doc, make_env

BASE = {"name": "c", "dataset": "d", "models": [{"name": "m", "provider": "local"}], "templates": ["binary_unsafe"]}
ATTRIBUTES = "annotator_id,gender,age\na,Woman,23\nb,Man,41\nc,Woman,67\n"


@pytest.mark.parametrize("patch, message", [
    ({"templates": ["binary_unsafe", {"name": "binary_unsafe"}]},
     "templates: template names must be unique; repeated: binary_unsafe (remove one, or give them different "
     "params.option_order)"),
    ({"models": [{"name": "m", "provider": "local"}, {"name": "m", "provider": "local", "path": "x.gguf"}]},
     "models: model names must be unique; repeated: m (rename one)"),
    ({"analysis": {"group_attributes": ["gender"], "colour": 1}}, "analysis.colour: Extra inputs are not permitted"),
    ({"analysis": {"min_group_size": 0}}, "analysis.min_group_size: Input should be greater than or equal to 1"),
    ({"analysis": {"bins": {"age": [30, 20]}}}, "analysis.bins: age: edges must increase, got [30.0, 20.0]"),
    ({"analysis": {"bins": {"age": 1}}}, "analysis.bins: age: a number of quantile bins between 2 and 20, got 1"),
    ({"analysis": {"alt_test": {"epsilon": 2}}}, "analysis.alt_test.epsilon: Input should be less than or equal to 1"),
    ({"analysis": {"alt_test": {"measure": "f1"}}}, "analysis.alt_test.measure: Input should be 'auto', 'accuracy' "
                                                    "or 'neg_rmse'"),
    ({"analysis": {"n_permutations": 0}}, "analysis.n_permutations: Input should be greater than or equal to 1"),
])
def test_spec_refuses_with_one_line_naming_the_field(patch: dict, message: str) -> None:
    with pytest.raises(CampaignSpecError) as e:
        parse_campaign({**BASE, **patch}, "camp.yaml")
    assert str(e.value) == f"camp.yaml: invalid campaign: {message}"


def test_templates_in_different_option_orders_are_different_templates() -> None:
    spec = parse_campaign({**BASE, "templates": [{"name": "multiple_choice_unsafe", "params": {"option_order": "AB"}},
                                                 {"name": "multiple_choice_unsafe", "params": {"option_order": "BA"}}]})
    assert len(spec.templates) == 2


def test_analysis_section_is_accepted() -> None:
    spec = parse_campaign({**BASE, "analysis": {"group_attributes": ["gender", "gender&age"],
                                                "bins": {"age": [18, 30, 50], "income": 4}, "min_group_size": 5,
                                                "n_bootstrap": 200, "n_permutations": 100,
                                                "alt_test": {"epsilon": 0.15, "measure": "neg_rmse"}}})
    assert spec.analysis.group_attributes == ["gender", "gender&age"]
    assert spec.analysis.alt_test.epsilon == 0.15


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Engine]]:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("ACCORD_DATABASE_URL", url)
    get_settings.cache_clear()
    engine = init_db(url)
    ratings = tmp_path / "r.csv"
    ratings.write_text("item_id,annotator_id,q,text\n1,a,1,x\n1,b,5,x\n2,a,3,y\n2,c,4,y\n")
    annotators = tmp_path / "a.csv"
    annotators.write_text(ATTRIBUTES)
    import_dataset(engine, ImportSpec(name="likert", ratings_file=ratings, annotators_file=annotators,
                                      rating_cols="q", text_col="text", label_map="1=1,2=2,3=3,4=4,5=5"))
    yield tmp_path, engine
    engine.dispose()
    get_settings.cache_clear()


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def _requests(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(RatingRequest)).scalar_one()


@pytest.mark.parametrize("patch, message", [
    ({"templates": ["binary_unsafe", "binary_unsafe"]},
     "invalid campaign: templates: template names must be unique; repeated: binary_unsafe"),
    ({"templates": ["binary_unsafe"]},
     "templates: 'binary_unsafe' rates on 0..1 but dimension 'q' of dataset 'likert' is on 1..5; use a template "
     "whose output.labels are on 1..5, or re-import the dataset with a --label-map onto 0..1 "
     "(analysis.check_scale: false compares them anyway)"),
    ({"analysis": {"group_attributes": ["gender", "race"], "check_scale": False}},
     "analysis: no annotator of 'likert' has attribute(s) race (known: age, gender)"),
    ({"analysis": {"bins": {"gender": 2}, "check_scale": False}},
     "analysis.bins: attribute 'gender' of 'likert' is not numeric; bin only numeric attributes"),
])
def test_plan_and_run_refuse_before_any_call(home, patch: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    folder, engine = home
    path = folder / "camp.yaml"
    path.write_text(yaml.safe_dump({**BASE, "dataset": "likert", **patch}))
    for command in ("plan", "run"):
        code, out = _cli(command, str(path))
        assert code == 2, out
        assert out.startswith("error: ") and message in out, out
    assert _requests(engine) == 0


def test_scale_check_can_be_turned_off(home) -> None:  # type: ignore[no-untyped-def]
    _folder, engine = home
    with pytest.raises(CampaignError, match="rates on 0..1"):
        create_run(engine, parse_campaign({**BASE, "dataset": "likert"}))
    plan = create_run(engine, parse_campaign({**BASE, "dataset": "likert", "analysis": {"check_scale": False}}))
    assert plan.total == 2


@pytest.fixture
def api(sqlite_engine: Engine) -> Iterator[ApiEnv]:
    yield from make_env(sqlite_engine)


def test_api_refuses_duplicate_template_names_identically(api: ApiEnv) -> None:
    assert api.upload(api.a, "syn").status_code == 201
    response = api.campaign(api.a, campaign_doc("dup", "syn", templates=["binary_unsafe", "binary_unsafe"]))
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == ("invalid campaign: templates: template names must be unique; repeated: "
                                         "binary_unsafe (remove one, or give them different params.option_order)")
    response = api.campaign(api.a, campaign_doc("dup", "syn", models=[{"name": "m", "provider": "local"},
                                                                      {"name": "m", "provider": "local"}]))
    assert response.status_code == 422
    assert response.json()["detail"] == ("invalid campaign: models: model names must be unique; repeated: m "
                                         "(rename one)")
