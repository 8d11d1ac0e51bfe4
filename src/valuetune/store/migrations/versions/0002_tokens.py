"""Token subjects, issued tokens (never the token text), revocations, aliases, rate limits.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_subjects",
        sa.Column("sub", sa.String(32), primary_key=True),
        sa.Column(
            "respondent_id",
            sa.String(32),
            sa.ForeignKey("respondents.id", ondelete="SET NULL"),
            nullable=True,
            unique=True,
        ),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "issued_tokens",
        sa.Column("jti", sa.String(32), primary_key=True),
        sa.Column(
            "sub", sa.String(32), sa.ForeignKey("token_subjects.sub"), nullable=False, index=True
        ),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "aliases",
        sa.Column("lookup", sa.String(64), primary_key=True),
        sa.Column(
            "sub", sa.String(32), sa.ForeignKey("token_subjects.sub"), nullable=False, index=True
        ),
        sa.Column("share", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "rate_limits",
        sa.Column("bucket", sa.String(128), primary_key=True),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("aliases")
    op.drop_table("issued_tokens")
    op.drop_table("token_subjects")
