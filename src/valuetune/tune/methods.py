"""One interface for every way of aligning a model to a token.

A method `build`s an artifact for a profile (written atomically, with metadata) and
`apply`s an artifact to a base backend, giving a backend that answers the aligned way.
Methods register by name like backends do; `cost` orders them from cheapest to dearest,
which is how `auto` and `compare` pick the cheapest method that fits well enough.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # the CLI imports FIT_THRESHOLD at start-up; keep numpy out of it
    from valuetune.llm.base import LLMBackend
    from valuetune.tune.scenarios import ScenarioBank
    from valuetune.values.profile import ValueProfile

FIT_THRESHOLD = 0.80
"""Persona fit a method must reach to count as fitting well: what `auto` requires of a
cheaper method before it skips the fine-tune, and what `compare` recommends by."""


@dataclass(frozen=True)
class TuneRequest:
    """Everything a method may use to build an artifact for one token holder."""

    backend: LLMBackend
    profile: ValueProfile
    jti: str
    bank: ScenarioBank
    base_model: str
    settings: dict[str, Any]


class AlignmentMethod(ABC):
    name: ClassVar[str]
    cost: ClassVar[int]
    """Relative cost to build and serve: lower is cheaper."""

    @abstractmethod
    def build(self, request: TuneRequest, out: Path) -> dict[str, Any]:
        """Write the artifact to `out` (atomically); return its metadata."""

    @abstractmethod
    def apply(self, backend: LLMBackend, artifact: Path) -> LLMBackend:
        """A backend that answers as `backend` aligned by `artifact`."""


class MethodRegistry:
    def __init__(self) -> None:
        self._methods: dict[str, AlignmentMethod] = {}

    def register(self, method: AlignmentMethod) -> None:
        if method.name in self._methods:
            raise ValueError(f"an alignment method named {method.name!r} is already registered")
        self._methods[method.name] = method

    def get(self, name: str) -> AlignmentMethod:
        if name not in self._methods:
            from valuetune.errors import ValuetuneError

            known = ", ".join(self.names())
            raise ValuetuneError(f"unknown method {name!r}; available: {known}")
        return self._methods[name]

    def names(self) -> list[str]:
        return [m.name for m in sorted(self._methods.values(), key=lambda m: m.cost)]
