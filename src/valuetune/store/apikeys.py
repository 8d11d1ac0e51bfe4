"""Server API keys: created once and shown once, stored as a SHA-256 digest, revocable.

A key is `vt-<id>-<secret>`: the id (8 hex characters) names the key in lists, logs and
rate-limit buckets; the secret is 32 random bytes. A key has 256 bits of entropy, so a
plain SHA-256 of it is as strong as a slow password hash would be, and lookup is by
digest.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from valuetune.errors import NotFoundError, ValuetuneError
from valuetune.store.database import Database
from valuetune.store.models import ApiKeyRecord, as_utc, utcnow

PREFIX = "vt-"
DEFAULT_PER_MINUTE = 60


@dataclass(frozen=True)
class ApiKey:
    """What is known of a key after it was created: never the secret."""

    id: str
    name: str
    per_minute: int
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKeyRecord) -> ApiKey:
        revoked = as_utc(row.revoked_at) if row.revoked_at else None
        return cls(row.id, row.name, row.per_minute, as_utc(row.created_at), revoked)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "per_minute": self.per_minute,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, per_minute: int = DEFAULT_PER_MINUTE) -> tuple[ApiKey, str]:
        """A new key: its record and the key text, which is shown now and never again."""
        if not name.strip() or len(name) > 64:
            raise ValuetuneError("an API key's name is 1 to 64 characters")
        if per_minute < 1:
            raise ValuetuneError("an API key's rate limit is at least 1 request a minute")
        ident = secrets.token_hex(4)
        key = f"{PREFIX}{ident}-{secrets.token_urlsafe(32)}"
        with self.db.session() as s:
            row = ApiKeyRecord(
                id=ident, digest=digest(key), name=name.strip(), per_minute=per_minute
            )
            s.add(row)
            s.flush()
            return ApiKey.of(row), key

    def list(self) -> list[ApiKey]:
        with self.db.session() as s:
            return [ApiKey.of(r) for r in s.scalars(select(ApiKeyRecord).order_by("created_at"))]

    def revoke(self, ident: str) -> ApiKey:
        with self.db.session() as s:
            row = s.get(ApiKeyRecord, ident)
            if row is None:
                raise NotFoundError(f"no API key with id {ident!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            s.flush()
            return ApiKey.of(row)

    def any_active(self) -> bool:
        with self.db.session() as s:
            found = s.scalar(select(ApiKeyRecord.id).where(ApiKeyRecord.revoked_at.is_(None)))
            return found is not None

    def check(self, key: str) -> ApiKey | None:
        """The active key `key` is, or None (unknown, malformed or revoked)."""
        if not key.startswith(PREFIX) or len(key) > 100:
            return None
        with self.db.session() as s:
            row = s.scalar(select(ApiKeyRecord).where(ApiKeyRecord.digest == digest(key)))
            if row is None or row.revoked_at is not None:
                return None
            return ApiKey.of(row)
