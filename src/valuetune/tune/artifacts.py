"""Artifacts on disk describe themselves and appear only when complete.

Every artifact directory (a dataset, steering vectors, an adapter) holds
`valuetune-artifact.json`: what produced it, from which inputs (hashes), with which
versions and settings. Writers fill a temporary sibling directory and rename it into
place at the end, so a killed job never leaves a half-written artifact under the final
name; readers refuse a directory without complete metadata.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from valuetune.canonical import canonical_json
from valuetune.errors import ValuetuneError

METADATA = "valuetune-artifact.json"
FORMAT = "valuetune-artifact/v1"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")
"""A LoRA tensor's name in PEFT's saved adapters: the module it adapts, and A or B."""
FIT_FILE = "valuetune-fit.json"
"""Held-out persona fit measured by `valuetune eval --artifact`, beside the metadata."""

_fingerprints: dict[tuple[Any, ...], str] = {}


class ArtifactError(ValuetuneError):
    """An artifact directory is missing, incomplete, corrupted or of the wrong kind."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jti_hash(jti: str) -> str:
    """Artifacts name the token they were made for by a hash of its jti, never the token."""
    return sha256_bytes(f"valuetune-jti:{jti}".encode())[:32]


def model_fingerprint(backend: Any) -> str:
    """The fingerprint of a loaded backend's model (see `directory_fingerprint`)."""
    return directory_fingerprint(str(backend.model_id))


def directory_fingerprint(model_id: str) -> str:
    """sha256 over a model directory's config and weight files (or its name if remote).

    Remembered per file list, sizes and modification times: hashing the embedded model's
    half a gigabyte takes a second, and servers and evaluators ask for it often."""
    root = Path(model_id)
    files = sorted(
        p for p in root.glob("*") if p.suffix in {".safetensors", ".bin"} or p.name == "config.json"
    )
    if not files:
        return sha256_bytes(f"model-id:{model_id}".encode())
    stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stats in _fingerprints:
        return _fingerprints[stats]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    _fingerprints[stats] = digest.hexdigest()
    return _fingerprints[stats]


def pattern_value(patterns: dict[str, Any], name: str, default: Any) -> Any:
    """PEFT's per-module override (`alpha_pattern`): a key matches a module name that ends
    with it."""
    for key, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?{key}", name):
            return value
    return default


def refuse_occupied(out: Path, *, overwrite: bool = False) -> None:
    """Refuse to write over an existing file or non-empty directory unless told to.

    Long jobs call it before they start, so they do not fail only at the end."""
    occupied = out.is_file() or (out.is_dir() and any(out.iterdir()))
    if occupied and not overwrite:
        raise ArtifactError(f"{out.resolve()} already exists; choose another --out or remove it")


@contextmanager
def writing_artifact(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A temporary directory that becomes `out` when the block finishes without error."""
    out = out.resolve()
    refuse_occupied(out, overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield work
        if not (work / METADATA).is_file():
            raise ArtifactError("internal error: artifact written without metadata")
        if out.exists():
            shutil.rmtree(out)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def write_metadata(folder: Path, kind: str, **fields: Any) -> dict[str, Any]:
    reserved = {"format", "kind", "created_at", "valuetune"} & set(fields)
    if reserved:
        raise ValueError(f"metadata fields {sorted(reserved)} are reserved")
    meta = {
        "format": FORMAT,
        "kind": kind,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "valuetune": importlib.metadata.version("valuetune"),
        **fields,
    }
    (folder / METADATA).write_text(canonical_json(meta, precision=6) + "\n")
    return meta


def write_fit(folder: Path, doc: dict[str, Any]) -> None:
    """Record an artifact's measured fit beside it (atomically; the artifact is unchanged)."""
    tmp = folder / f".{FIT_FILE}.tmp"
    tmp.write_text(canonical_json(doc, precision=6) + "\n")
    os.replace(tmp, folder / FIT_FILE)


def read_fit(folder: Path) -> float | None:
    """The held-out fit `valuetune eval` recorded for this artifact, if any."""
    try:
        fit = json.loads((folder / FIT_FILE).read_text()).get("fit")
    except (OSError, ValueError, AttributeError):
        return None
    return float(fit) if isinstance(fit, int | float) else None


def read_metadata(folder: Path, kind: str | None = None) -> dict[str, Any]:
    path = folder / METADATA
    if not path.is_file():
        raise ArtifactError(f"{folder} is not a finished valuetune artifact (no {METADATA})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is corrupted: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not valuetune artifact metadata")
    if kind is not None and meta.get("kind") != kind:
        raise ArtifactError(f"{folder} holds a {meta.get('kind')!r} artifact, not {kind!r}")
    return meta
