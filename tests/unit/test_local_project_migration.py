"""Migration 0007 (one world for the CLI and the server) on SQLite and PostgreSQL: the CLI's project-less
rows move to a project ``local`` whose cache scope stays the one their answers were cached in; a server
project that was already called ``local`` takes them without a name clash and keeps its own scope; the
models match the migrated schema; down and up again."""

from __future__ import annotations

from typing import Any

from accord.models.migrate import alembic_config, upgrade
from accord.models.projects import cache_scope, project_cache_scope
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel

OWNED = ("dataset", "model_spec", "campaign", "run")


def migrate_to(engine: Any, revision: str) -> None:
    if revision == "head":
        upgrade(engine)
        return
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def add_cli_rows(conn: Any, dataset: str = "legacy") -> None:
    """What the CLI wrote before 0007: a dataset, a model spec, a campaign and a run, without a project."""
    conn.execute(text("INSERT INTO dataset (name, description, source, label_map, dimensions, created_at) "
                      "VALUES (:n, '', '', '{}', '[]', CURRENT_TIMESTAMP)"), {"n": dataset})
    ds = conn.execute(text("SELECT id FROM dataset WHERE name = :n AND project_id IS NULL"), {"n": dataset}).scalar()
    conn.execute(text("INSERT INTO model_spec (name, provider, model, params, max_concurrency, price_input_per_mtok,"
                      " price_output_per_mtok, batch_discount, spec_hash, created_at) "
                      "VALUES ('m', 'openai', 'm', '{}', 1, 0, 0, 0, :h, CURRENT_TIMESTAMP)"), {"h": f"h-{dataset}"})
    conn.execute(text("INSERT INTO campaign (name, spec, spec_hash, dataset_id, created_at) "
                      "VALUES ('c', '{}', 'h', :d, CURRENT_TIMESTAMP)"), {"d": ds})
    camp = conn.execute(text("SELECT max(id) FROM campaign")).scalar()
    conn.execute(text("INSERT INTO run (campaign_id, status, mode, priority, total, done, failed, cached, cancelled,"
                      " input_tokens, output_tokens, cost_usd, created_at) "
                      "VALUES (:c, 'completed', 'embedded', 0, 0, 0, 0, 0, 0, 0, 0, 0, CURRENT_TIMESTAMP)"), {"c": camp})


def owners(conn: Any) -> dict[str, set[Any]]:
    return {t: set(conn.execute(text(f"SELECT project_id FROM {t}")).scalars()) for t in OWNED}


def test_cli_rows_move_to_the_local_project_and_keep_their_cache(engine: Any) -> None:
    migrate_to(engine, "0006")
    with engine.begin() as conn:
        add_cli_rows(conn)
        conn.execute(text("INSERT INTO project (name, created_at) VALUES ('lab', CURRENT_TIMESTAMP)"))
    migrate_to(engine, "head")

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
        local = conn.execute(text("SELECT id FROM project WHERE name = 'local'")).scalar()
        lab = conn.execute(text("SELECT id FROM project WHERE name = 'lab'")).scalar()
        assert local is not None and owners(conn) == {t: {local} for t in OWNED}
    assert "uq_dataset_name_no_project" not in {i["name"] for i in inspect(engine).get_indexes("dataset")}
    with Session(engine) as session:
        assert project_cache_scope(session, local) == ""              # the scope its answers were cached in
        assert project_cache_scope(session, lab) == cache_scope(lab) == f"project:{lab}"

    migrate_to(engine, "0006")                                         # down: the CLI's rows have no project again
    with engine.connect() as conn:
        assert owners(conn) == {t: {None} for t in OWNED}
    assert "cache_scope" not in {c["name"] for c in inspect(engine).get_columns("project")}
    migrate_to(engine, "head")
    with engine.connect() as conn:
        assert owners(conn) == {t: {local} for t in OWNED}
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_a_server_project_called_local_takes_the_rows_without_a_clash(engine: Any) -> None:
    migrate_to(engine, "0006")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO project (name, created_at) VALUES ('local', CURRENT_TIMESTAMP)"))
        server_local = conn.execute(text("SELECT id FROM project WHERE name = 'local'")).scalar()
        conn.execute(text("INSERT INTO dataset (project_id, name, description, source, label_map, dimensions, "
                          "created_at) VALUES (:p, 'legacy', '', '', '{}', '[]', CURRENT_TIMESTAMP)"),
                     {"p": server_local})
        add_cli_rows(conn)
        cli_dataset = conn.execute(text("SELECT id FROM dataset WHERE project_id IS NULL")).scalar()
    migrate_to(engine, "head")
    with engine.connect() as conn:
        names = dict(conn.execute(text("SELECT id, name FROM dataset WHERE project_id = :p"), {"p": server_local}).all())
        assert sorted(names.values()) == ["legacy", f"legacy (cli {cli_dataset})"]
        assert owners(conn) == {t: {server_local} for t in OWNED}
    with Session(engine) as session:   # its cache stays its own: the CLI's unscoped answers are not offered to it
        assert project_cache_scope(session, server_local) == f"project:{server_local}"


def test_a_new_database_has_no_project_until_the_cli_needs_one(engine: Any) -> None:
    from accord.models.projects import LOCAL_PROJECT, owner_id

    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM project")).scalar() == 0
    first = owner_id(engine, None)
    assert owner_id(engine, None) == first                              # created once, then found
    with Session(engine) as session:
        assert project_cache_scope(session, first) == f"project:{first}"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM project")).scalars().all() == [LOCAL_PROJECT]
