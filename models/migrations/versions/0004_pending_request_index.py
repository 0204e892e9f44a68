"""partial index for claiming pending rating requests

Claims pick the lowest pending ids of a run (and model). Without this index, PostgreSQL without fresh
statistics sorts the whole run to find them; with it, a claim reads only the pending part.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_request_pending_claim", "rating_request", ["run_id", "model_spec_id", "id"],
                    postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_index("ix_request_pending_claim", table_name="rating_request")
