"""The précis: a deterministic plain-language summary of a profile, for use as a system prompt.

A preference token is opaque; the précis is the same preferences in words an assistant can
follow as a custom instruction, in three lengths. It is written to the assistant about "the
user" and built only from a phrase file (`data/precis_v1.json`), so the same profile always
gives the same text: no randomness, no dates, ties broken by schema order, boundaries in
schema order (never in set order, which varies with the hash seed). The text carries no
numbers from the profile; strength shows only in which phrases are chosen and how they are
grouped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from valuetune.errors import SchemaError, ValuetuneError
from valuetune.values.axes import AxesSchema, load_axes
from valuetune.values.profile import ValueProfile

VALUE_THRESHOLD = 0.5  # |estimate| from which a value axis is mentioned at all
STRONG_THRESHOLD = 1.2  # |estimate| from which LONG calls a value strongly held
UNCERTAIN_SE = 0.6  # standard error above which LONG marks a value as less certain
SHORT_VALUES, MEDIUM_VALUES = 3, 6
SHORT_STYLES = 2

NO_VALUES = "No strong value leanings were measured; do not assume any particular values."
NO_STYLE = "No strong style preferences were measured; use a clear, balanced style."
VALUES_NOTE = (
    "Let this inform framing and examples without assuming the user's view on every topic."
)
CLOSING = (
    "Respect these preferences without mentioning this profile unless the user asks about "
    "it, and never use them to manipulate the user."
)


class PrecisLength(StrEnum):
    """How much the précis says: SHORT fits a small custom-instruction box, LONG says all."""

    SHORT = "short"
    MEDIUM = "medium"
    LONG = "long"


# |estimate| from which a style dimension gets its instruction, per length
STYLE_THRESHOLDS = {PrecisLength.SHORT: 0.5, PrecisLength.MEDIUM: 0.4, PrecisLength.LONG: 0.3}


@dataclass(frozen=True)
class ValuePhrases:
    """What to say about the user at each pole of a value axis, and where it matters."""

    high: str
    low: str
    when: str

    def pole(self, estimate: float) -> str:
        return self.high if estimate > 0 else self.low


@dataclass(frozen=True)
class StylePhrases:
    """The instruction to the assistant for each pole of a style dimension."""

    high: str
    low: str

    def pole(self, estimate: float) -> str:
        return self.high if estimate > 0 else self.low


@dataclass(frozen=True)
class PrecisPhrases:
    """The phrase file for one axes schema, keyed by axis, dimension and boundary id."""

    schema: str
    values: Mapping[str, ValuePhrases]
    style: Mapping[str, StylePhrases]
    boundaries: Mapping[str, str]


def parse_phrases(doc: Any, axes: AxesSchema) -> PrecisPhrases:
    """Build the phrase set from its JSON document, refusing one that does not fit `axes`.

    Every value axis, style dimension and boundary of the schema needs its phrases, and no
    others may appear: a précis that silently skipped an axis would misdescribe the user.
    """
    if not isinstance(doc, dict):
        raise SchemaError("précis phrase file must be a JSON object")
    if doc.get("schema") != axes.version:
        raise SchemaError(
            f"précis phrase file is for {doc.get('schema')!r}, the profile uses {axes.version}"
        )
    values_doc = _section(doc, "values", axes.value_ids)
    style_doc = _section(doc, "style", axes.style_ids)
    boundary_doc = _section(doc, "boundaries", axes.boundary_ids)
    values = {
        a: ValuePhrases(*(_text(values_doc[a], k, f"values.{a}") for k in ("high", "low", "when")))
        for a in axes.value_ids
    }
    style = {
        s: StylePhrases(*(_text(style_doc[s], k, f"style.{s}") for k in ("high", "low")))
        for s in axes.style_ids
    }
    boundaries = {b: _text(boundary_doc, b, "boundaries") for b in axes.boundary_ids}
    return PrecisPhrases(axes.version, values, style, boundaries)


def _section(doc: dict[str, Any], key: str, ids: Sequence[str]) -> dict[str, Any]:
    section = doc.get(key)
    if not isinstance(section, dict):
        raise SchemaError(f"précis phrase file needs a {key!r} object")
    missing = [i for i in ids if i not in section]
    unknown = sorted(set(section) - set(ids))
    if missing or unknown:
        raise SchemaError(
            f"précis phrase file {key!r} does not match the schema: "
            f"missing {missing}, unknown {unknown}"
        )
    return section


def _text(entry: Any, key: str, where: str) -> str:
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise SchemaError(f"précis phrase file needs a non-empty {key!r} in {where}")
    return value


@cache
def load_phrases(schema: str = "axes/v1") -> PrecisPhrases:
    """The built-in phrases for `schema` (read once; they are immutable data)."""
    axes = load_axes(schema)
    name = "precis_" + schema.replace("axes/", "") + ".json"
    try:
        text = resources.files("valuetune.token").joinpath("data", name).read_text("utf-8")
    except FileNotFoundError:
        raise SchemaError(f"no built-in précis phrases for {schema}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"built-in {name} is not valid JSON: {exc}") from None
    return parse_phrases(doc, axes)


def write_precis(profile: ValueProfile, length: PrecisLength | str = PrecisLength.MEDIUM) -> str:
    """A custom instruction describing `profile` to an assistant, at the chosen length.

    SHORT (about 400 characters) names the three strongest values, two style instructions
    and the boundaries in one sentence; MEDIUM (about 1000) six values, more style and each
    boundary's instruction; LONG everything, grouped by strength with where each matters.
    Boundaries are never dropped to meet a length: a profile with many of them runs longer.
    """
    size = _parse_length(length)
    phrases = load_phrases(profile.schema)
    axes = profile.axes
    values = [
        (phrases.values[axes.value_ids[i]], est, se)
        for i, est, se in _ranked(profile.values, profile.values_se, VALUE_THRESHOLD)
    ]
    styles = [
        phrases.style[axes.style_ids[i]].pole(est)
        for i, est, _ in _ranked(profile.style, profile.style_se, STYLE_THRESHOLDS[size])
    ]
    chosen = [b for b in axes.boundaries if b.id in profile.boundaries]
    if size is PrecisLength.SHORT:
        parts = [_value_sentence([p.pole(est) for p, est, _ in values[:SHORT_VALUES]])]
        parts += styles[:SHORT_STYLES]
        if chosen:
            parts.append("Boundaries: " + "; ".join(phrases.boundaries[b.id] for b in chosen) + ".")
        return " ".join(parts)
    if size is PrecisLength.MEDIUM:
        parts = [_value_sentence([p.pole(est) for p, est, _ in values[:MEDIUM_VALUES]])]
        parts += [VALUES_NOTE] if values else []
        parts += styles
        parts += [b.instruction for b in chosen]
        return " ".join(parts)
    return _long(values, styles, [b.instruction for b in chosen])


def boundary_instructions(profile: ValueProfile) -> str:
    """The précis's boundary part alone: what an adapted model is still told."""
    chosen = [b for b in profile.axes.boundaries if b.id in profile.boundaries]
    return " ".join(b.instruction for b in chosen)


