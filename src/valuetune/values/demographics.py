"""Optional questions about the respondent: political self-placement and demographics.

The seed prototype asked for both. Here every field is optional, each has "prefer not to
say", and answers are category ids from fixed lists (no free text), kept apart from the
survey answers. They serve one purpose: to show an administrator which groups the
respondents cover, with small groups suppressed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from valuetune.errors import InvalidAnswerError

PREFER_NOT = "prefer_not"
"""The choice offered everywhere; stored as NULL, like a question left unanswered."""


@dataclass(frozen=True)
class PlacementAxis:
    """One axis of political self-placement, answered 0..10."""

    id: str
    question: str
    low: str
    high: str


PLACEMENT_AXES = (
    PlacementAxis(
        "economic",
        "In economic matters, where would you place yourself?",
        "Left: more redistribution and public provision",
        "Right: freer markets and lower taxes",
    ),
    PlacementAxis(
        "social",
        "In social matters, where would you place yourself?",
        "Progressive: change norms toward wider acceptance",
        "Traditional: keep established norms",
    ),
)
PLACEMENT_MAX = 10


@dataclass(frozen=True)
class DemographicField:
    id: str
    question: str
    options: tuple[tuple[str, str], ...]
    """(category id, label) in display order; "prefer not to say" is added by the page."""

    def label(self, category: str) -> str:
        return dict(self.options).get(category, category)


DEMOGRAPHIC_FIELDS = (
    DemographicField(
        "age",
        "Your age",
        (
            ("18-24", "18 to 24"),
            ("25-34", "25 to 34"),
            ("35-44", "35 to 44"),
            ("45-54", "45 to 54"),
            ("55-64", "55 to 64"),
            ("65+", "65 or older"),
        ),
    ),
    DemographicField(
        "gender",
        "Your gender",
        (("woman", "Woman"), ("man", "Man"), ("non-binary", "Non-binary"), ("other", "Other")),
    ),
    DemographicField(
        "region",
        "Where you live",
        (
            ("africa", "Africa"),
            ("asia", "Asia"),
            ("europe", "Europe"),
            ("latin-america", "Latin America and the Caribbean"),
            ("north-america", "Northern America"),
            ("oceania", "Oceania"),
        ),
    ),
    DemographicField(
        "education",
        "Your highest education",
        (
            ("secondary", "Secondary school or less"),
            ("vocational", "Vocational or technical"),
            ("bachelor", "Bachelor's degree"),
            ("postgraduate", "Postgraduate degree"),
        ),
    ),
    DemographicField(
        "religion",
        "Your religion, if any",
        (
            ("none", "None"),
            ("christian", "Christian"),
            ("muslim", "Muslim"),
            ("hindu", "Hindu"),
            ("buddhist", "Buddhist"),
            ("jewish", "Jewish"),
            ("other", "Another religion"),
        ),
    ),
)
FIELD_IDS = tuple(f.id for f in DEMOGRAPHIC_FIELDS)


def check_demographics(answers: Mapping[str, str | None]) -> dict[str, str | None]:
    """Every field, as a known category id or None (not said); anything else is refused."""
    unknown = set(answers) - set(FIELD_IDS)
    if unknown:
        raise InvalidAnswerError(f"unknown demographic field(s): {', '.join(sorted(unknown))}")
    checked: dict[str, str | None] = {}
    for field in DEMOGRAPHIC_FIELDS:
        value = answers.get(field.id) or None
        if value == PREFER_NOT:
            value = None
        if value is not None and value not in dict(field.options):
            raise InvalidAnswerError(f"{field.question}: {value!r} is not one of the choices")
        checked[field.id] = value
    return checked


def check_placement(value: int | str | None) -> int | None:
    """A self-placement answer 0..10, or None (not said)."""
    if value is None or value in ("", PREFER_NOT):
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidAnswerError(f"a placement is a whole number 0 to 10, not {value!r}") from None
    if not 0 <= number <= PLACEMENT_MAX:
        raise InvalidAnswerError(f"a placement is a whole number 0 to 10, not {number}")
    return number
