"""Tables. Survey answers are sensitive (beliefs): only what the survey needs is kept.

No names, e-mail or IP addresses; a respondent is a random id. Deleting a respondent
cascades to every answer and profile.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives them back naive)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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


class TokenSubject(Base):
    """A pseudonym tokens are issued to; kept after erasure so its tokens stay refused."""

    __tablename__ = "token_subjects"

    sub: Mapped[str] = mapped_column(String(32), primary_key=True)
    respondent_id: Mapped[str | None] = mapped_column(
        ForeignKey("respondents.id", ondelete="SET NULL"), nullable=True, unique=True
    )
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IssuedToken(Base):
    """What was issued (for revocation by jti and listing); never the token itself."""

    __tablename__ = "issued_tokens"

    jti: Mapped[str] = mapped_column(String(32), primary_key=True)
    sub: Mapped[str] = mapped_column(ForeignKey("token_subjects.sub"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    kid: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AliasRecord(Base):
    """An alias, stored by keyed hash; `content` is what the holder chose to share."""

    __tablename__ = "aliases"

    lookup: Mapped[str] = mapped_column(String(64), primary_key=True)
    sub: Mapped[str] = mapped_column(ForeignKey("token_subjects.sub"), index=True)
    share: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RateLimit(Base):
    __tablename__ = "rate_limits"

    bucket: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)  # epoch seconds, past 2038 too
    count: Mapped[int] = mapped_column(Integer)


class ApiKeyRecord(Base):
    """A server API key: its public id and the SHA-256 of the whole key, never the key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    per_minute: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