def _parse_length(length: PrecisLength | str) -> PrecisLength:
    try:
        return PrecisLength(str(length).strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in PrecisLength)
        raise ValuetuneError(
            f"unknown précis length {length!r}; choose one of: {allowed}"
        ) from None


def _ranked(
    estimates: Sequence[float], ses: Sequence[float], threshold: float
) -> list[tuple[int, float, float]]:
    """(index, estimate, SE) of dimensions with |estimate| >= threshold, strongest first.

    Sorting on (-|estimate|, index) breaks ties by schema order, so the order never
    depends on anything but the profile.
    """
    pairs = enumerate(zip(estimates, ses, strict=True))
    kept = [(i, est, se) for i, (est, se) in pairs if abs(est) >= threshold]
    return sorted(kept, key=lambda c: (-abs(c[1]), c[0]))


def _value_sentence(clauses: list[str]) -> str:
    # Phrases contain commas and "and", so clauses are separated by semicolons.
    if not clauses:
        return NO_VALUES
    if len(clauses) == 1:
        return f"The user {clauses[0]}."
    return "The user " + "; ".join(clauses[:-1]) + "; and " + clauses[-1] + "."


def _long(
    values: list[tuple[ValuePhrases, float, float]], styles: list[str], boundaries: list[str]
) -> str:
    """The long précis: sections of bullet lines, ending with how to use them."""
    sections: list[str] = []
    strong = [v for v in values if abs(v[1]) >= STRONG_THRESHOLD]
    moderate = [v for v in values if abs(v[1]) < STRONG_THRESHOLD]
    for heading, group in (("Strongly", strong), ("Moderately", moderate)):
        if group:
            lines = [f"{heading} held values. The user:"]
            for phrases, est, se in group:
                note = "; less certain" if se > UNCERTAIN_SE else ""
                lines.append(f"- {phrases.pole(est)} (matters most {phrases.when}{note}).")
            sections.append("\n".join(lines))
    sections.append(VALUES_NOTE if values else NO_VALUES)
    sections.append(
        "\n".join(["How to respond:", *(f"- {s}" for s in styles)]) if styles else NO_STYLE
    )
    if boundaries:
        sections.append(
            "\n".join(["Boundaries the user has set:", *(f"- {b}" for b in boundaries)])
        )
    sections.append(CLOSING)
    return "\n\n".join(sections)
