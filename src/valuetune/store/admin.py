"""Dashboard administrators: argon2 password hashes, optional TOTP, server-side sessions.

There are no default credentials: the first `valuetune serve` creates the administrator
with a generated password and prints it once (`valuetune admin password` sets another).
A session is a random cookie; the database keeps only its SHA-256 and the session's
CSRF token, so a stolen database copy cannot sign anyone in, and signing out ends it.
TOTP (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits) is optional per administrator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

from sqlalchemy import delete, func, select

from valuetune.errors import ValuetuneError
from valuetune.store.database import Database
from valuetune.store.models import AdminSession, AdminUser, as_utc

SESSION_LIFETIME = timedelta(hours=8)
TOTP_STEP = 30
MIN_PASSWORD = 12


class AdminAuthError(ValuetuneError):
    """A sign-in that failed; the message never says which part was wrong."""


@dataclass(frozen=True)
class SignedIn:
    username: str
    csrf: str
    expires_at: datetime


def totp_code(secret: str, at: float, step: int = TOTP_STEP) -> str:
    """The 6-digit RFC 6238 code of base32 `secret` for the step holding time `at`."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at // step)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def totp_matches(secret: str, code: str, at: float) -> bool:
    """`code` is the current code or the one either side of it (clock drift)."""
    code = code.strip().replace(" ", "")
    return any(
        hmac.compare_digest(totp_code(secret, at + drift * TOTP_STEP), code) for drift in (-1, 0, 1)
    )


class AdminStore:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wall: Callable[[], float] = time.time,
    ) -> None:
        from argon2 import PasswordHasher

        self.db, self.clock, self.wall = db, clock, wall
        self._hasher = PasswordHasher()

    @cached_property
    def _unknown(self) -> str:
        """An unknown name is checked against this hash, so timing does not tell names
        apart (made at the first sign-in, not at start-up: hashing takes a while)."""
        return self._hasher.hash(secrets.token_urlsafe(16))

    def exists(self) -> bool:
        with self.db.session("read") as s:
            return bool(s.scalar(select(func.count()).select_from(AdminUser)))

    def set_password(self, username: str, password: str) -> None:
        """Create the administrator or change their password (ending their sessions)."""
        if len(password) < MIN_PASSWORD:
            raise ValuetuneError(f"an admin password needs at least {MIN_PASSWORD} characters")
        hashed = self._hasher.hash(password)
        with self.db.session() as s:
            user = s.get(AdminUser, username)
            if user is None:
                s.add(AdminUser(username=username, password_hash=hashed, created_at=self.clock()))
            else:
                user.password_hash = hashed
                s.execute(delete(AdminSession).where(AdminSession.username == username))

    def create_first(self, username: str = "admin") -> str | None:
        """A generated password for a new administrator, or None if one exists already."""
        if self.exists():
            return None
        password = secrets.token_urlsafe(15)
        self.set_password(username, password)
        return password

    def set_totp(self, username: str, enabled: bool) -> str | None:
        """Turn TOTP on (returns the new base32 secret, shown once) or off."""
        secret = base64.b32encode(secrets.token_bytes(20)).decode() if enabled else None
        with self.db.session() as s:
            user = s.get(AdminUser, username)
            if user is None:
                raise ValuetuneError(f"no administrator {username!r}")
            user.totp_secret = secret
        return secret

    def sign_in(
        self, username: str, password: str, code: str | None = None
    ) -> tuple[str, SignedIn]:
        """Check the credentials; (the session cookie value, the session) on success."""
        from argon2.exceptions import InvalidHashError, VerifyMismatchError

        with self.db.session("read") as s:
            user = s.get(AdminUser, username)
            stored = user.password_hash if user else None
            secret = user.totp_secret if user else None
        try:
            self._hasher.verify(stored or self._unknown, password)
        except (VerifyMismatchError, InvalidHashError):
            raise AdminAuthError("Wrong name, password or code.") from None
        if stored is None or (secret and not totp_matches(secret, code or "", self.wall())):
            raise AdminAuthError("Wrong name, password or code.")
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = self.clock()
        session = SignedIn(username, csrf, now + SESSION_LIFETIME)
        with self.db.session() as s:
            s.execute(delete(AdminSession).where(AdminSession.expires_at < now))
            s.add(
                AdminSession(
                    digest=_digest(cookie),
                    username=username,
                    csrf=csrf,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return cookie, session

    def session(self, cookie: str | None) -> SignedIn | None:
        if not cookie:
            return None
        with self.db.session("read") as s:
            row = s.get(AdminSession, _digest(cookie))
            if row is None or as_utc(row.expires_at) <= self.clock():
                return None
            return SignedIn(row.username, row.csrf, as_utc(row.expires_at))

    def sign_out(self, cookie: str) -> None:
        with self.db.session() as s:
            s.execute(delete(AdminSession).where(AdminSession.digest == _digest(cookie)))

    def totp_enabled(self, username: str) -> bool:
        with self.db.session("read") as s:
            user = s.get(AdminUser, username)
            return bool(user and user.totp_secret)


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()
