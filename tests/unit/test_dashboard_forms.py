"""The dashboard's upload form turned into import fields (as `accord import` reads its options), and its
server-drawn charts (escaped text, no script, no style attribute)."""

from __future__ import annotations

import pytest
from accord.api.http.problems import ProblemError
from accord.api.http.svg import Interval, bar_chart, interval_chart
from accord.api.http.upload_form import FIELDS, mapping_from_form
from accord.models.import_spec import spec_from_mapping


def test_form_fields_become_the_import_fields_of_the_cli_options() -> None:
    mapping = mapping_from_form({"csrf": "x", "name": " d1 ", "layout": "long", "rating_cols": "q1, q2=harm",
                                 "model_rating_cols": "gpt4=gpt4_label", "attribute_cols": "gender, age",
                                 "meta_roles": "category=topic", "label_map": "No=0, Yes=1", "text_col": "",
                                 "meaning": "low=safe,high=unsafe"})
    assert mapping["rating_cols"] == {"q1": "q1", "q2": "harm"}
    assert mapping["model_rating_cols"] == {"gpt4": "gpt4_label"}
    assert "text_col" not in mapping and "csrf" not in mapping
    one_dimension = {k: v for k, v in mapping.items() if k != "rating_cols"}
    spec = spec_from_mapping({**one_dimension, "rating_cols": {"q1": "q1"}, "ratings_file": "r.csv",
                              "text_col": "text"})
    assert spec.attribute_cols == ["gender", "age"] and spec.meta_roles == {"category": "topic"}
    assert spec.meaning == {"low": "safe", "high": "unsafe"} and spec.name == "d1"
    assert {f.name for f in FIELDS} >= {"layout", "label_map", "meta_roles", "attribute_cols", "annotator_columns"}


@pytest.mark.parametrize(("fields", "field"), [({"rating_cols": "q1"}, "name"),
                                               ({"name": "d", "model_rating_cols": "gpt4"}, "model_rating_cols"),
                                               ({"name": "d", "rating_cols": "=x"}, "rating_cols")])
def test_form_errors_name_the_field(fields: dict[str, str], field: str) -> None:
    with pytest.raises(ProblemError) as err:
        mapping_from_form(fields)
    assert err.value.status == 422 and err.value.detail.startswith(field + ":") and "\n" not in err.value.detail


def test_charts_escape_text_and_carry_no_script_or_style() -> None:
    evil = '<script>alert(1)</script>"'
    bars = str(bar_chart({evil: 3, "b": 0}, evil))
    dots = str(interval_chart([Interval(evil, 0.5, 0.2, 0.8), Interval("x", None, None, None)], evil))
    for svg in (bars, dots):
        assert "<script>" not in svg and "style=" not in svg and "&lt;script&gt;" in svg
    assert bars.count("<rect") == 2 and dots.count("<circle") == 1
    assert str(bar_chart({}, "none")) == "" and str(interval_chart([], "none")) == ""


def test_the_limiters_pace_slows_after_a_429_and_recovers_on_the_driven_clock() -> None:
    from accord.models.schema import ModelSpec
    from accord.worker.rate_limiter import LocalRateLimiter

    now = [1_000_000.0]
    limiter = LocalRateLimiter(clock=lambda: now[0], decrease=0.5, recover_s=10.0)
    spec = ModelSpec(name="m", provider="openai", model="gpt", rpm=600, spec_hash="x")
    assert limiter.pace(spec) == {"rpm": pytest.approx(600 * 0.985), "factor": 1.0, "blocked_for_s": 0.0}
    limiter.penalize(spec, 2.0)
    slowed = limiter.pace(spec)
    assert slowed["factor"] == 0.5 and slowed["rpm"] == pytest.approx(300 * 0.985) and slowed["blocked_for_s"] == 2.0
    now[0] += 5_000.0                       # half the recovery time later
    assert limiter.pace(spec)["factor"] == pytest.approx(1.0) and limiter.pace(spec)["blocked_for_s"] == 0.0
    unlimited = ModelSpec(name="u", provider="local", model="x", spec_hash="y")
    assert limiter.pace(unlimited)["rpm"] is None
