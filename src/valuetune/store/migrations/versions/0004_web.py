"""The web platform: exclusions, political self-placement, optional demographics (their
own table), dashboard administrators and their sessions.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("respondents") as batch:
        batch.add_column(sa.Column("excluded_reason", sa.String(200), nullable=True))

    def respondent() -> sa.Column[str]:
        target = sa.ForeignKey("respondents.id", ondelete="CASCADE")
        return sa.Column("respondent_id", sa.String(32), target, primary_key=True)

    op.create_table(
        "self_placements",
        respondent(),
        sa.Column("economic", sa.Integer, nullable=True),
        sa.Column("social", sa.Integer, nullable=True),
    )
    op.create_table(
        "demographics",
        respondent(),
        *(sa.Column(f, sa.String(32), nullable=True) for f in ("age", "gender", "region")),
        *(sa.Column(f, sa.String(32), nullable=True) for f in ("education", "religion")),
    )
    op.create_table(
        "admin_users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "admin_sessions",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column(
            "username",
            sa.String(64),
            sa.ForeignKey("admin_users.username", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("admin_sessions")
    op.drop_table("admin_users")
    op.drop_table("demographics")
    op.drop_table("self_placements")
    with op.batch_alter_table("respondents") as batch:
        batch.drop_column("excluded_reason")
