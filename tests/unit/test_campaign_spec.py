from __future__ import annotations

from pathlib import Path

import pytest

from accord.scheduler.campaign_spec import CampaignSpecError, load_campaign, parse_campaign
from accord.worker.decoding import request_decoding

BASE = {"name": "c", "dataset": "d", "models": [{"name": "m", "provider": "local"}], "templates": ["likert_unsafe"]}


def test_minimal_campaign_gets_defaults() -> None:
    spec = parse_campaign(BASE)
    assert spec.samples == 1 and spec.cache is True and spec.templates[0].name == "likert_unsafe"
    assert spec.models[0].model == "SmolLM2-135M-Instruct"


@pytest.mark.parametrize("patch, message", [
    ({"samples": 0}, "samples: Input should be greater than or equal to 1"),
    ({"models": [{"name": "m", "provider": "cohere"}]}, "models.0.provider"),
    ({"models": [{"name": "m", "provider": "openai"}]}, "models.0: provider 'openai' needs 'model'"),
    ({"models": [{"name": "m", "provider": "openai", "model": "x", "api_key": "sk-123"}]},
     "models.0.api_key: API keys are never accepted"),
    ({"models": [{"name": "m", "provider": "local"}, {"name": "m", "provider": "local"}]}, "model names must be unique; repeated: m"),
    ({"templates": [{"name": "a", "path": "b.yaml"}]}, "templates.0: give exactly one of 'name'"),
    ({"budget_usd": -1}, "budget_usd"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"models": [{"name": "m", "provider": "openai", "model": "x" * 301}]}, "models.0.model: String should have at most 300"),
    ({"models": [{"name": "m", "provider": "local", "base_url": "http://h/" + "x" * 1000}]}, "models.0.base_url"),
    ({"models": [{"name": "m", "provider": "openai", "model": "x", "api_key_env": "K" * 201}]}, "models.0.api_key_env"),
])
def test_errors_name_the_field(patch: dict, message: str) -> None:
    with pytest.raises(CampaignSpecError) as e:
        parse_campaign({**BASE, **patch}, "camp.yaml")
    assert message in str(e.value)
    assert str(e.value).startswith("camp.yaml: invalid campaign:")


def test_yaml_file_and_relative_template_paths(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("name: c\ndataset: d\nmodels: [{name: m, provider: local}]\n"
                                     "templates: [{path: t/mine.yaml}]\npersonas: {list: [{gender: Woman}]}\n")
    spec = load_campaign(tmp_path / "c.yaml")
    assert spec.templates[0].path == str((tmp_path / "t" / "mine.yaml").resolve())
    assert spec.personas is not None and spec.personas.explicit == [{"gender": "Woman"}]
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(CampaignSpecError, match="bad.yaml: not valid YAML"):
        load_campaign(tmp_path / "bad.yaml")
    with pytest.raises(CampaignSpecError, match="no such file"):
        load_campaign(tmp_path / "missing.yaml")


def test_spec_hash_is_stable_and_sensitive() -> None:
    assert parse_campaign(BASE).spec_hash() == parse_campaign(dict(BASE)).spec_hash()
    assert parse_campaign(BASE).spec_hash() != parse_campaign({**BASE, "samples": 2}).spec_hash()


def test_request_decoding_layers_and_per_sample_seed() -> None:
    d = request_decoding({"temperature": 0.7, "seed": 10}, {"temperature": 0.2}, 4, 3)
    assert d == {"temperature": 0.2, "seed": 13, "max_tokens": 4}
    assert request_decoding({"max_tokens": 9}, None, 4, 0) == {"max_tokens": 9}


def test_import_spec_yaml_keeps_yes_no_labels(tmp_path: Path) -> None:
    from accord.models.import_spec import load_import_spec

    (tmp_path / "r.csv").write_text("item_id,annotator_id,q,text\n1,a,Yes,hi\n")
    (tmp_path / "import.yaml").write_text("name: x\nratings_file: r.csv\nrating_cols: [q]\ntext_col: text\n"
                                          "label_map: {No: 0, Yes: 1}\n")
    spec = load_import_spec(tmp_path / "import.yaml")
    assert spec.label_maps() == {"q": {"No": 0.0, "Yes": 1.0}}


def test_two_local_datasets_cannot_share_a_name(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    """The CLI's datasets belong to its project ('local'); two of one project cannot share a name."""
    import sqlalchemy.exc
    from sqlmodel import Session

    from accord.models.projects import working_project
    from accord.models.schema import Dataset

    local = working_project(sqlite_engine).id
    with Session(sqlite_engine) as s:
        s.add(Dataset(name="same", project_id=local))
        s.commit()
        s.add(Dataset(name="same", project_id=local))
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            s.commit()


@pytest.mark.parametrize("doc, message", [
    ({"name": "c", "dataset": "d", "models": [], "templates": []}, "invalid campaign: models: List should have at least 1 item"),
    ({"name": "c", "dataset": "d", "models": [{"name": "m", "provider": "local"}]}, "templates: List should have at least 1 item"),
    ({"name": "c", "dataset": "d", "judges": {"models": [{"name": "j", "provider": "local"}], "templates": ["t"]}},
     "invalid campaign: judges: judges rate the subjects' answers; add subjects:"),
    ({"name": "c", "dataset": "d", "subjects": {"models": [{"name": "m", "provider": "cohere"}], "templates": ["t"]}},
     "invalid campaign: subjects.models.0.provider: Input should be"),
    ({"name": "c", "dataset": "d", "models": [{"name": "m", "provider": "local"}], "templates": ["t"],
      "subjects": {"models": [{"name": "m", "provider": "openai", "model": "x"}], "templates": ["t"]}},
     "subjects: model 'm' is also in models with other settings"),
])
def test_stage_errors_are_one_line_naming_the_field(doc: dict, message: str) -> None:
    from accord.scheduler.campaign_spec import CampaignSpecError

    with pytest.raises(CampaignSpecError) as err:
        parse_campaign(doc)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_stage_campaign_keeps_hashes_of_plain_campaigns() -> None:
    plain = parse_campaign(BASE)
    assert "subjects" not in plain.canonical_json() and "dataset_import" not in plain.canonical_json()
    staged = parse_campaign({"name": "c", "dataset": "d", "subjects": {"models": [{"name": "m", "provider": "local"}],
                                                                       "templates": ["fine_open_question"]}})
    assert staged.models == [] and staged.subjects is not None and staged.subjects.samples == 1
