"""Over the HTTP API, a campaign's subjects and judges follow the same rules as its rating models (no server
file paths, allowed endpoints and credential variables only), bundled templates only, and no dataset_import."""

from __future__ import annotations

from accord.api.http.campaigns import _policy_errors
from accord.api.http.config import ApiSettings
from accord.scheduler.campaign_spec import parse_campaign


def test_stage_models_templates_and_dataset_import_are_policed() -> None:
    spec = parse_campaign({
        "name": "c", "dataset": "d", "dataset_import": "/etc/passwd",
        "subjects": {"models": [{"name": "s", "provider": "local", "path": "/srv/x.gguf"}],
                     "templates": ["fine_open_question", {"path": "/tmp/mine.yaml"}]},
        "judges": {"models": [{"name": "j", "provider": "openai", "model": "m", "base_url": "http://evil:1/v1"}],
                   "templates": ["fine_judge_safety"]}})
    fields = [e["field"] for e in _policy_errors(spec, ApiSettings(allowed_base_urls=[]))]
    assert fields == ["dataset_import", "subjects.templates.1", "subjects.models.0.path", "judges.models.0.base_url"]
