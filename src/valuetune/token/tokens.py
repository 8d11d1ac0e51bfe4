"""Minting and verifying preference tokens.

A preference token is a v4.local PASETO: encrypted and authenticated with the issuer's
key, so whoever merely holds it can neither read nor alter the values. Claims:
  iss, sub (random pseudonym), jti (random id), iat, exp (ISO 8601, UTC),
  v (axes schema version), p (the packed, quantized profile; see payload.py)
The footer carries the key id. The purpose ("preference") is bound as PASETO's implicit
assertion, so a token made for another purpose never verifies as a preference token.

A share token is the same kind of token minted for the purpose "share": what an alias hands
to a system the holder chose, revocable on its own (`ref` names the preference token).

A reference token is a v4.public PASETO signed with Ed25519: third parties can verify it
offline with the issuer's public key; it names the preference token (`ref` = its jti) and
the subject, but carries no values.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from valuetune.token.keys import KeyKind, KeyRing
from valuetune.token.paseto import (
    LOCAL_HEADER,
    TokenError,
    TokenProblem,
    footer_of,
    open_token,
    seal,
    split_token,
)
from valuetune.token.payload import profile_claims, profile_from_claims
from valuetune.values.profile import ValueProfile

Purpose = Literal["preference", "share", "reference"]
PURPOSES: dict[Purpose, tuple[KeyKind, bytes]] = {
    "preference": ("local", b"valuetune/preference/v1"),  # the holder's own token
    "share": ("local", b"valuetune/share/v1"),  # handed to a system through an alias
    "reference": ("public", b"valuetune/reference/v1"),  # verifiable offline, no values
}
DEFAULT_TTL = timedelta(days=365)
ISSUER = "valuetune"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object, claim: str) -> datetime:
    if not isinstance(value, str):
        raise TokenError(TokenProblem.NOT_VALUETUNE, f"{claim} is not a timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TokenError(TokenProblem.NOT_VALUETUNE, f"{claim} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise TokenError(TokenProblem.NOT_VALUETUNE, f"{claim} has no time zone")
    return moment


class TokenRegistry(Protocol):
    """Where issued tokens, revocations and subjects' states live (the store implements it)."""

    def record_issued(
        self, jti: str, sub: str, kind: str, kid: str, issued_at: datetime, expires_at: datetime
    ) -> None: ...

    def refusal(self, jti: str, sub: str, issued_at: datetime) -> TokenProblem | None:
        """REVOKED (jti revoked, or issued before the subject's not-before), ERASED, or None."""
        ...


@dataclass(frozen=True)
class MintedToken:
    token: str
    jti: str
    sub: str
    kid: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class VerifiedToken:
    claims: dict[str, Any]
    kid: str
    purpose: Purpose
    issued_at: datetime
    expires_at: datetime

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def sub(self) -> str:
        return str(self.claims["sub"])

    def profile(self) -> ValueProfile:
        return profile_from_claims(self.claims)


