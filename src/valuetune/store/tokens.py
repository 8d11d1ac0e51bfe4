"""Repository for token subjects, issued tokens, revocations, aliases and rate limits.

It implements `valuetune.token.tokens.TokenRegistry` and the alias registry. The token
text itself is never stored for preference tokens: revocation is by `jti`, the id inside
the authenticated payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from valuetune.errors import NotFoundError
from valuetune.store.database import Database
from valuetune.store.models import (
    AliasRecord,
    IssuedToken,
    RateLimit,
    Respondent,
    TokenSubject,
    as_utc,
    utcnow,
)
from valuetune.token.paseto import TokenProblem
from valuetune.token.tokens import new_subject


@dataclass(frozen=True)
class IssuedSummary:
    jti: str
    sub: str
    purpose: str
    kid: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    subject_erased: bool


class TokenStore:
    """Token bookkeeping on one `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- subjects ---------------------------------------------------------------------

    def subject_for_respondent(self, respondent_id: str) -> str:
        """The respondent's pseudonym, created on first use."""
        with self.db.session() as s:
            if s.get(Respondent, respondent_id) is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")
            found = s.scalar(
                select(TokenSubject).where(TokenSubject.respondent_id == respondent_id)
            )
            if found is not None:
                return found.sub
            sub = new_subject()
            s.add(TokenSubject(sub=sub, respondent_id=respondent_id))
            return sub

    def revoke_subject(self, sub: str) -> None:
        """Refuse every token of `sub` issued until now (a per-subject not-before)."""
        with self.db.session() as s:
            subject = s.get(TokenSubject, sub)
            if subject is None:
                raise NotFoundError(f"no token subject {sub!r}")
            subject.not_before = utcnow()

    # -- TokenRegistry ----------------------------------------------------------------

    def record_issued(
        self, jti: str, sub: str, kind: str, kid: str, issued_at: datetime, expires_at: datetime
    ) -> None:
        with self.db.session() as s:
            if s.get(TokenSubject, sub) is None:
                s.add(TokenSubject(sub=sub))
                s.flush()
            s.add(
                IssuedToken(
                    jti=jti,
                    sub=sub,
                    purpose=kind,
                    kid=kid,
                    issued_at=issued_at,
                    expires_at=expires_at,
                )
            )

    def refusal(self, jti: str, sub: str, issued_at: datetime) -> TokenProblem | None:
        with self.db.session("read") as s:
            subject = s.get(TokenSubject, sub)
            record = s.get(IssuedToken, jti)
            if subject is not None and subject.erased_at is not None:
                return TokenProblem.ERASED
            if record is None or subject is None or record.sub != sub:
                return TokenProblem.REVOKED  # no record of issue here: fail closed
            if record.revoked_at is not None:
                return TokenProblem.REVOKED
            if subject.not_before is not None and issued_at < as_utc(subject.not_before):
                return TokenProblem.REVOKED
            return None

    # -- issued tokens ----------------------------------------------------------------

    def revoke(self, jti: str) -> IssuedSummary:
        with self.db.session() as s:
            record = s.get(IssuedToken, jti)
            if record is None:
                raise NotFoundError(f"no issued token with jti {jti!r}")
            if record.revoked_at is None:
                record.revoked_at = utcnow()
        return self.issued(jti)

    def issued(self, jti: str) -> IssuedSummary:
        with self.db.session("read") as s:
            record = s.get(IssuedToken, jti)
            if record is None:
                raise NotFoundError(f"no issued token with jti {jti!r}")
            subject = s.get(TokenSubject, record.sub)
            return IssuedSummary(
                record.jti,
                record.sub,
                record.purpose,
                record.kid,
                as_utc(record.issued_at),
                as_utc(record.expires_at),
                as_utc(record.revoked_at) if record.revoked_at else None,
                bool(subject and subject.erased_at),
            )

    # -- aliases ----------------------------------------------------------------------

    def put_alias(self, lookup: str, sub: str, share: str, content: str) -> None:
        with self.db.session() as s:
            s.add(AliasRecord(lookup=lookup, sub=sub, share=share, content=content))

    def get_alias(self, lookup: str) -> tuple[str, str, str] | None:
        """(sub, share, content) for a live alias of a subject that is not erased."""
        with self.db.session("read") as s:
            row = s.execute(
                select(AliasRecord, TokenSubject.erased_at)
                .join(TokenSubject, TokenSubject.sub == AliasRecord.sub)
                .where(AliasRecord.lookup == lookup)
            ).first()
            if row is None or row[1] is not None:
                return None
            record = row[0]
            return record.sub, record.share, record.content

    def delete_alias(self, lookup: str) -> bool:
        with self.db.session() as s:
            record = s.get(AliasRecord, lookup)
            if record is None:
                return False
            s.delete(record)
            return True

    # -- rate limits ------------------------------------------------------------------

    def allow(self, bucket: str, limit: int, window_seconds: int, now: float) -> bool:
        """Count one request in a fixed window; False once `limit` is reached."""
        window = int(now // window_seconds) * window_seconds
        with self.db.session() as s:
            row = s.scalar(select(RateLimit).where(RateLimit.bucket == bucket).with_for_update())
            if row is None:
                s.add(RateLimit(bucket=bucket, window_start=window, count=1))
                return True
            if row.window_start != window:
                row.window_start, row.count = window, 1
                return True
            if row.count >= limit:
                return False
            row.count += 1
            return True
