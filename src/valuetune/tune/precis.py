"""Method `precis`: the token's précis as the system prompt. No training, no new weights.

The artifact is the précis text itself; applying it wraps a backend so every
conversation starts with the précis as (or in front of) the system message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from valuetune.llm.base import (
    Chunk,
    ContinuationScore,
    Generation,
    GenerationOptions,
    LLMBackend,
    Message,
)
from valuetune.token.precis import PrecisLength, write_precis
from valuetune.tune.artifacts import (
    jti_hash,
    read_metadata,
    sha256_bytes,
    write_metadata,
    writing_artifact,
)
from valuetune.tune.methods import AlignmentMethod, TuneRequest

PRECIS_FILE = "precis.txt"


def with_system(messages: Sequence[Message], instruction: str) -> list[Message]:
    """`messages` with `instruction` as the system message (before any existing one)."""
    if messages and messages[0].role == "system":
        return [Message("system", f"{instruction}\n\n{messages[0].content}"), *messages[1:]]
    return [Message("system", instruction), *messages]


class PrecisBackend(LLMBackend):
    """A backend whose conversations begin with a fixed system instruction."""

    def __init__(self, base: LLMBackend, instruction: str) -> None:
        self.base, self.instruction = base, instruction
        self.name = f"{base.name}+precis"
        self.supports_logprobs = base.supports_logprobs

    def generate(self, messages: Sequence[Message], options: GenerationOptions) -> Generation:
        return self.base.generate(with_system(messages, self.instruction), options)

    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[Chunk]:
        return self.base.stream(with_system(messages, self.instruction), options)

    def score(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        return self.base.score(with_system(messages, self.instruction), continuations)

    def perplexity(self, texts: Sequence[str]) -> float:
        return self.base.perplexity(texts)  # the weights are the base model's


class PrecisMethod(AlignmentMethod):
    name = "precis"
    cost = 0

    def __init__(self, length: PrecisLength = PrecisLength.MEDIUM) -> None:
        self.length = length

    def build(self, request: TuneRequest, out: Path) -> dict[str, Any]:
        text = write_precis(request.profile, self.length)
        with writing_artifact(out, overwrite=bool(request.settings.get("overwrite"))) as work:
            (work / PRECIS_FILE).write_text(text + "\n")
            return write_metadata(
                work,
                "alignment/precis",
                method=self.name,
                token_jti_hash=jti_hash(request.jti),
                base_model=request.base_model,
                length=self.length.value,
                precis_sha256=sha256_bytes(text.encode()),
            )

    def apply(self, backend: LLMBackend, artifact: Path) -> LLMBackend:
        read_metadata(artifact, "alignment/precis")
        return PrecisBackend(backend, (artifact / PRECIS_FILE).read_text().strip())