def random_id(nbytes: int) -> str:
    """`nbytes` random bytes, base64url, never starting with "-".

    Ids are typed or pasted as command-line arguments (`token revoke JTI`), where a
    leading "-" reads as an option; one id in 64 would otherwise start with one.
    """
    while (ident := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return ident


def new_subject() -> str:
    """A random pseudonym (96 bits) that stands for a person in tokens."""
    return random_id(12)


class TokenService:
    """Mints and verifies tokens with one key ring and one registry."""

    def __init__(
        self,
        ring: KeyRing,
        registry: TokenRegistry,
        *,
        issuer: str = ISSUER,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ring, self.registry, self.issuer, self.clock = ring, registry, issuer, clock

    def _mint(
        self,
        purpose: Purpose,
        body: dict[str, Any],
        sub: str,
        ttl: timedelta | None,
        until: datetime | None = None,
    ) -> MintedToken:
        kind, implicit = PURPOSES[purpose]
        kid, key = self.ring.current(kind)
        now = self.clock().replace(microsecond=0)
        expires = now + (ttl or DEFAULT_TTL)
        if until is not None:  # a derived token never outlives the one it derives from
            expires = min(expires, until) if ttl else until
        if expires <= now:
            raise TokenError(TokenProblem.EXPIRED, "nothing left of the original's lifetime")
        jti = random_id(16)
        claims = {
            "iss": self.issuer,
            "sub": sub,
            "jti": jti,
            "iat": _iso(now),
            "exp": _iso(expires),
            **body,
        }
        token = seal(key, claims, {"kid": kid}, implicit)
        self.registry.record_issued(jti, sub, purpose, kid, now, expires)
        return MintedToken(token, jti, sub, kid, now, expires)

    def mint(
        self, profile: ValueProfile, *, sub: str | None = None, ttl: timedelta = DEFAULT_TTL
    ) -> MintedToken:
        """A preference token carrying `profile` (quantized) for subject `sub`."""
        if ttl <= timedelta(0):
            raise ValueError("a token's lifetime must be positive")
        return self._mint("preference", profile_claims(profile), sub or new_subject(), ttl)

    def mint_share(self, preference: VerifiedToken, *, ttl: timedelta | None = None) -> MintedToken:
        """A share token with the same profile, for handing to a system through an alias."""
        body = {"ref": preference.jti, **profile_claims(preference.profile())}
        return self._mint("share", body, preference.sub, ttl, preference.expires_at)

    def mint_reference(
        self, preference: VerifiedToken, *, ttl: timedelta | None = None
    ) -> MintedToken:
        """A signed reference token for a verified preference token: no values inside."""
        body = {"ref": preference.jti, "v": preference.claims["v"]}
        return self._mint("reference", body, preference.sub, ttl, preference.expires_at)

    def authenticate(self, token: str, purpose: Purpose = "preference") -> VerifiedToken:
        """Steps 1-4 of verification: shape, key, authenticity, purpose and claims.

        Expiry and the registry (revocation, erasure) are not consulted: use this only to
        identify a token of ours, e.g. to show or revoke it; use `verify` to trust it.
        """
        parts = split_token(token)
        kind, implicit = PURPOSES[purpose]
        token_kind: KeyKind = "local" if parts.header == LOCAL_HEADER else "public"
        if token_kind != kind:
            raise TokenError(TokenProblem.WRONG_PURPOSE, f"expected a {purpose} token")
        kid = footer_of(token).get("kid")
        key = self.ring.verifier(kid, kind)
        try:
            claims = open_token(key, token, implicit)
        except TokenError as exc:
            if exc.problem is TokenProblem.TAMPERED and self._other_purpose(key, token, purpose):
                raise TokenError(
                    TokenProblem.WRONG_PURPOSE, f"expected a {purpose} token"
                ) from None
            raise
        for claim in ("iss", "sub", "jti", "iat", "exp"):
            if not isinstance(claims.get(claim), str):
                raise TokenError(TokenProblem.NOT_VALUETUNE, f"missing claim {claim}")
        if claims["iss"] != self.issuer:
            raise TokenError(TokenProblem.NOT_VALUETUNE, f"issued by {claims['iss']!r}")
        issued, expires = _parse_time(claims["iat"], "iat"), _parse_time(claims["exp"], "exp")
        verified = VerifiedToken(claims, str(kid), purpose, issued, expires)
        if purpose != "reference":
            verified.profile()  # refuse a token whose profile does not decode
        return verified

    def verify(self, token: str, purpose: Purpose = "preference") -> VerifiedToken:
        """Check everything about `token`, or raise TokenError saying what is wrong."""
        verified = self.authenticate(token, purpose)
        if verified.expires_at <= self.clock():
            raise TokenError(TokenProblem.EXPIRED, f"at {verified.claims['exp']}")
        refusal = self.registry.refusal(verified.jti, verified.sub, verified.issued_at)
        if refusal is not None:
            raise TokenError(refusal)
        return verified

    def identify(self, token: str) -> VerifiedToken:
        """Authenticate a token of any purpose (for show and revoke)."""
        problem: TokenError | None = None
        for purpose in PURPOSES:
            try:
                return self.authenticate(token, purpose)
            except TokenError as exc:
                if exc.problem is not TokenProblem.WRONG_PURPOSE:
                    raise
                problem = exc
        assert problem is not None
        raise problem

    @staticmethod
    def _other_purpose(key: Any, token: str, purpose: Purpose) -> bool:
        kind = PURPOSES[purpose][0]
        for other, (other_kind, implicit) in PURPOSES.items():
            if other == purpose or other_kind != kind:
                continue
            try:
                open_token(key, token, implicit)
                return True
            except TokenError:
                continue
        return False
