"""Who is at the browser: a signed cookie, form protection and question timing.

A respondent has no account. Their browser holds one cookie, signed with the server's
session key: a random visit id, the respondent id once the survey has started, and the
token and alias once they exist (the database never keeps either; the token is itself
encrypted). The cookie is HttpOnly and SameSite=Lax, and every form also carries a CSRF
token derived from the visit id, which another site can neither read nor forge.

A question page carries a signed stamp of when it was shown, so the time an answer took
(for the speeder check) is measured by the server, not claimed by the browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

COOKIE = "vt_visit"
MAX_AGE = 60 * 60 * 24 * 90
"""The visit cookie lasts 90 days: long enough to come back to an unfinished survey."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Visitor:
    visit: str
    respondent: str | None = None
    token: str | None = None
    alias: str | None = None

    def with_(self, **changes: Any) -> Visitor:
        return replace(self, **changes)


class Signer:
    """Signs and checks the visit cookie, CSRF tokens and question stamps with one key."""

    def __init__(self, key: bytes, *, clock: Any = time.time) -> None:
        self.key, self.clock = key, clock

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self.key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def _seal(self, purpose: str, body: bytes, size: int = 32) -> str:
        return f"{_b64(body)}.{_b64(self._mac(purpose, body)[:size])}"

    def _open(self, purpose: str, sealed: str | None, size: int = 32) -> bytes | None:
        """The body of `sealed` if this server sealed it for `purpose`, else None."""
        if not sealed or "." not in sealed:
            return None
        body_text, _, mac_text = sealed.partition(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except ValueError:
            return None
        return body if hmac.compare_digest(mac, self._mac(purpose, body)[:size]) else None

    def dump(self, visitor: Visitor) -> str:
        doc = {"v": visitor.visit, "r": visitor.respondent, "t": visitor.token, "a": visitor.alias}
        body = json.dumps({k: v for k, v in doc.items() if v}, separators=(",", ":")).encode()
        return self._seal("visit", body)

    def load(self, cookie: str | None) -> Visitor | None:
        """The visitor in a cookie this server signed; None for a missing or altered one."""
        body = self._open("visit", cookie)
        if body is None:
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("v"), str):
            return None
        fields = {"respondent": doc.get("r"), "token": doc.get("t"), "alias": doc.get("a")}
        if not all(v is None or isinstance(v, str) for v in fields.values()):
            return None
        return Visitor(doc["v"], **fields)

    @staticmethod
    def new_visitor() -> Visitor:
        return Visitor(secrets.token_urlsafe(16))

    def csrf(self, visitor: Visitor) -> str:
        return _b64(self._mac("csrf", visitor.visit.encode()))

    def csrf_ok(self, visitor: Visitor, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(visitor), str(token))

    def stamp(self, item_id: str) -> str:
        """A signed note that `item_id` was shown now."""
        return self._seal("stamp", f"{item_id}|{int(self.clock() * 1000)}".encode(), 16)

    def elapsed_ms(self, stamp: str | None, item_id: str) -> int | None:
        """Milliseconds since `item_id` was shown, if `stamp` is this server's for it."""
        body = self._open("stamp", stamp, 16)
        if body is None:
            return None
        try:
            shown_item, _, shown_ms = body.decode().rpartition("|")
            elapsed = int(self.clock() * 1000) - int(shown_ms)
        except (ValueError, UnicodeDecodeError):
            return None
        return elapsed if shown_item == item_id and 0 <= elapsed < 86_400_000 else None
