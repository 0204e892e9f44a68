"""one world for the CLI and the server: what the CLI made belongs to the project ``local``

Rows without a project (the CLI's datasets, campaigns, runs and model specs) move to a real project named
``local`` (created here when such rows exist; else the CLI creates it on first use), so the server shows them
to a key of that project and ownership means one thing everywhere. A dataset name the project already has
(a server project that happened to be called ``local``) gets the suffix `` (cli <id>)`` instead of clashing.
The partial unique index on project-less dataset names has nothing left to guard and goes.

``project.cache_scope`` (NULL: the scope ``project:<id>``) is ``''`` for the project that adopts those rows:
their answers were cached without a scope, and a rerun of the same campaign is still answered from them.

The columns stay nullable: making them NOT NULL would rebuild four referenced tables on SQLite.

Revision ID: 0007
Revises: 0006
"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OWNED = ("dataset", "model_spec", "campaign", "run")
LOCAL = "local"


def upgrade() -> None:
    with op.batch_alter_table("project") as batch:
        batch.add_column(sa.Column("cache_scope", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    orphans = sum(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE project_id IS NULL")).scalar() or 0
                  for table in OWNED)
    if orphans:
        pid = conn.execute(sa.text("SELECT id FROM project WHERE name = :n"), {"n": LOCAL}).scalar()
        adopted = pid is None
        if pid is None:
            project = sa.table("project", sa.column("name", sa.String), sa.column("created_at", UTCDateTime))
            conn.execute(sa.insert(project).values(name=LOCAL, created_at=datetime.now(UTC)))
            pid = conn.execute(sa.text("SELECT id FROM project WHERE name = :n"), {"n": LOCAL}).scalar()
        conn.execute(sa.text(
            "UPDATE dataset SET name = substr(name, 1, 180) || ' (cli ' || CAST(id AS VARCHAR(20)) || ')' "
            "WHERE project_id IS NULL AND name IN (SELECT name FROM dataset WHERE project_id = :p)"), {"p": pid})
        for table in OWNED:
            conn.execute(sa.text(f"UPDATE {table} SET project_id = :p WHERE project_id IS NULL"), {"p": pid})
        if adopted:  # a server project called 'local' keeps its own scope: its cache is not the CLI's
            conn.execute(sa.text("UPDATE project SET cache_scope = '' WHERE id = :p"), {"p": pid})
    op.drop_index("uq_dataset_name_no_project", table_name="dataset")


def downgrade() -> None:
    conn = op.get_bind()
    pid = conn.execute(sa.text("SELECT id FROM project WHERE name = :n"), {"n": LOCAL}).scalar()
    if pid is not None:  # the CLI's rows go back to having no project (keys of 'local' stay with the project)
        for table in OWNED:
            conn.execute(sa.text(f"UPDATE {table} SET project_id = NULL WHERE project_id = :p"), {"p": pid})
    op.create_index("uq_dataset_name_no_project", "dataset", ["name"], unique=True,
                    postgresql_where=sa.text("project_id IS NULL"), sqlite_where=sa.text("project_id IS NULL"))
    op.drop_column("project", "cache_scope")   # ALTER TABLE ... DROP COLUMN: SQLite keeps the referenced table
