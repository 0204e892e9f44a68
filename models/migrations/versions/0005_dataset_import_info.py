"""dataset.import_info: what an import dropped or merged, and each dimension's scale

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset") as batch:
        batch.add_column(sa.Column("import_info", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset") as batch:
        batch.drop_column("import_info")
