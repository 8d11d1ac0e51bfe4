"""The backend interface every language model implements, and the backend registry.

Two operations: `generate` (a chat reply; `stream` gives it piece by piece) and `score`
(the log-likelihood of given continuations after a conversation, which the persona-fit
benchmark and pair selection use). Capability flags say what else a backend can do.
Built-in backends register the same way a third party would, and a name can be
registered once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from valuetune.errors import ValuetuneError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


class GenerationOptions(BaseModel):
    """Sampling options; unknown fields are refused rather than ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_new_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = Field(0, ge=0, le=20, description="Alternatives reported per token.")


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, log-probability, and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed reply; the last one carries the finish reason and counts."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: Literal["stop", "length"] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ContinuationScore:
    """Log-likelihood of one continuation: the sum over its tokens, and how many there are."""

    logprob: float
    tokens: int

    @property
    def mean_logprob(self) -> float:
        """Length-normalised score: comparable across continuations of different lengths."""
        return self.logprob / max(1, self.tokens)


class LLMBackend(ABC):
    """A language model valuetune can align, evaluate and serve."""

    name: str = "abstract"
    supports_logprobs: bool = False
    supports_adapters: bool = False
    supports_steering: bool = False

    @abstractmethod
    def generate(self, messages: Sequence[Message], options: GenerationOptions) -> Generation:
        """The assistant's reply to `messages`."""

    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[Chunk]:
        """The reply in pieces as it is produced; by default, all of it in one piece."""
        reply = self.generate(messages, options)
        yield Chunk(
            reply.text,
            reply.logprobs,
            reply.finish_reason,
            reply.prompt_tokens,
            reply.completion_tokens,
        )

    @abstractmethod
    def score(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        """Log-likelihood of each continuation as the assistant's reply to `messages`."""

    def perplexity(self, texts: Sequence[str]) -> float:
        """Perplexity of plain text (no chat template): capability retention is measured
        as its change. Backends without raw log-likelihoods do not offer it."""
        raise BackendError(f"backend {self.name} cannot compute perplexity")


class BackendError(ValuetuneError):
    """A model cannot be loaded or run: missing files, bad configuration, out of memory."""


BackendFactory = Callable[..., LLMBackend]


class BackendRegistry:
    """Named backend factories. Registering a name twice is refused."""

    def __init__(self) -> None:
        self._factories: dict[str, BackendFactory] = {}

    def register(self, name: str, factory: BackendFactory) -> None:
        if name in self._factories:
            raise ValueError(f"a backend named {name!r} is already registered")
        self._factories[name] = factory

    def create(self, name: str, **kwargs: Any) -> LLMBackend:
        if name not in self._factories:
            known = ", ".join(sorted(self._factories)) or "none"
            raise BackendError(f"unknown backend {name!r}; registered: {known}")
        return self._factories[name](**kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)
