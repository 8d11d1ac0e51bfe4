"""Survey tables: respondents, responses, profiles.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "respondents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("schema", sa.String(32), nullable=False),
        sa.Column("survey_config", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "responses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "respondent_id",
            sa.String(32),
            sa.ForeignKey("respondents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("value", sa.Integer, nullable=True),
        sa.Column("elapsed_ms", sa.Integer, nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("respondent_id", "item_id", name="uq_responses_item"),
        sa.UniqueConstraint("respondent_id", "seq", name="uq_responses_seq"),
    )
    op.create_index("ix_responses_respondent_id", "responses", ["respondent_id"])
    op.create_table(
        "profiles",
        sa.Column(
            "respondent_id",
            sa.String(32),
            sa.ForeignKey("respondents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("schema", sa.String(32), nullable=False),
        sa.Column("profile_json", sa.Text, nullable=False),
        sa.Column("items_answered", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("profiles")
    op.drop_index("ix_responses_respondent_id", table_name="responses")
    op.drop_table("responses")
    op.drop_table("respondents")
