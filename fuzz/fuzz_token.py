"""Fuzz target for the token parser and verifier (atheris, libFuzzer).

Run on demand:
    .venv/bin/python fuzz/fuzz_token.py -max_total_time=600 fuzz/corpus
CI runs a short, bounded run (tests/test_fuzz.py). Any exception other than a
`TokenError` (a refusal with a reason) is a bug: the fuzzer stops and writes the input.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import suppress
from datetime import datetime
from pathlib import Path

import atheris

from valuetune.token.keys import KeyRing
from valuetune.token.paseto import TokenError, TokenProblem, footer_of, split_token
from valuetune.token.payload import profile_from_claims
from valuetune.token.tokens import TokenService


class AcceptAll:
    """A registry with nothing revoked: the real `TokenRegistry` interface, in memory."""

    def record_issued(self, *args: object) -> None:
        return None

    def refusal(self, jti: str, sub: str, issued_at: datetime) -> TokenProblem | None:
        return None


RING = KeyRing.open(Path(tempfile.mkdtemp(prefix="vt-fuzz-")))
SERVICE = TokenService(RING, AcceptAll())


def test_one_input(data: bytes) -> None:
    text = data[:3000].decode("latin-1")  # one character per byte: seeds are plain tokens
    for check in (split_token, footer_of):
        with suppress(TokenError):
            check(text)
    for purpose in ("preference", "share", "reference"):
        with suppress(TokenError):
            SERVICE.verify(text, purpose)  # type: ignore[arg-type]
    with suppress(TokenError):
        profile_from_claims({"v": "axes/v1", "p": text})


def write_seed_corpus(folder: Path) -> None:
    """Valid tokens of every purpose, so mutations start from deep inside the format."""
    from valuetune.values.personas import load_personas

    folder.mkdir(parents=True, exist_ok=True)
    verified = SERVICE.verify(SERVICE.mint(load_personas()[0].profile).token)
    tokens = [
        SERVICE.mint(load_personas()[1].profile).token,
        SERVICE.mint_share(verified).token,
        SERVICE.mint_reference(verified).token,
    ]
    for i, token in enumerate(tokens):
        (folder / f"seed-{i}").write_bytes(token.encode("ascii"))


if __name__ == "__main__":
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpus:
        write_seed_corpus(Path(corpus[0]))
    # instrument_imports misses modules loaded through an editable install's finder;
    # instrumenting everything already imported covers valuetune and pyseto either way.
    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
