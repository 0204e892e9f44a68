"""provider batches, parse repair and prompt-cache token accounting

- ``provider_batch``: one row per batch submitted to a provider's batch API (OpenAI Batch API, Anthropic
  Message Batches), with the provider's id, status, counts and file ids, so a restarted process resumes
  polling and never submits a request twice while a batch holding it is live;
- ``provider_batch_request``: the requests of each batch and their outcome;
- ``rating``: ``cached_input_tokens`` / ``cache_write_tokens`` (prompt caching), ``repair_text`` /
  ``repaired`` (the parse-repair follow-up), ``provider_batch_id``.

The new rating columns have server defaults, so INSERTs that do not name them (the set-based cache fill)
keep working.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("model_spec_id", sa.Integer(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("provider_status", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
        sa.Column("input_file_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("output_file_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("error_file_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("request_count", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("estimated_cost_usd", sa.Float(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("errored", sa.Integer(), nullable=False),
        sa.Column("expired", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("submitted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("collected_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["model_spec_id"], ["model_spec.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    with op.batch_alter_table("provider_batch", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provider_batch_model_spec_id"), ["model_spec_id"], unique=False)
        batch_op.create_index("ix_provider_batch_run_status", ["run_id", "status"], unique=False)

    op.create_table(
        "provider_batch_request",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["provider_batch.id"]),
        sa.ForeignKeyConstraint(["request_id"], ["rating_request.id"]),
        sa.PrimaryKeyConstraint("batch_id", "request_id"),
    )
    with op.batch_alter_table("provider_batch_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provider_batch_request_request_id"), ["request_id"], unique=False)

    with op.batch_alter_table("rating", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cached_input_tokens", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("cache_write_tokens", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("repair_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("repaired", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("provider_batch_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_rating_provider_batch_id"), ["provider_batch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rating", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rating_provider_batch_id"))
        batch_op.drop_column("provider_batch_id")
        batch_op.drop_column("repaired")
        batch_op.drop_column("repair_text")
        batch_op.drop_column("cache_write_tokens")
        batch_op.drop_column("cached_input_tokens")
    with op.batch_alter_table("provider_batch_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_batch_request_request_id"))
    op.drop_table("provider_batch_request")
    with op.batch_alter_table("provider_batch", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_batch_run_status")
        batch_op.drop_index(batch_op.f("ix_provider_batch_model_spec_id"))
    op.drop_table("provider_batch")
