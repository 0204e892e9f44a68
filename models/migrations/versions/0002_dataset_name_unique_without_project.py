"""dataset names unique among datasets without a project

A UNIQUE (project_id, name) constraint does not apply where project_id is NULL (NULLs are distinct), so two
local imports of the same name at the same moment could both succeed. A partial unique index closes that.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_dataset_name_no_project", "dataset", ["name"], unique=True,
                    postgresql_where=sa.text("project_id IS NULL"), sqlite_where=sa.text("project_id IS NULL"))


def downgrade() -> None:
    op.drop_index("uq_dataset_name_no_project", table_name="dataset")
