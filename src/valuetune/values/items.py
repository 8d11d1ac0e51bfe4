"""The item bank: the questions, their kinds and their IRT parameters.

Graded items (Likert statements and forced-choice scenarios) share one model, the
multidimensional graded response model: with latent vector theta,
``P(answer >= k) = sigmoid(a . theta + d[k-1])`` for k = 1..K-1 and strictly decreasing d.
A forced choice is the K = 2 case, which is exactly the 2PL model: answer 1 means the
first option, and ``a = loadings(first) - loadings(second)``.
Boundary questions are stated preferences (yes/no, no latent trait); attention checks
instruct one answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import NDArray

from valuetune.errors import InvalidAnswerError, SchemaError
from valuetune.packaged import packaged_documents
from valuetune.values.axes import AxesSchema, load_axes

LIKERT_LABELS = (
    "Strongly disagree",
    "Disagree",
    "Neither agree nor disagree",
    "Agree",
    "Strongly agree",
)
BOUNDARY_LABELS = ("No, that is fine", "Yes, please avoid it")
MAX_CATEGORIES = 5
ITEM_FILES = (
    "values_a.json",
    "values_b.json",
    "choice.json",
    "style.json",
    "boundary.json",
    "attention.json",
)


class ItemKind(StrEnum):
    LIKERT = "likert"
    CHOICE = "choice"
    BOUNDARY = "boundary"
    ATTENTION = "attention"


@dataclass(frozen=True)
class ChoiceOption:
    """One action of a forced-choice scenario with its value loadings."""

    text: str
    loadings: Mapping[str, float]


@dataclass(frozen=True)
class Item:
    """One survey question."""

    id: str
    kind: ItemKind
    text: str
    loadings: Mapping[str, float] = field(default_factory=dict)
    thresholds: tuple[float, ...] = ()
    options: tuple[ChoiceOption, ...] = ()
    boundary: str | None = None
    expected: int | None = None

    @property
    def graded(self) -> bool:
        """Whether the IRT engine models this item (Likert or forced choice)."""
        return self.kind in (ItemKind.LIKERT, ItemKind.CHOICE)

    @property
    def labels(self) -> tuple[str, ...]:
        """Answer labels, indexed by answer value."""
        if self.kind is ItemKind.CHOICE:
            # answer 1 = first option, answer 0 = second option (2PL coding)
            return (self.options[1].text, self.options[0].text)
        if self.kind is ItemKind.BOUNDARY:
            return BOUNDARY_LABELS
        return LIKERT_LABELS

    @property
    def n_categories(self) -> int:
        return len(self.labels)

    def check_answer(self, value: object) -> int:
        """The answer as an int category, or `InvalidAnswerError` saying what is allowed."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidAnswerError(
                f"answer to {self.id} must be an integer 0..{self.n_categories - 1}, got {value!r}"
            )
        if not 0 <= value < self.n_categories:
            raise InvalidAnswerError(
                f"answer to {self.id} must be in 0..{self.n_categories - 1}, got {value}"
            )
        return value

    def primary_dim(self) -> str | None:
        """The dimension this item loads on most strongly."""
        if not self.loadings:
            return None
        return max(self.loadings, key=lambda d: abs(self.loadings[d]))


