"""answer comparisons and people's judgments of answers

- ``answer_comparison``: answers of one item shown together to a pairwise or listwise judge, in the order shown
  (unique per run and order, so no pair or list is asked twice);
- ``rating_request.comparison_id``: the comparison a pairwise/listwise judge request orders, with its own partial
  unique index (once per comparison x judge x template x persona x sample); ``uq_request_item`` now leaves out
  comparison requests too (their ``answer_id`` is NULL);
- ``human_answer_judgment``: a person's rating or ranking of a subject's answer, keyed to (item, subject).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ITEM_COLUMNS = ["run_id", "stage", "item_id", "model_spec_id", "template_id", "persona_key", "sample_index"]


def upgrade() -> None:
    op.create_table(
        "answer_comparison",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("answer_ids", sa.JSON(), nullable=False),
        sa.Column("answers_key", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "answers_key", name="uq_comparison_run_answers"),
    )
    with op.batch_alter_table("answer_comparison", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_answer_comparison_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_answer_comparison_run_id"), ["run_id"], unique=False)

    op.create_table(
        "human_answer_judgment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("answer_id", sa.Integer(), nullable=True),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("dimension", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("raw_label", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotator.id"]),
        sa.ForeignKeyConstraint(["answer_id"], ["answer.id"]),
        sa.ForeignKeyConstraint(["dataset_id"], ["dataset.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("item_id", "subject", "annotator_id", "dimension", "kind",
                            name="uq_human_answer_judgment"),
    )
    with op.batch_alter_table("human_answer_judgment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_human_answer_judgment_annotator_id"), ["annotator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_human_answer_judgment_dataset_id"), ["dataset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_human_answer_judgment_item_id"), ["item_id"], unique=False)

    with op.batch_alter_table("rating_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("comparison_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("rating_request", schema=None) as batch_op:
        batch_op.drop_index("uq_request_item")
        batch_op.create_index("uq_request_item", _ITEM_COLUMNS, unique=True,
                              postgresql_where=sa.text("answer_id IS NULL AND comparison_id IS NULL"),
                              sqlite_where=sa.text("answer_id IS NULL AND comparison_id IS NULL"))
        batch_op.create_index(batch_op.f("ix_rating_request_comparison_id"), ["comparison_id"], unique=False)
        batch_op.create_index("uq_request_comparison", ["comparison_id", "model_spec_id", "template_id",
                                                        "persona_key", "sample_index"], unique=True,
                              postgresql_where=sa.text("comparison_id IS NOT NULL"),
                              sqlite_where=sa.text("comparison_id IS NOT NULL"))


def downgrade() -> None:
    op.execute("DELETE FROM rating WHERE request_id IN (SELECT id FROM rating_request WHERE comparison_id IS NOT NULL)")
    op.execute("DELETE FROM rating_request WHERE comparison_id IS NOT NULL")
    with op.batch_alter_table("rating_request", schema=None) as batch_op:
        batch_op.drop_index("uq_request_comparison")
        batch_op.drop_index(batch_op.f("ix_rating_request_comparison_id"))
        batch_op.drop_index("uq_request_item")
        batch_op.create_index("uq_request_item", _ITEM_COLUMNS, unique=True,
                              postgresql_where=sa.text("answer_id IS NULL"), sqlite_where=sa.text("answer_id IS NULL"))
    with op.batch_alter_table("rating_request", schema=None) as batch_op:
        batch_op.drop_column("comparison_id")
    op.drop_table("human_answer_judgment")
    op.drop_table("answer_comparison")
