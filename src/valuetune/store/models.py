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
    excluded_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """Set when an administrator excludes the respondent from statistics and exports."""

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


class SelfPlacement(Base):
    """Where a respondent places themself politically (0-10 on two axes); NULL = not said."""

    __tablename__ = "self_placements"

    respondent_id: Mapped[str] = mapped_column(
        ForeignKey("respondents.id", ondelete="CASCADE"), primary_key=True
    )
    economic: Mapped[int | None] = mapped_column(Integer, nullable=True)
    social: Mapped[int | None] = mapped_column(Integer, nullable=True)


class DemographicRecord(Base):
    """Optional demographics, in their own table: never joined into answer exports.

    Every field is a category id or NULL ("prefer not to say" and not answered alike).
    """

    __tablename__ = "demographics"

    respondent_id: Mapped[str] = mapped_column(
        ForeignKey("respondents.id", ondelete="CASCADE"), primary_key=True
    )
    age: Mapped[str | None] = mapped_column(String(32), nullable=True)
    gender: Mapped[str | None] = mapped_column(String(32), nullable=True)
    region: Mapped[str | None] = mapped_column(String(32), nullable=True)
    education: Mapped[str | None] = mapped_column(String(32), nullable=True)
    religion: Mapped[str | None] = mapped_column(String(32), nullable=True)


class AdminUser(Base):
    """A dashboard administrator: an argon2 hash of the password, an optional TOTP secret."""

    __tablename__ = "admin_users"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AdminSession(Base):
    """A signed-in dashboard session, by SHA-256 of its cookie (never the cookie)."""

    __tablename__ = "admin_sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(
        ForeignKey("admin_users.username", ondelete="CASCADE"), index=True
    )
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
