"""Migration 0006 (answers, judge assignments, request stages): matches the models on SQLite and PostgreSQL,
goes down and up again, and its unique indexes refuse a second request for the same item or answer."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from accord.models.migrate import alembic_config, upgrade

_SEED = [
    "INSERT INTO dataset (name, description, source, label_map, dimensions, created_at) "
    "VALUES ('d', '', '', '{}', '[]', CURRENT_TIMESTAMP)",
    "INSERT INTO campaign (name, spec, spec_hash, dataset_id, created_at) VALUES ('c', '{}', 'h', 1, CURRENT_TIMESTAMP)",
    "INSERT INTO run (campaign_id, status, mode, priority, total, done, failed, cached, cancelled, input_tokens,"
    " output_tokens, cost_usd, created_at) VALUES (1, 'pending', 'embedded', 0, 0, 0, 0, 0, 0, 0, 0, 0, CURRENT_TIMESTAMP)",
    "INSERT INTO item (dataset_id, external_id, content, metadata) VALUES (1, 'i', '{}', '{}')",
    "INSERT INTO model_spec (name, provider, model, params, max_concurrency, price_input_per_mtok,"
    " price_output_per_mtok, batch_discount, spec_hash, created_at) VALUES ('m', 'openai', 'm', '{}', 1, 0, 0, 0, 'h',"
    " CURRENT_TIMESTAMP)",
    "INSERT INTO prompt_template (name, version, response_format, system, \"user\", output_spec, content_hash,"
    " created_at) VALUES ('t', '1', 'open_ended', '', 'u', '{}', 'h', CURRENT_TIMESTAMP)",
]
_REQUEST = ("INSERT INTO rating_request (run_id, item_id, model_spec_id, template_id, persona_key, persona, sample_index,"
            " cache_key, status, attempts, updated_at{cols}) VALUES (1, 1, 1, 1, '', '{{}}', 0, 'k', 'pending', 0,"
            " CURRENT_TIMESTAMP{vals})")


def test_migration_0006_matches_models_and_round_trips(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    assert {"answer", "judge_assignment"} <= set(inspect(engine).get_table_names())
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    assert "answer" not in inspect(engine).get_table_names()
    assert "stage" not in {c["name"] for c in inspect(engine).get_columns("rating_request")}
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_request_uniqueness_per_item_stage_and_per_answer(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        for stmt in _SEED:
            conn.execute(text(stmt))
        conn.execute(text(_REQUEST.format(cols="", vals="")))                       # an old-style INSERT: stage 'rate'
        conn.execute(text(_REQUEST.format(cols=", stage", vals=", 'generate'")))   # same item, other stage: allowed
        conn.execute(text("INSERT INTO answer (request_id, run_id, item_id, model_spec_id, template_id, sample_index,"
                          " text, status, decoding, input_tokens, output_tokens, latency_ms, cost_usd, cache_key,"
                          " cache_hit, created_at) VALUES (2, 1, 1, 1, 1, 0, 'an answer', 'ok', '{}', 1, 1, 0, 0, 'k',"
                          " :f, CURRENT_TIMESTAMP)"), {"f": False})
        conn.execute(text(_REQUEST.format(cols=", stage, answer_id", vals=", 'judge', 1")))
        assert conn.execute(text("SELECT stage FROM rating_request WHERE id = 1")).scalar_one() == "rate"
    for cols, vals in [("", ""), (", stage", ", 'generate'"), (", stage, answer_id", ", 'judge', 1")]:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(_REQUEST.format(cols=cols, vals=vals)))
    with pytest.raises(IntegrityError), engine.begin() as conn:   # one answer per generate request
        conn.execute(text("INSERT INTO answer (request_id, run_id, item_id, model_spec_id, template_id, sample_index,"
                          " text, status, decoding, input_tokens, output_tokens, latency_ms, cost_usd, cache_key,"
                          " cache_hit, created_at) VALUES (2, 1, 1, 1, 1, 1, 'again', 'ok', '{}', 1, 1, 0, 0, 'k',"
                          " :f, CURRENT_TIMESTAMP)"), {"f": False})


def test_migration_0008_round_trips_and_comparison_requests_are_unique(engine) -> None:  # type: ignore[no-untyped-def]
    """Migration 0008 (answer comparisons, people's judgments of answers): down to 0007 and up again matches the
    models; a pairwise/listwise judge request exists once per comparison x judge x template x sample, and two
    comparisons of one item each have theirs (the per-item index leaves comparison requests out)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0007")
    assert not {"answer_comparison", "human_answer_judgment"} & set(inspect(engine).get_table_names())
    assert "comparison_id" not in {c["name"] for c in inspect(engine).get_columns("rating_request")}
    upgrade(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    with engine.begin() as conn:
        for stmt in _SEED:
            conn.execute(text(stmt))
        for key in ("pair:1,2", "pair:2,1"):
            conn.execute(text("INSERT INTO answer_comparison (run_id, item_id, kind, answer_ids, answers_key) "
                              "VALUES (1, 1, 'pair', '[1, 2]', :k)"), {"k": key})
        conn.execute(text(_REQUEST.format(cols=", stage, comparison_id", vals=", 'judge', 1")))
        conn.execute(text(_REQUEST.format(cols=", stage, comparison_id", vals=", 'judge', 2")))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(_REQUEST.format(cols=", stage, comparison_id", vals=", 'judge', 1")))
    with pytest.raises(IntegrityError), engine.begin() as conn:   # one comparison per run and order
        conn.execute(text("INSERT INTO answer_comparison (run_id, item_id, kind, answer_ids, answers_key) "
                          "VALUES (1, 1, 'pair', '[1, 2]', 'pair:1,2')"))
