"""Which alignment artifacts exist for a token holder: the index a server looks them up in.

`valuetune tune` writes artifacts under `<home>/artifacts` by default (or anywhere with
`--out`); a catalog scans one or more roots for finished artifacts (directories with
complete metadata; partial and staging directories start with a dot and are skipped)
and indexes them by the hash of the token's jti and the base model's fingerprint. It
never needs the token itself. Scans are cheap (a walk and small JSON reads) and repeat
at most every `refresh_s` seconds, so artifacts built while a server runs are found.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from valuetune.tune.artifacts import METADATA, ArtifactError, read_fit, read_metadata, sha256_bytes

SERVABLE = {"alignment/dpo": "dpo", "alignment/soup": "soup", "alignment/steer": "steer"}
"""Kinds a server applies, by method. A précis artifact adds nothing to the token's own."""
PREFERENCE = ("dpo", "soup", "steer")
"""Best first: the personal adapter, then the soup, then steering vectors."""
ADAPTER_METHODS = ("dpo", "soup")
MAX_DEPTH = 4


@dataclass(frozen=True)
class CatalogEntry:
    path: Path
    method: str
    jti_hash: str
    base_sha256: str
    id: str
    """Short content id of the artifact's metadata: stable, names it in receipts and vLLM."""
    created_at: str
    fit: float | None
    """Held-out persona fit recorded by `valuetune eval --artifact`, when measured."""

    @property
    def is_adapter(self) -> bool:
        return self.method in ADAPTER_METHODS

    @property
    def module_name(self) -> str:
        """The name a LoRA server (vLLM `--lora-modules`) knows this adapter by."""
        return f"vt-{self.method}-{self.id}"


def scan(roots: Iterable[Path]) -> list[CatalogEntry]:
    """Every finished, servable artifact under `roots` (damaged ones are skipped)."""
    found: list[CatalogEntry] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        base_depth = len(root.resolve().parts)
        for folder, dirs, files in os.walk(root.resolve()):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if len(Path(folder).parts) - base_depth >= MAX_DEPTH:
                dirs[:] = []
            if METADATA in files:
                entry = _entry(Path(folder))
                if entry is not None:
                    found.append(entry)
    return found


def _entry(folder: Path) -> CatalogEntry | None:
    try:
        meta = read_metadata(folder)
    except ArtifactError:
        return None
    method = SERVABLE.get(str(meta.get("kind")))
    jti, base = meta.get("token_jti_hash"), meta.get("base_model_sha256")
    if method is None or not isinstance(jti, str) or not isinstance(base, str):
        return None
    ident = sha256_bytes((folder / METADATA).read_bytes())[:12]
    created = str(meta.get("created_at", ""))
    return CatalogEntry(folder, method, jti, base, ident, created, read_fit(folder))


class ArtifactCatalog:
    def __init__(
        self,
        roots: Iterable[Path],
        *,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.roots = [Path(r) for r in roots]
        self.refresh_s, self.clock = refresh_s, clock
        self._lock = threading.Lock()
        self._entries: list[CatalogEntry] = []
        self._scanned_at: float | None = None

    def entries(self) -> list[CatalogEntry]:
        with self._lock:
            now = self.clock()
            if self._scanned_at is None or now - self._scanned_at >= self.refresh_s:
                self._entries, self._scanned_at = scan(self.roots), now
            return list(self._entries)

    def for_holder(self, jti_hash: str, base_sha256: str | None = None) -> list[CatalogEntry]:
        """The holder's artifacts (for one base model if given), best first, newest first."""
        mine = [
            e
            for e in self.entries()
            if e.jti_hash == jti_hash and (base_sha256 is None or e.base_sha256 == base_sha256)
        ]
        mine.sort(key=lambda e: e.created_at, reverse=True)
        mine.sort(key=lambda e: PREFERENCE.index(e.method))
        return mine

    def best(self, jti_hash: str, base_sha256: str) -> CatalogEntry | None:
        mine = self.for_holder(jti_hash, base_sha256)
        return mine[0] if mine else None
