"""Aliases: a few memorable words that stand for what a token holder chose to share.

An alias is a handle, not a secret. It is stored only as a keyed hash (HMAC-SHA256 with
the issuer's alias key), so a copy of the database neither lists aliases nor lets anyone
test guesses offline. Resolving returns the same shape for hits and misses, takes at
least `floor_seconds` either way, and is rate-limited per client. docs/token.md has the
entropy and enumeration analysis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from valuetune.errors import ValuetuneError
from valuetune.token.words import DEFAULT_WORDS, new_alias, normalize_alias

Share = Literal["precis", "token"]
SHARES: tuple[Share, ...] = ("precis", "token")


class RateLimitedError(ValuetuneError):
    """Too many alias resolutions from one client in the current window."""

    exit_code = 4


class AliasRegistry(Protocol):
    def put_alias(self, lookup: str, sub: str, share: str, content: str) -> None: ...
    def get_alias(self, lookup: str) -> tuple[str, str, str] | None: ...
    def delete_alias(self, lookup: str) -> bool: ...
    def allow(self, bucket: str, limit: int, window_seconds: int, now: float) -> bool: ...


@dataclass(frozen=True)
class AliasResolution:
    """The answer to a resolution: identical fields whether or not the alias exists."""

    alias: str
    found: bool
    share: Share | None
    content: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "found": self.found,
            "share": self.share,
            "content": self.content,
        }


class AliasService:
    """Create, resolve, rotate and revoke aliases over an `AliasRegistry`."""

    def __init__(
        self,
        registry: AliasRegistry,
        key: bytes,
        *,
        limit: int = 30,
        window_seconds: int = 60,
        floor_seconds: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if len(key) != 32:
            raise ValueError("the alias key is 32 bytes")
        self.registry, self._key = registry, key
        self.limit, self.window_seconds, self.floor_seconds = limit, window_seconds, floor_seconds
        self._clock, self._wall, self._sleep = clock, wall, sleep

    def lookup(self, alias: str) -> str:
        """The keyed hash an alias is stored under."""
        return hmac.new(self._key, alias.encode("ascii"), hashlib.sha256).hexdigest()

    def create(self, sub: str, share: Share, content: str, n_words: int = DEFAULT_WORDS) -> str:
        """A fresh alias for `sub` that resolves to `content`."""
        if share not in SHARES:
            raise ValuetuneError(f"share must be one of {', '.join(SHARES)}")
        for _ in range(16):  # a collision is astronomically unlikely; never overwrite one
            alias = new_alias(n_words)
            if self.registry.get_alias(self.lookup(alias)) is None:
                self.registry.put_alias(self.lookup(alias), sub, share, content)
                return alias
        raise ValuetuneError("could not find an unused alias; use more words")

    def resolve(self, text: str, client: str) -> AliasResolution:
        """What the alias shares, or a miss of the same shape, after at least the floor."""
        started = self._clock()
        if not self.registry.allow(
            f"alias:{client}", self.limit, self.window_seconds, self._wall()
        ):
            raise RateLimitedError(
                f"too many alias lookups; at most {self.limit} per {self.window_seconds} s"
            )
        alias = normalize_alias(text)
        row = self.registry.get_alias(self.lookup(alias))
        share: Share | None = None
        content: str | None = None
        if row is not None and row[1] in SHARES:
            share = "precis" if row[1] == "precis" else "token"
            content = row[2]
        remaining = self.floor_seconds - (self._clock() - started)
        if remaining > 0:
            self._sleep(remaining)
        return AliasResolution(alias, share is not None, share, content)

    def revoke(self, text: str) -> bool:
        """Delete an alias and what it shared; False if there was none."""
        return self.registry.delete_alias(self.lookup(normalize_alias(text)))

    def rotate(self, text: str) -> str:
        """Replace an alias by a new one sharing the same thing; the old one stops working."""
        old = normalize_alias(text)
        row = self.registry.get_alias(self.lookup(old))
        if row is None:
            raise ValuetuneError(f"no alias {old}")
        sub, share, content = row
        new = self.create(
            sub, "precis" if share == "precis" else "token", content, len(old.split("-"))
        )
        self.registry.delete_alias(self.lookup(old))
        return new


def precis_content(texts: dict[str, str]) -> str:
    """The stored form of a shared précis: all three lengths."""
    return json.dumps(texts, sort_keys=True)
