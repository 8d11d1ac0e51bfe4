"""Tables. Survey answers are sensitive (beliefs): only what the survey needs is kept.

No names, e-mail or IP addresses; a respondent is a random id. Deleting a respondent
cascades to every answer and profile.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Respondent(Base):
    __tablename__ = "respondents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    schema: Mapped[str] = mapped_column(String(32))
    survey_config: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    responses: Mapped[list[Response]] = relationship(
        back_populates="respondent",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Response.seq",
    )
    profile: Mapped[StoredProfile | None] = relationship(
        back_populates="respondent",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Response(Base):
    """One submitted answer; `value` NULL means the item was skipped."""

    __tablename__ = "responses"
    __table_args__ = (
        UniqueConstraint("respondent_id", "item_id", name="uq_responses_item"),
        UniqueConstraint("respondent_id", "seq", name="uq_responses_seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    respondent_id: Mapped[str] = mapped_column(
        ForeignKey("respondents.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(String(64))
    value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    elapsed_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    respondent: Mapped[Respondent] = relationship(back_populates="responses")


class StoredProfile(Base):
    """The latest estimate for a respondent, as canonical profile JSON."""

    __tablename__ = "profiles"

    respondent_id: Mapped[str] = mapped_column(
        ForeignKey("respondents.id", ondelete="CASCADE"), primary_key=True
    )
    schema: Mapped[str] = mapped_column(String(32))
    profile_json: Mapped[str] = mapped_column(Text)
    items_answered: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    respondent: Mapped[Respondent] = relationship(back_populates="profile")
