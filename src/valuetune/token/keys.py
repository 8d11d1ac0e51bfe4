"""The key ring: current and previous keys, stored as PASERK under the data directory.

Layout of `<home>/keys/` (directory 0700, files 0600):
  ring.json          {"keys": [{"kid", "kind", "created", "current"}...]}
  <kid>.paserk       the key itself: k4.local.<32 bytes> or k4.secret.<64 bytes>
  alias.key          32 random bytes for keyed alias lookups

Key ids are PASERK ids (k4.lid.…, k4.pid.… for the public half) and travel in the token
footer. Rotation adds a new current key and keeps the old ones for verification; a token
naming a key the ring does not hold is refused (fail closed).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pyseto import Key
from pyseto.key_interface import KeyInterface

from valuetune.errors import ValuetuneError
from valuetune.token.paseto import (
    TokenError,
    TokenProblem,
    b64url_decode_canonical,
    local_key,
    public_from_seed,
    public_signing_key,
    public_verify_key,
)

KeyKind = Literal["local", "public"]


def check_random_key(raw: bytes) -> bytes:
    """Refuse key material that is not 32 plausibly random bytes.

    A uniformly random 32-byte string has 30 distinct byte values on average; fewer than
    16 happens with probability far below 2^-100, so such input is a constant, a counter
    or a password, never a key. Arithmetic runs (like 0x70 0x71 … 0x8f) are refused too.
    """
    if not isinstance(raw, bytes) or len(raw) != 32:
        raise TokenError(TokenProblem.WEAK_KEY, "expected exactly 32 bytes")
    steps = {(raw[i + 1] - raw[i]) % 256 for i in range(31)}
    if len(set(raw)) < 16 or len(steps) == 1:
        raise TokenError(TokenProblem.WEAK_KEY, "the bytes are not random")
    return raw


@dataclass(frozen=True)
class RingEntry:
    kid: str  # PASERK id of the key that verifies: k4.lid… (local) or k4.pid… (public)
    kind: KeyKind
    created: str
    current: bool
    public_paserk: str | None = None  # k4.public…, shareable with third parties

    @property
    def short_id(self) -> str:
        """The key id a token's footer carries: the first 96 bits of the PASERK id.

        The full id (k4.lid. + 43 characters) would cost 52 characters of every token; 96
        bits still tell a ring's keys apart with overwhelming margin.
        """
        return self.kid.split(".")[2][:16]


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600: a temp file renamed into place."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class KeyRing:
    """Keys for minting (the current ones) and verifying (all of them)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._entries: list[RingEntry] = []
        self._keys: dict[str, KeyInterface] = {}

    # -- persistence ------------------------------------------------------------------

    @classmethod
    def open(cls, home: Path) -> KeyRing:
        """Load the ring under `home`, creating it (one key of each kind) on first use."""
        ring = cls(home / "keys")
        try:
            ring.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if (ring.folder / "ring.json").exists():
                ring._load()
            else:
                ring._add("local")
                ring._add("public")
        except OSError as exc:
            raise ValuetuneError(
                f"cannot use the key folder {ring.folder}: {exc.strerror}"
            ) from None
        return ring

    def _load(self) -> None:
        try:
            doc = json.loads((self.folder / "ring.json").read_text())
            for e in doc["keys"]:
                entry = RingEntry(
                    e["kid"], e["kind"], e["created"], bool(e["current"]), e.get("public_paserk")
                )
                paserk = (self.folder / f"{self._file_id(entry.kid)}.paserk").read_text().strip()
                self._entries.append(entry)
                self._keys[entry.kid] = self._from_paserk(entry.kind, paserk)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ValuetuneError(f"key ring {self.folder} is damaged: {exc!r}") from None

    @staticmethod
    def _file_id(kid: str) -> str:
        return kid.replace(".", "_")

    @staticmethod
    def _from_paserk(kind: KeyKind, paserk: str) -> KeyInterface:
        prefix = "k4.local." if kind == "local" else "k4.secret."
        if not paserk.startswith(prefix):
            raise ValueError(f"expected a {prefix} PASERK")
        raw = b64url_decode_canonical(paserk[len(prefix) :])
        if kind == "local":
            return local_key(check_random_key(raw))
        return public_signing_key(check_random_key(raw[:32]))

    def _save(self) -> None:
        doc = {"keys": [e.__dict__ for e in self._entries]}
        _write_private(self.folder / "ring.json", json.dumps(doc, indent=1).encode())

    def _add(self, kind: KeyKind, raw: bytes | None = None) -> RingEntry:
        material = check_random_key(raw if raw is not None else secrets.token_bytes(32))
        if kind == "local":
            key = local_key(material)
            kid = key.to_paserk_id()
            public_paserk = None
        else:
            key = public_signing_key(material)
            verify = public_verify_key(public_from_seed(material))
            kid, public_paserk = verify.to_paserk_id(), verify.to_paserk()
        _write_private(self.folder / f"{self._file_id(kid)}.paserk", key.to_paserk().encode())
        created = datetime.now(UTC).isoformat(timespec="seconds")
        self._entries = [
            RingEntry(
                e.kid, e.kind, e.created, False if e.kind == kind else e.current, e.public_paserk
            )
            for e in self._entries
        ]
        entry = RingEntry(kid, kind, created, True, public_paserk)
        self._entries.append(entry)
        self._keys[kid] = key
        self._save()
        return entry

    # -- use --------------------------------------------------------------------------

    def rotate(self, kind: KeyKind = "local") -> RingEntry:
        """Make a new current key of `kind`; earlier keys still verify."""
        return self._add(kind)

    def import_key(self, kind: KeyKind, raw: bytes) -> RingEntry:
        """Add existing key material (checked for randomness) as the current key."""
        return self._add(kind, raw)

    def retire(self, kid: str) -> RingEntry:
        """Remove a previous key: every token made with it is refused from now on.

        For a key that may have leaked. The current key cannot be retired; rotate first.
        """
        entry = next((e for e in self._entries if kid in (e.kid, e.short_id)), None)
        if entry is None:
            raise ValuetuneError(f"no key {kid!r} in the ring")
        if entry.current:
            raise ValuetuneError(f"{entry.kid} is the current {entry.kind} key; rotate first")
        self._entries.remove(entry)
        del self._keys[entry.kid]
        self._save()
        (self.folder / f"{self._file_id(entry.kid)}.paserk").unlink(missing_ok=True)
        return entry

    def current(self, kind: KeyKind) -> tuple[str, KeyInterface]:
        """(short id for the footer, key) of the current key of `kind`."""
        entry = next(e for e in self._entries if e.kind == kind and e.current)
        return entry.short_id, self._keys[entry.kid]

    def verifier(self, kid: object, kind: KeyKind) -> KeyInterface:
        """The key named by a token's footer, or UNKNOWN_KEY: never a fallback."""
        entry = next((e for e in self._entries if kid in (e.short_id, e.kid)), None)
        if entry is None or entry.kind != kind:
            raise TokenError(TokenProblem.UNKNOWN_KEY, "this issuer holds no key with that id")
        key = self._keys[entry.kid]
        if kind == "public":  # verify with the public half only
            assert entry.public_paserk is not None
            return Key.from_paserk(entry.public_paserk)
        return key

    def entries(self) -> list[RingEntry]:
        return list(self._entries)

    def alias_key(self) -> bytes:
        """32 random bytes for keyed alias lookups (created on first use)."""
        return self.secret("alias")

    def secret(self, name: str) -> bytes:
        """32 random bytes kept as `<name>.key` beside the ring (created on first use): the
        alias lookup key, the web app's cookie-signing key."""
        path = self.folder / f"{name}.key"
        if not path.exists():
            _write_private(path, secrets.token_bytes(32))
        return check_random_key(path.read_bytes())
