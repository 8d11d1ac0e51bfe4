"""Our small wrapper around pyseto: PASETO v4 only, with pyseto's known gaps closed.

Every token is checked before any key touches it: at most `MAX_TOKEN_LENGTH` characters,
ASCII, a `v4.local.` or `v4.public.` header, and canonical unpadded base64url in every
part (pyseto decodes non-canonical base64, so the official failing vector 4-F-4, whose
last character differs only in unused bits, would otherwise pass). Keys must be exactly 32
bytes. Payloads are always JSON objects with a required `exp` (checked by the caller that
knows the clock); purpose is bound through PASETO's implicit assertion.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyseto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pyseto import Key
from pyseto.key_interface import KeyInterface

from valuetune.errors import ValuetuneError

MAX_TOKEN_LENGTH = 2048
LOCAL_HEADER = "v4.local."
PUBLIC_HEADER = "v4.public."
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_MIN_BODY = {LOCAL_HEADER: 32 + 32, PUBLIC_HEADER: 64}  # nonce + tag; signature


class TokenProblem(StrEnum):
    """Why a token was refused: each maps to one clear message and exit code."""

    NOT_VALUETUNE = "not a valuetune token"
    OVERSIZED = "too long"
    NON_CANONICAL = "not canonical base64url"
    UNKNOWN_KEY = "signed with an unknown key"
    WRONG_PURPOSE = "issued for another purpose"
    TAMPERED = "altered or forged"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ERASED = "its holder's data was erased"
    WEAK_KEY = "key is not 32 random bytes"


class TokenError(ValuetuneError):
    """A token (or key) was refused; `problem` says why."""

    exit_code = 3

    def __init__(self, problem: TokenProblem, detail: str = "") -> None:
        self.problem = problem
        super().__init__(f"token refused: {problem.value}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class TokenParts:
    header: str  # "v4.local." or "v4.public."
    body: bytes
    footer: bytes


def b64url_decode_canonical(text: str) -> bytes:
    """Decode unpadded base64url, refusing any text that is not the canonical encoding."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise TokenError(TokenProblem.NON_CANONICAL)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError(TokenProblem.NON_CANONICAL) from None
    if b64url_encode(raw) != text:  # unused low bits of the last character must be zero
        raise TokenError(TokenProblem.NON_CANONICAL)
    return raw


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def split_token(token: str) -> TokenParts:
    """Check a token's shape before any cryptography runs on it."""
    if not isinstance(token, str):
        raise TokenError(TokenProblem.NOT_VALUETUNE, "a token is text")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(TokenProblem.OVERSIZED, f"{len(token)} > {MAX_TOKEN_LENGTH} characters")
    if not token.isascii():
        raise TokenError(TokenProblem.NOT_VALUETUNE, "non-ASCII characters")
    header = next((h for h in (LOCAL_HEADER, PUBLIC_HEADER) if token.startswith(h)), None)
    if header is None:
        raise TokenError(TokenProblem.NOT_VALUETUNE, "expected a v4.local. or v4.public. token")
    parts = token[len(header) :].split(".")
    if len(parts) not in (1, 2):
        raise TokenError(TokenProblem.NOT_VALUETUNE, "wrong number of parts")
    body = b64url_decode_canonical(parts[0])
    footer = b64url_decode_canonical(parts[1]) if len(parts) == 2 else b""
    if len(parts) == 2 and not footer:
        raise TokenError(TokenProblem.NON_CANONICAL, "empty footer part")
    if len(body) < _MIN_BODY[header]:
        raise TokenError(TokenProblem.TAMPERED, "too short")
    return TokenParts(header, body, footer)


# -- keys ------------------------------------------------------------------------------


def local_key(raw: bytes) -> KeyInterface:
    """A v4.local key from exactly 32 bytes (randomness is checked where keys are made)."""
    if not isinstance(raw, bytes) or len(raw) != 32:
        raise TokenError(TokenProblem.WEAK_KEY, "v4.local keys are exactly 32 bytes")
    return Key.new(4, "local", raw)


def public_signing_key(seed: bytes) -> KeyInterface:
    """A v4.public secret key from a 32-byte Ed25519 seed."""
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise TokenError(TokenProblem.WEAK_KEY, "Ed25519 seeds are exactly 32 bytes")
    pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Key.new(4, "public", pem)


def public_verify_key(public: bytes) -> KeyInterface:
    """A v4.public verification key from a 32-byte Ed25519 public key."""
    if not isinstance(public, bytes) or len(public) != 32:
        raise TokenError(TokenProblem.WEAK_KEY, "Ed25519 public keys are exactly 32 bytes")
    pem = Ed25519PublicKey.from_public_bytes(public).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Key.new(4, "public", pem)


def public_from_seed(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()


# -- tokens ----------------------------------------------------------------------------


def _compact(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode("ascii")


def seal(
    key: KeyInterface,
    claims: dict[str, Any],
    footer: dict[str, Any] | None,
    implicit: bytes,
    *,
    nonce: bytes = b"",
) -> str:
    """Encrypt (v4.local) or sign (v4.public) a claims object.

    `nonce` is for reproducing the official test vectors only; leave it empty.
    """
    if "exp" not in claims:
        raise ValueError("every token needs an exp claim")
    token = pyseto.encode(
        key,
        _compact(claims),
        footer=_compact(footer) if footer is not None else b"",
        implicit_assertion=implicit,
        nonce=nonce,
    )
    text = token.decode("ascii")
    if len(text) > MAX_TOKEN_LENGTH:
        raise ValueError(f"token would be {len(text)} characters, over {MAX_TOKEN_LENGTH}")
    return text


def footer_of(token: str) -> dict[str, Any]:
    """The (unauthenticated) footer as a JSON object, after the shape checks."""
    parts = split_token(token)
    if not parts.footer:
        return {}
    try:
        doc = json.loads(parts.footer)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TokenError(TokenProblem.NOT_VALUETUNE, "footer is not JSON") from None
    if not isinstance(doc, dict):
        raise TokenError(TokenProblem.NOT_VALUETUNE, "footer is not a JSON object")
    return doc


def open_token(key: KeyInterface, token: str, implicit: bytes) -> dict[str, Any]:
    """Decrypt or verify `token` with `key`; the claims as a JSON object with `exp`.

    Raises TAMPERED when authentication fails (the caller may then test other purposes).
    """
    split_token(token)
    try:
        decoded = pyseto.decode(key, token, implicit_assertion=implicit)
    except (pyseto.DecryptError, pyseto.VerifyError, ValueError):
        raise TokenError(TokenProblem.TAMPERED) from None
    payload = decoded.payload
    if not isinstance(payload, bytes):  # only when a deserializer is passed, which we never do
        raise TokenError(TokenProblem.NOT_VALUETUNE, "payload is not bytes")
    try:
        claims = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TokenError(TokenProblem.NOT_VALUETUNE, "payload is not JSON") from None
    if not isinstance(claims, dict) or "exp" not in claims:
        raise TokenError(TokenProblem.NOT_VALUETUNE, "payload lacks exp")
    return claims
