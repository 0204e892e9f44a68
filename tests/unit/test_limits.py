"""Resource limits at their causes (issue 10): each test sends the attack to the piece that used to give in,
and asserts a bounded outcome (refused, a bounded count, a bounded size), never a wall-clock duration."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from accord.models.import_formats import DatasetImportError, read_table
from accord.models.import_spec import compile_column_regex, match_columns, spec_from_mapping
from accord.models.yaml_loader import DocumentLimitError, json_loads, safe_load

BILLION_LAUGHS = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


# -- 1: regular expressions ----------------------------------------------------------------------------
def test_column_patterns_use_a_linear_time_matcher() -> None:
    regex = compile_column_regex("re:(a+)+$")
    assert type(regex).__module__.startswith("re2"), "a backtracking matcher would be exponential here"
    header = ["item_id", "text", "a" * 5000 + "!"]
    assert match_columns("re:(a+)+$", header) == []
    assert match_columns("re:rater_[0-9]+", ["item_id", "rater_1", "rater_22", "x"]) == ["rater_1", "rater_22"]


def test_long_or_unsupported_patterns_are_refused_with_the_field() -> None:
    base = {"name": "d", "ratings_file": "r.csv", "layout": "wide", "text_col": "text"}
    with pytest.raises(DatasetImportError, match=r"^import spec: annotator_columns: .*longer than 200"):
        spec_from_mapping({**base, "annotator_columns": "re:" + "a" * 500})
    with pytest.raises(DatasetImportError, match="backreferences"):
        spec_from_mapping({**base, "annotator_columns": r"re:(a)\1"})


# -- 3, 11, 12: one YAML loader ------------------------------------------------------------------------
def test_yaml_aliases_and_anchors_are_refused_before_expansion() -> None:
    with pytest.raises(yaml.YAMLError) as err:
        safe_load(BILLION_LAUGHS)
    assert "anchors" in str(err.value) and len(str(err.value)) < 500


def test_yaml_12_booleans() -> None:
    assert safe_load("labels: {no: 0, yes: 1, on: 2, off: 3}") == {"labels": {"no": 0, "yes": 1, "on": 2, "off": 3}}
    assert safe_load("a: true\nb: False") == {"a": True, "b": False}


def test_deep_documents_are_refused_not_recursed(set_limits: Any) -> None:
    with pytest.raises(yaml.YAMLError, match="deeper than 32"):
        safe_load("[" * 5000 + "]" * 5000)
    with pytest.raises(DocumentLimitError, match="deeper than 32"):
        json_loads("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DocumentLimitError, match="deeper than 32"):
        json_loads("[" * 40 + "]" * 40)
    set_limits(max_document_nodes=1000)
    with pytest.raises(yaml.YAMLError, match="more than 1000 values"):
        safe_load("[" + ",".join(["1"] * 2000) + "]")


def test_json_documents_hold_finite_numbers_only() -> None:
    for text in ('{"budget_usd": Infinity}', '{"budget_usd": NaN}', '{"x": -Infinity}'):
        with pytest.raises(DocumentLimitError, match="finite"):
            json_loads(text)


# -- 5: import files -----------------------------------------------------------------------------------
def test_parquet_rows_are_checked_from_metadata_before_decoding(tmp_path: Path, set_limits: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 2_000_000
    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int8)), pa.array(["x" * 100]))
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"item_id": column, "text": column}), path)
    assert path.stat().st_size < 200_000
    decoded: list[int] = []
    real_iter = pq.ParquetFile.iter_batches
    monkeypatch.setattr(pq.ParquetFile, "iter_batches",
                        lambda self, *a, **k: (decoded.append(1), real_iter(self, *a, **k))[1])
    set_limits(max_rows=100_000)
    with pytest.raises(DatasetImportError, match=r"bomb.parquet: more than 100000 data rows"):
        read_table(path)
    assert decoded == [], "no batch may be decoded when the metadata already says no"


def test_parquet_decoded_bytes_are_bounded(tmp_path: Path, set_limits: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "wide.parquet"
    pq.write_table(pa.table({"item_id": [str(i) for i in range(3000)], "text": ["y" * 1000] * 3000}), path)
    set_limits(max_decoded_bytes=100_000)
    with pytest.raises(DatasetImportError, match="more than 100000 bytes once decoded"):
        read_table(path)


def test_csv_long_lines_cells_columns_and_rows_are_bounded(tmp_path: Path, set_limits: Any) -> None:
    set_limits(max_cell_chars=1000, max_columns=10, max_rows=5)
    long_line = tmp_path / "long.csv"
    long_line.write_text("item_id,text\ni1," + "x" * 200_000 + "\n", encoding="utf-8")
    with pytest.raises(DatasetImportError, match=r"long.csv: line 2: longer than"):
        read_table(long_line)
    cell = tmp_path / "cell.csv"
    cell.write_text('item_id,text\ni1,"' + "x" * 1100 + '"\n', encoding="utf-8")
    with pytest.raises(DatasetImportError, match=r"cell.csv: line 2: malformed CSV"):
        read_table(cell)
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(11)) + "\n" + ",".join("1" * 11) + "\n", encoding="utf-8")
    with pytest.raises(DatasetImportError, match="11 columns, more than the limit of 10"):
        read_table(wide)
    many = tmp_path / "many.csv"
    many.write_text("item_id,text\n" + "".join(f"i{i},t\n" for i in range(6)), encoding="utf-8")
    with pytest.raises(DatasetImportError, match="more than 5 data rows"):
        read_table(many)
    jsonl = tmp_path / "many.jsonl"
    jsonl.write_text("".join(json.dumps({"item_id": i}) + "\n" for i in range(6)), encoding="utf-8")
    with pytest.raises(DatasetImportError, match="more than 5 data rows"):
        read_table(jsonl)


def test_gzip_bombs_stop_at_the_decoded_limit(tmp_path: Path, set_limits: Any) -> None:
    set_limits(max_decoded_bytes=1_000_000)
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"item_id,text\n" + b"i,t\n" * 5_000_000))
    assert path.stat().st_size < 200_000
    with pytest.raises(DatasetImportError, match="larger than the limit of 1000000 bytes once decompressed"):
        read_table(path)


def test_deep_json_items_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text('[{"item_id": "i1", "text": ' + "[" * 50_000 + "]" * 50_000 + "}]", encoding="utf-8")
    with pytest.raises(DatasetImportError, match=r"items.json: nested deeper than"):
        read_table(path)


# -- 4: templates in the sandbox -----------------------------------------------------------------------
def _template(user: str, system: str = "") -> Any:
    from accord.worker.prompt_templates import resolve_template

    return resolve_template({"name": "t", "response_format": "binary", "user": user, "system": system,
                             "output": {"labels": {"0": 0, "1": 1}}}, {})


@pytest.mark.parametrize("user, reason", [
    ("{{ 'A' * 200000000 }}", "more than 200000 characters"),
    ("{% for a in range(600) %}{% for b in range(600) %}{% for c in range(600) %}{% endfor %}{% endfor %}"
     "{% endfor %}", "loops more than 100000 times"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "more than 200000 characters"),
    ("{{ 'a'|center(1000000000) }}", "more than 200000 characters"),
    ("{{ '%1000000000s' % 'a' }}", "width or precision is too large"),
    ("{{ '{:>1000000000}'.format(1) }}", "width or precision is too large"),
    ("{{ 2 ** 100000000 }}", "exponent is too large"),
    ("{{ (['x' * 100000] * 1000)|join }}", "more than 200000 characters"),
    ("{% for i in range(100) %}{{ 'y' * 5000 }}{% endfor %}", "rendered prompt is longer than 200000"),
])
def test_templates_are_stopped_before_the_work(user: str, reason: str) -> None:
    from accord.worker.prompt_templates import TemplateRenderError, render_messages

    with pytest.raises(TemplateRenderError, match=reason) as err:
        render_messages(_template(user), {"kind": "text", "text": "hello"})
    assert err.value.over_limit and "field 'user'" in str(err.value)


def test_ordinary_templates_still_render() -> None:
    from accord.worker.prompt_templates import render_messages

    tmpl = _template("{{ content }} {% for x in labels %}{{ loop.index }}={{ x }} {% endfor %}"
                     "{{ labels|join('/') }} {{ '%s!' % 'ok' }} {{ '{}-{}'.format(1, 2) }} {{ 'a' ~ 'b' }}")
    text = render_messages(tmpl, {"kind": "text", "text": "hello"})[0]["content"]
    assert text.endswith("1=0 2=1 0/1 ok! 1-2 ab") and "hello" in text


def test_bundled_template_errors_name_no_install_path() -> None:
    from accord.worker.prompt_templates import BUNDLED_DIR, TemplateSpecError, load_template

    with pytest.raises(TemplateSpecError) as err:
        load_template("multiple_choice_unsafe", params={"option_order": "ZZ" * 1000})
    assert str(BUNDLED_DIR) not in str(err.value) and "/" not in str(err.value).split(":")[0]
    assert str(err.value).startswith("bundled template multiple_choice_unsafe: option_order")
    assert len(str(err.value)) < 300


# -- 2, 14: campaigns ----------------------------------------------------------------------------------
def _campaign(**extra: Any) -> dict[str, Any]:
    return {"name": "c", "dataset": "d", "models": [{"name": "m", "provider": "local"}],
            "templates": ["binary_unsafe"], **extra}


def test_campaign_structure_limits(set_limits: Any) -> None:
    from accord.scheduler.campaign_spec import CampaignSpecError, parse_campaign

    many_models = [{"name": f"m{i}", "provider": "local"} for i in range(1000)]
    with pytest.raises(CampaignSpecError, match="models: .*at most 50 models"):
        parse_campaign(_campaign(models=many_models))
    with pytest.raises(CampaignSpecError, match="templates: .*at most 50 templates"):
        parse_campaign(_campaign(templates=["binary_unsafe"] * 51))
    with pytest.raises(CampaignSpecError, match="samples: .*at most 100 samples"):
        parse_campaign(_campaign(samples=1000))
    set_limits(max_models=2)
    with pytest.raises(CampaignSpecError, match="at most 2 models"):
        parse_campaign(_campaign(models=many_models[:3]))


def test_request_count_is_arithmetic_and_bounded() -> None:
    from accord.scheduler.campaign_spec import CampaignSpecError, check_request_count, parse_campaign

    spec = parse_campaign(_campaign(models=[{"name": f"m{i}", "provider": "local"} for i in range(50)],
                                    templates=["binary_unsafe", "persona_likert_unsafe"], samples=100))
    # 10^9 items would take hours to expand; the count takes no time and nothing is expanded.
    with pytest.raises(CampaignSpecError, match=r"expands to 150000000000000 rating requests .* limit of 1000000"):
        check_request_count(spec, 10**9, 29, [False, True])
    assert check_request_count(spec, 10, 3, [False, True]) == 10 * 50 * (1 + 3) * 100


@pytest.mark.parametrize("field, value", [("budget_usd", float("inf")), ("budget_usd", float("nan")),
                                          ("deadline_hours", float("inf"))])
def test_campaign_numbers_are_finite(field: str, value: float) -> None:
    from accord.scheduler.campaign_spec import CampaignSpecError, parse_campaign

    with pytest.raises(CampaignSpecError, match=field):
        parse_campaign(_campaign(**{field: value}))


def test_campaign_errors_are_bounded() -> None:
    from accord.scheduler.campaign_spec import CampaignSpecError, parse_campaign

    doc = _campaign(personas={"list": [{"k" * 100_000: 1}] * 40})
    with pytest.raises(CampaignSpecError) as err:
        parse_campaign(doc)
    assert len(str(err.value)) < 5000


# -- 9: CSV exports ------------------------------------------------------------------------------------
def test_csv_cells_that_spreadsheets_run_are_neutralised() -> None:
    import pandas as pd
    from accord.report.csv_safe import neutralise, neutralise_frame

    for attack in ('=HYPERLINK("http://x","click")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"):
        assert neutralise(attack) == "'" + attack
    assert neutralise("plain") == "plain" and neutralise(-3) == -3 and neutralise(None) is None
    frame = neutralise_frame(pd.DataFrame({"item_id": ["=1+1", "ok"], "value": [-1.0, 2.0]}))
    assert frame["item_id"].tolist() == ["'=1+1", "ok"] and frame["value"].tolist() == [-1.0, 2.0]


# -- 7: metrics labels ---------------------------------------------------------------------------------
def test_metric_labels_come_from_fixed_sets() -> None:
    from accord.api.http.observability import KNOWN_METHODS, status_class

    assert status_class(200) == "2xx" and status_class(404) == "4xx" and status_class(999) == "other"
    assert "FOO" not in KNOWN_METHODS and "GET" in KNOWN_METHODS


# -- 16: sessions --------------------------------------------------------------------------------------
def test_session_tokens_are_signed_and_expire() -> None:
    from accord.api.http.auth import SessionSigner

    now = [1000.0]
    signer = SessionSigner("secret", 60, clock=lambda: now[0])
    token = signer.issue(7)
    assert signer.verify(token) == 7
    key_id, expiry, sig = token.split(".")[1:]
    assert signer.verify(f"v1.8.{expiry}.{sig}") is None             # another key id
    assert signer.verify(f"v1.{key_id}.99999999.{sig}") is None       # a later expiry
    assert SessionSigner("other", 60, clock=lambda: now[0]).verify(token) is None
    now[0] += 61
    assert signer.verify(token) is None
    assert signer.verify("acc_" + "x" * 43) is None and signer.verify("x" * 10_000) is None


# -- 8: provider redirects -----------------------------------------------------------------------------
class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []
    redirect_to = ""

    def do_POST(self) -> None:
        self.hits.append(self.headers.get("authorization", ""))
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.redirect_to:
            self.send_response(307)
            self.send_header("Location", self.redirect_to + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = b'{"error": {"message": "should never be reached"}}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[HTTPServer, str]:
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("provider_kind", ["openai", "anthropic"])
def test_provider_clients_do_not_follow_redirects(provider_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from accord.worker.providers.base import ProviderError, ProviderRequest

    class Target(_Recorder):
        hits: list[str] = []
        redirect_to = ""

    class Allowed(_Recorder):
        hits: list[str] = []

    target, target_url = _serve(Target)
    Allowed.redirect_to = target_url
    allowed, allowed_url = _serve(Allowed)
    monkeypatch.setenv("ACCORD_TEST_REDIRECT_KEY", "sk-redirect-secret")
    try:
        if provider_kind == "openai":
            from accord.worker.providers.openai_provider import OpenAIProvider as cls
        else:
            from accord.worker.providers.anthropic_provider import AnthropicProvider as cls  # type: ignore[assignment]
        provider = cls("m", base_url=allowed_url + "/v1", api_key_env="ACCORD_TEST_REDIRECT_KEY", timeout=10)

        async def call() -> None:
            try:
                await provider.complete(ProviderRequest(messages=[{"role": "user", "content": "secret prompt"}],
                                                        params={"max_tokens": 4}))
            finally:
                await provider.aclose()

        with pytest.raises(ProviderError):
            asyncio.run(call())
        assert len(Allowed.hits) == 1
        assert Target.hits == [], "the redirect target received the prompt (and the key)"
    finally:
        for server in (target, allowed):
            server.shutdown()
            server.server_close()


def test_cli_plan_and_run_refuse_a_campaign_over_the_limit_before_loading_items(
        sqlite_engine: Any, tmp_path: Path, set_limits: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.models.dataset_import import import_dataset
    from accord.models.import_spec import ImportSpec
    from accord.scheduler import expand
    from accord.scheduler.campaign_spec import parse_campaign
    from accord.scheduler.plan import plan_campaign

    from tests.fakes.synthetic_dataset import make_sparse_dataset

    import_dataset(sqlite_engine, ImportSpec(**{**make_sparse_dataset(tmp_path, n_items=12, n_annotators=40, seed=3),
                                                "name": "syn"}))
    loaded: list[int] = []
    real = expand.select_items
    monkeypatch.setattr(expand, "select_items", lambda *a, **k: (loaded.append(1), real(*a, **k))[1])
    set_limits(max_requests_per_run=50)
    spec = parse_campaign({"name": "c", "dataset": "syn", "dimension": "Q_overall", "samples": 5,
                           "models": [{"name": "b", "provider": "local"}], "templates": ["binary_unsafe"]})
    with pytest.raises(expand.CampaignError, match=r"expands to 60 rating requests .* limit of 50"):
        plan_campaign(sqlite_engine, spec)
    with pytest.raises(expand.CampaignError, match="expands to 60 rating requests"):
        expand.create_run(sqlite_engine, spec)
    assert loaded == []
    with sqlite_engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT count(*) FROM run")).scalar_one() == 0


def test_plan_streams_the_expansion_in_bounded_batches(sqlite_engine: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.models.dataset_import import import_dataset
    from accord.models.import_spec import ImportSpec
    from accord.scheduler import plan
    from accord.scheduler.campaign_spec import parse_campaign

    from tests.fakes.synthetic_dataset import make_sparse_dataset

    import_dataset(sqlite_engine, ImportSpec(**{**make_sparse_dataset(tmp_path, n_items=12, n_annotators=40, seed=3),
                                                "name": "syn"}))
    looked_up: list[int] = []
    real = plan._cached_keys
    monkeypatch.setattr(plan, "_cached_keys", lambda session, keys: (looked_up.append(len(keys)),
                                                                      real(session, keys))[1])
    spec = parse_campaign({"name": "c", "dataset": "syn", "dimension": "Q_overall", "samples": 100,
                           "models": [{"name": "b", "provider": "local"}], "templates": ["binary_unsafe"]})
    result = plan.plan_campaign(sqlite_engine, spec)
    assert result.requests == 1200
    assert looked_up == [900, 300], "requests must be looked up (and held) a batch at a time"


def test_docs_list_every_limit_with_its_default() -> None:
    from accord.api.http.config import ApiSettings
    from accord.models.limits import Limits

    docs = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "docs/security.md" in readme
    for name, field in Limits.model_fields.items():
        row = next((line for line in docs.splitlines() if f"`ACCORD_LIMIT_{name.upper()}`" in line), None)
        assert row is not None, f"docs/security.md does not list ACCORD_LIMIT_{name.upper()}"
        assert f"| {field.default} " in row, f"docs/security.md: wrong default for ACCORD_LIMIT_{name.upper()}"
    for name in ("max_upload_bytes", "max_document_bytes", "rate_limit_per_minute", "rate_limit_burst",
                 "allowed_key_envs", "allowed_base_urls", "key_endpoints", "cookie_secure", "session_secret",
                 "session_max_age_s", "metrics_token"):
        assert f"`ACCORD_API_{name.upper()}`" in docs, name
        assert name in ApiSettings.model_fields


def test_errors_list_a_bounded_number_of_columns(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join("c" * 500 + str(i) for i in range(400)) + "\n" + ",".join(["1"] * 400) + "\n",
                    encoding="utf-8")
    with pytest.raises(DatasetImportError) as err:
        read_table(path).require("item_id", "item id")
    assert "(and 370 more)" in str(err.value) and len(str(err.value)) < 3000


def test_stage_requests_count_toward_the_request_limit_before_expansion(sqlite_engine: Any, set_limits: Any,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from accord.scheduler import expand
    from accord.scheduler.campaign_spec import parse_campaign
    from accord.scheduler.plan import plan_campaign

    example = Path(__file__).resolve().parents[2] / "examples" / "harm_ranking" / "import.yaml"
    loaded: list[int] = []
    real = expand.select_items
    monkeypatch.setattr(expand, "select_items", lambda *a, **k: (loaded.append(1), real(*a, **k))[1])
    set_limits(max_requests_per_run=51)
    doc = {"name": "c", "dataset": "harm_ranking", "dataset_import": str(example), "items": {"limit": 4},
           "subjects": {"models": [{"name": f"s{i}", "provider": "local"} for i in range(3)],
                        "templates": ["answer_prompt"]},
           "judges": {"models": [{"name": "j", "provider": "local"}],
                      "templates": ["judge_harm_likert", "judge_harm_pairwise", "judge_harm_listwise"]}}
    # 4 items x 3 subjects answers + 12 ratings of them + 4 x 6 ordered pairs + 4 lists = 52
    spec = parse_campaign(doc)
    with pytest.raises(expand.CampaignError, match=r"expands to 52 requests \(52 subjects' and judges' requests"):
        plan_campaign(sqlite_engine, spec)
    with pytest.raises(expand.CampaignError, match="limit of 51"):
        expand.create_run(sqlite_engine, spec)
    assert loaded == []
    set_limits(max_requests_per_run=52)
    assert expand.create_run(sqlite_engine, spec).total == 12      # the judges' requests come with the answers
