"""subject answers and judges: the generate-then-judge stages of a campaign

- ``rating_request.stage`` (rate | generate | judge, server default ``rate`` so every existing request is a
  rating of an item) and ``rating_request.answer_id`` (the answer a judge request rates);
- the request's uniqueness moves from one constraint to two partial unique indexes: one request per run x
  stage x item x model x template x persona x sample for requests about an item, one per answer x judge x
  template x persona x sample for judge requests (no answer is ever judged twice by the same judge call);
- ``answer``: a subject model's answer (item, subject, generation template, sample, text, parsed choice,
  tokens, cost, status); ``request_id`` unique, so no subject is asked twice for one request;
- ``judge_assignment``: the judge stage of a run resolved to (judge model, template, samples, answers of);
- ``imported_rating``: an existing judge model's label per item, imported with the dataset.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel.sql.sqltypes

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("model_spec_id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("finish_reason", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=True),
        sa.Column("model_snapshot", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("decoding", sa.JSON(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("cache_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("cache_hit", sa.Boolean(), nullable=False),
        sa.Column("source_answer_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"]),
        sa.ForeignKeyConstraint(["model_spec_id"], ["model_spec.id"]),
        sa.ForeignKeyConstraint(["request_id"], ["rating_request.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.ForeignKeyConstraint(["template_id"], ["prompt_template.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id"),
        sa.UniqueConstraint("run_id", "item_id", "model_spec_id", "template_id", "sample_index",
                            name="uq_answer_run_item_subject_template_sample"),
    )
    with op.batch_alter_table("answer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_answer_cache_key"), ["cache_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_answer_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_answer_model_spec_id"), ["model_spec_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_answer_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_answer_template_id"), ["template_id"], unique=False)

    op.create_table(
        "judge_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("model_spec_id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("answers_of", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["model_spec_id"], ["model_spec.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"]),
        sa.ForeignKeyConstraint(["template_id"], ["prompt_template.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "model_spec_id", "template_id", name="uq_judge_run_model_template"),
    )
    with op.batch_alter_table("judge_assignment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_judge_assignment_run_id"), ["run_id"], unique=False)

    op.create_table(
        "imported_rating",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("rater", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("dimension", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("raw_label", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("item_id", "rater", "dimension", name="uq_imported_rating_item_rater_dim"),
    )
    with op.batch_alter_table("imported_rating", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_imported_rating_item_id"), ["item_id"], unique=False)

    with op.batch_alter_table("rating_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False,
                                      server_default="rate"))
        batch_op.add_column(sa.Column("answer_id", sa.Integer(), nullable=True))
        batch_op.drop_constraint("uq_request_run_item_model_template_persona_sample", type_="unique")
    with op.batch_alter_table("rating_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rating_request_answer_id"), ["answer_id"], unique=False)
        batch_op.create_index("uq_request_item", ["run_id", "stage", "item_id", "model_spec_id", "template_id",
                                                  "persona_key", "sample_index"], unique=True,
                              postgresql_where=sa.text("answer_id IS NULL"), sqlite_where=sa.text("answer_id IS NULL"))
        batch_op.create_index("uq_request_answer", ["answer_id", "model_spec_id", "template_id", "persona_key",
                                                    "sample_index"], unique=True,
                              postgresql_where=sa.text("answer_id IS NOT NULL"),
                              sqlite_where=sa.text("answer_id IS NOT NULL"))


def downgrade() -> None:
    with op.batch_alter_table("rating_request", schema=None) as batch_op:
        batch_op.drop_index("uq_request_answer")
        batch_op.drop_index("uq_request_item")
        batch_op.drop_index(batch_op.f("ix_rating_request_answer_id"))
    with op.batch_alter_table("rating_request", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_request_run_item_model_template_persona_sample",
                                          ["run_id", "item_id", "model_spec_id", "template_id", "persona_key",
                                           "sample_index"])
        batch_op.drop_column("answer_id")
        batch_op.drop_column("stage")
    op.drop_table("imported_rating")
    op.drop_table("judge_assignment")
    op.drop_table("answer")
