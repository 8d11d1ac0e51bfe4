"""`SurveySession`: the adaptive survey as a pure state machine.

The session decides which item comes next and keeps the posterior; it stores nothing.
Callers persist each answer before handing it to the session, and a session rebuilt from
stored answers (`SurveySession.replay`) reaches the same state, so an interrupted survey
resumes where it stopped.

Phases: adaptive value items (Likert and forced choice) until every value axis reaches
the target standard error or `max_value_items` is asked, with attention checks slotted
in; then adaptive style items; then the boundary questions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from valuetune.errors import InvalidAnswerError, SchemaError
from valuetune.values.irt import Estimator, Posterior
from valuetune.values.items import Item, ItemBank, ItemKind
from valuetune.values.profile import ValueProfile


class Phase(StrEnum):
    VALUES = "values"
    STYLE = "style"
    BOUNDARIES = "boundaries"
    DONE = "done"


@dataclass(frozen=True)
class SurveyConfig:
    """Stop rules and shape of one survey."""

    max_value_items: int = 20
    """Most value items (Likert and forced choice) asked, skips included."""
    target_se: float = 0.45
    """Stop the value phase early once every value axis has posterior SD at or below this."""
    max_style_items: int = 6
    style_target_se: float = 0.6
    attention_after: tuple[int, ...] = (8,)
    """Ask an attention check after this many value items (one check per entry)."""
    ask_boundaries: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_value_items": self.max_value_items,
            "target_se": self.target_se,
            "max_style_items": self.max_style_items,
            "style_target_se": self.style_target_se,
            "attention_after": list(self.attention_after),
            "ask_boundaries": self.ask_boundaries,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SurveyConfig:
        try:
            return cls(
                max_value_items=int(doc["max_value_items"]),
                target_se=float(doc["target_se"]),
                max_style_items=int(doc["max_style_items"]),
                style_target_se=float(doc["style_target_se"]),
                attention_after=tuple(int(n) for n in doc["attention_after"]),
                ask_boundaries=bool(doc["ask_boundaries"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"stored survey settings are malformed: {exc!r}") from None

    def __post_init__(self) -> None:
        if self.max_value_items < 0 or self.max_style_items < 0:
            raise ValueError("item limits must be non-negative")
        if self.target_se <= 0 or self.style_target_se <= 0:
            raise ValueError("target standard errors must be positive")


@dataclass(frozen=True)
class Answer:
    item_id: str
    value: int | None  # None = skipped


@dataclass
class SurveySession:
    """One respondent's adaptive survey."""

    bank: ItemBank
    config: SurveyConfig = field(default_factory=SurveyConfig)
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        axes = self.bank.axes
        a, d = self.bank.parameters()
        self._estimator = Estimator(a, d, axes.prior_covariance())
        n_values = len(axes.value_axes)
        self._value_dims = np.zeros(len(axes.dims))
        self._value_dims[:n_values] = 1.0
        self._style_dims = 1.0 - self._value_dims
        self._value_pool = [
            i
            for i, it in enumerate(self.bank.items)
            if it.graded and set(it.loadings) <= set(axes.value_ids)
        ]
        self._style_pool = [
            i
            for i, it in enumerate(self.bank.items)
            if it.graded and set(it.loadings) <= set(axes.style_ids)
        ]
        self._attention = [
            i for i, it in enumerate(self.bank.items) if it.kind is ItemKind.ATTENTION
        ]
        self._boundary = [i for i, it in enumerate(self.bank.items) if it.kind is ItemKind.BOUNDARY]
        self._asked: set[int] = set()
        self._posterior = self._estimator.prior()
        replay, self.answers = self.answers, []
        for answer in replay:
            self._record(answer.item_id, answer.value, refit=False)
        self._refit()

    @classmethod
    def replay(
        cls, bank: ItemBank, answers: Iterable[Answer], config: SurveyConfig | None = None
    ) -> SurveySession:
        """Rebuild a session from stored answers (any order of arrival is kept)."""
        return cls(bank, config or SurveyConfig(), list(answers))

    # -- flow ----------------------------------------------------------------------

    @property
    def posterior(self) -> Posterior:
        return self._posterior

    def _count(self, pool: list[int]) -> int:
        return sum(1 for i in pool if i in self._asked)

    def _phase_done(self, pool: list[int], limit: int, dims: np.ndarray, target_se: float) -> bool:
        if self._count(pool) >= limit or all(i in self._asked for i in pool):
            return True
        sd = self._posterior.sd[dims.astype(bool)]
        return bool(np.all(sd <= target_se))

    @property
    def phase(self) -> Phase:
        cfg = self.config
        if not self._phase_done(
            self._value_pool, cfg.max_value_items, self._value_dims, cfg.target_se
        ):
            return Phase.VALUES
        if not self._phase_done(
            self._style_pool, cfg.max_style_items, self._style_dims, cfg.style_target_se
        ):
            return Phase.STYLE
        if cfg.ask_boundaries and any(i not in self._asked for i in self._boundary):
            return Phase.BOUNDARIES
        return Phase.DONE

    def next_item(self) -> Item | None:
        """The item to ask now, or None when the survey is complete."""
        phase = self.phase
        if phase is Phase.VALUES:
            due = sum(1 for n in self.config.attention_after if self._count(self._value_pool) >= n)
            pending = [i for i in self._attention if i not in self._asked]
            if due > self._count(self._attention) and pending:
                return self.bank.items[pending[0]]
            return self._select(self._value_pool, self._value_dims)
        if phase is Phase.STYLE:
            return self._select(self._style_pool, self._style_dims)
        if phase is Phase.BOUNDARIES:
            return next(self.bank.items[i] for i in self._boundary if i not in self._asked)
        return None

    def _select(self, pool: list[int], dims: np.ndarray) -> Item | None:
        candidates = np.array([i for i in pool if i not in self._asked], dtype=np.int_)
        chosen = self._estimator.select(self._posterior, candidates, dims)
        return None if chosen is None else self.bank.items[chosen]

    @property
    def complete(self) -> bool:
        return self.phase is Phase.DONE

    def progress(self) -> tuple[int, int]:
        """(answered, expected total): the total shrinks when stop rules end a phase early."""
        cfg = self.config
        value_left = (
            0
            if self.phase is not Phase.VALUES
            else max(
                0, min(cfg.max_value_items, len(self._value_pool)) - self._count(self._value_pool)
            )
        )
        style_left = (
            0
            if self.phase in (Phase.BOUNDARIES, Phase.DONE)
            else max(
                0, min(cfg.max_style_items, len(self._style_pool)) - self._count(self._style_pool)
            )
        )
        attention_left = max(
            0, min(len(cfg.attention_after), len(self._attention)) - self._count(self._attention)
        )
        if self.phase is not Phase.VALUES:
            attention_left = 0
        boundary_left = (
            (len(self._boundary) - self._count(self._boundary)) if cfg.ask_boundaries else 0
        )
        done = len(self.answers)
        return done, done + value_left + style_left + attention_left + boundary_left

    # -- answers -------------------------------------------------------------------

    def answer(self, item_id: str, value: int | None) -> None:
        """Record an answer (None = skip) to an item not answered before."""
        self._record(item_id, value, refit=True)

    def _record(self, item_id: str, value: int | None, *, refit: bool) -> None:
        index = self.bank.index(item_id)
        if index in self._asked:
            raise InvalidAnswerError(f"item {item_id} was already answered")
        item = self.bank.items[index]
        checked = None if value is None else item.check_answer(value)
        self._asked.add(index)
        self.answers.append(Answer(item_id, checked))
        if refit and item.graded and checked is not None:
            self._refit()

    def _graded_answers(self) -> tuple[np.ndarray, np.ndarray]:
        graded = [
            (self.bank.index(a.item_id), a.value)
            for a in self.answers
            if a.value is not None and self.bank.get(a.item_id).graded
        ]
        idx = np.array([g[0] for g in graded], dtype=np.int_)
        y = np.array([g[1] for g in graded], dtype=np.int_)
        return idx, y

    def _refit(self) -> None:
        # The Laplace fit drives item selection: fast, and its mode is what selection needs.
        idx, y = self._graded_answers()
        self._posterior = self._estimator.fit(idx, y, start=self._posterior.mean)

    # -- results -------------------------------------------------------------------

    @property
    def attention_failures(self) -> int:
        """Attention checks answered other than instructed (skips count as failures)."""
        return sum(
            1
            for a in self.answers
            if (item := self.bank.get(a.item_id)).kind is ItemKind.ATTENTION
            and a.value != item.expected
        )

    def boundaries(self) -> frozenset[str]:
        return frozenset(
            item.boundary
            for a in self.answers
            if (item := self.bank.get(a.item_id)).kind is ItemKind.BOUNDARY
            and a.value == 1
            and item.boundary is not None
        )

    def profile(self) -> ValueProfile:
        """The current estimate as a `ValueProfile`: posterior mean and SD per dimension.

        The moments come from importance sampling around the Laplace fit, so they are the
        posterior mean and covariance, not the mode; the draws are seeded, so the same
        answers always give the same profile.
        """
        axes = self.bank.axes
        n = len(axes.value_axes)
        idx, y = self._graded_answers()
        moments = self._estimator.posterior_moments(idx, y, self._posterior)
        mean, sd = moments.mean, moments.sd
        return ValueProfile(
            schema=axes.version,
            values=tuple(mean[:n]),
            values_se=tuple(sd[:n]),
            style=tuple(mean[n:]),
            style_se=tuple(sd[n:]),
            boundaries=self.boundaries(),
        )