@dataclass(frozen=True, eq=False)
class ItemBank:
    """All items of one schema, with the graded items' parameters as arrays."""

    axes: AxesSchema
    items: tuple[Item, ...]
    _a: NDArray[np.float64] = field(init=False, repr=False)
    _d: NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = [i.id for i in self.items]
        if len(set(ids)) != len(ids):
            raise SchemaError("item bank repeats an item id")
        a, d = _parameters(self.axes, self.items)
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_d", d)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def index(self, item_id: str) -> int:
        for i, item in enumerate(self.items):
            if item.id == item_id:
                return i
        raise InvalidAnswerError(f"unknown item id {item_id!r}")

    def get(self, item_id: str) -> Item:
        return self.items[self.index(item_id)]

    def of_kind(self, kind: ItemKind) -> list[Item]:
        return [i for i in self.items if i.kind is kind]

    def parameters(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(A, D): loadings (n_items, n_dims) and thresholds (n_items, MAX_CATEGORIES - 1).

        Non-graded items have zero rows. Unused upper thresholds are -inf, so
        P(answer >= k) is 0 beyond an item's last category.
        """
        return self._a, self._d


def _parameters(
    axes: AxesSchema, items: tuple[Item, ...]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    dims = axes.dims
    a = np.zeros((len(items), len(dims)))
    d = np.full((len(items), MAX_CATEGORIES - 1), -np.inf)
    for row, item in enumerate(items):
        if not item.graded:
            continue
        for dim, weight in item.loadings.items():
            a[row, dims.index(dim)] = weight
        d[row, : len(item.thresholds)] = item.thresholds
    a.setflags(write=False)
    d.setflags(write=False)
    return a, d


def parse_item(doc: Mapping[str, Any], axes: AxesSchema) -> Item:
    """Build and check one item from its JSON form."""
    item_id = doc.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise SchemaError(f"item without an id: {doc!r}")
    try:
        kind = ItemKind(doc["kind"])
        text = str(doc["text"]).strip()
        if kind is ItemKind.LIKERT:
            loadings = _loadings(doc["loadings"], axes.dims)
            thresholds = tuple(float(t) for t in doc["thresholds"])
            item = Item(item_id, kind, text, loadings, thresholds)
        elif kind is ItemKind.CHOICE:
            options = tuple(
                ChoiceOption(str(o["text"]).strip(), _loadings(o["loadings"], axes.value_ids))
                for o in doc["options"]
            )
            if len(options) != 2:
                raise SchemaError(f"choice item {item_id} needs exactly two options")
            dims = set(options[0].loadings) | set(options[1].loadings)
            loadings = {
                d: options[0].loadings.get(d, 0.0) - options[1].loadings.get(d, 0.0) for d in dims
            }
            item = Item(item_id, kind, text, loadings, (float(doc["intercept"]),), options)
        elif kind is ItemKind.BOUNDARY:
            boundary = str(doc["boundary"])
            axes.boundary(boundary)
            item = Item(item_id, kind, text, boundary=boundary)
        else:
            expected = int(doc["expected"])
            if not 0 <= expected < len(LIKERT_LABELS):
                raise SchemaError(f"attention item {item_id}: expected answer out of range")
            item = Item(item_id, kind, text, expected=expected)
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"item {item_id} is malformed: {exc!r}") from None
    if not text:
        raise SchemaError(f"item {item_id} has no text")
    if item.graded:
        _check_graded(item)
    return item


def _loadings(raw: Mapping[str, Any], known: tuple[str, ...]) -> dict[str, float]:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SchemaError(f"loadings on unknown dimensions {unknown}")
    return {str(k): float(v) for k, v in raw.items()}


def _check_graded(item: Item) -> None:
    t = item.thresholds
    expected = 1 if item.kind is ItemKind.CHOICE else len(LIKERT_LABELS) - 1
    if len(t) != expected:
        raise SchemaError(f"item {item.id} needs {expected} thresholds, has {len(t)}")
    if any(not np.isfinite(x) or abs(x) > 6 for x in t):
        raise SchemaError(f"item {item.id} has thresholds outside [-6, 6]")
    if any(a <= b for a, b in pairwise(t)):
        raise SchemaError(f"item {item.id} thresholds must strictly decrease")
    if not item.loadings or all(v == 0 for v in item.loadings.values()):
        raise SchemaError(f"item {item.id} loads on no dimension")


def parse_item_bank(docs: list[Mapping[str, Any]], axes: AxesSchema) -> ItemBank:
    bank = ItemBank(axes, tuple(parse_item(doc, axes) for doc in docs))
    texts = [i.text.casefold() for i in bank]
    if len(set(texts)) != len(texts):
        raise SchemaError("item bank repeats an item text")
    return bank


@cache
def load_item_bank(schema: str = "axes/v1") -> ItemBank:
    """The built-in item bank for `schema`."""
    docs = packaged_documents("valuetune.values", "items", ITEM_FILES, "items")
    return parse_item_bank(docs, load_axes(schema))
