"""Migration 0003 (provider batches, repair and prompt-cache columns): matches the models, goes down and up
again, and keeps set-based rating inserts that do not name the new columns working. SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from accord.models.migrate import alembic_config, upgrade


def test_migration_0003_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []   # every table, column and index of the models is what the migrations create
    columns = {c["name"]: c for c in inspect(engine).get_columns("rating")}
    assert {"cached_input_tokens", "cache_write_tokens", "repair_text", "repaired", "provider_batch_id"} <= set(columns)
    assert {"provider_batch", "provider_batch_request"} <= set(inspect(engine).get_table_names())

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    assert "provider_batch" not in inspect(engine).get_table_names()
    assert "repaired" not in {c["name"] for c in inspect(engine).get_columns("rating")}
    upgrade(engine)

    with engine.begin() as conn:              # an INSERT that names none of the new columns gets the defaults
        conn.execute(text("INSERT INTO dataset (name, description, source, label_map, dimensions, created_at) "
                          "VALUES ('d', '', '', '{}', '[]', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO campaign (name, spec, spec_hash, dataset_id, created_at) "
                          "VALUES ('c', '{}', 'h', 1, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO run (campaign_id, status, mode, priority, total, done, failed, cached, cancelled,"
                          " input_tokens, output_tokens, cost_usd, created_at) "
                          "VALUES (1, 'pending', 'embedded', 0, 0, 0, 0, 0, 0, 0, 0, 0, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO item (dataset_id, external_id, content, metadata) VALUES (1, 'i', '{}', '{}')"))
        conn.execute(text("INSERT INTO model_spec (name, provider, model, params, max_concurrency, price_input_per_mtok,"
                          " price_output_per_mtok, batch_discount, spec_hash, created_at) "
                          "VALUES ('m', 'openai', 'm', '{}', 1, 0, 0, 0, 'h', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO prompt_template (name, version, response_format, system, \"user\", output_spec,"
                          " content_hash, created_at) VALUES ('t', '1', 'likert', '', 'u', '{}', 'h', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO rating_request (run_id, item_id, model_spec_id, template_id, persona_key, persona,"
                          " sample_index, cache_key, status, attempts, updated_at) "
                          "VALUES (1, 1, 1, 1, '', '{}', 0, 'k', 'pending', 0, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO rating (request_id, run_id, cache_key, raw_text, parse_status, decoding,"
                          " input_tokens, output_tokens, latency_ms, cost_usd, cache_hit, created_at) "
                          "VALUES (1, 1, 'k', '3', 'ok', '{}', 1, 1, 0, 0, :f, CURRENT_TIMESTAMP)"), {"f": False})
        row = conn.execute(text("SELECT cached_input_tokens, cache_write_tokens, repair_text, repaired, "
                                "provider_batch_id FROM rating")).one()
    assert (row[0], row[1], row[2], bool(row[3]), row[4]) == (0, 0, None, False, None)
