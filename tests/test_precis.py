"""The précis: deterministic, bounded, faithful to the profile's poles, style and boundaries."""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import valuetune.token.precis as precis_module
from valuetune.errors import SchemaError, ValuetuneError
from valuetune.token.precis import (
    PrecisLength,
    load_phrases,
    parse_phrases,
    write_precis,
)
from valuetune.values.axes import load_axes
from valuetune.values.personas import get_persona, load_personas
from valuetune.values.profile import ValueProfile

LENGTHS = list(PrecisLength)
PERSONAS = load_personas()
PERSONA_IDS = [p.id for p in PERSONAS]


def _raw_phrases() -> dict[str, Any]:
    text = resources.files("valuetune.token").joinpath("data", "precis_v1.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


def _all_phrases() -> list[str]:
    phrases = load_phrases()
    texts = [t for v in phrases.values.values() for t in (v.high, v.low)]
    return texts + [t for s in phrases.style.values() for t in (s.high, s.low)]


def _profile(values: dict[str, float], **kwargs: Any) -> ValueProfile:
    full = {a: 0.0 for a in load_axes().value_ids} | values
    return ValueProfile.from_mappings(full, **kwargs)


def _strongest_phrase(profile: ValueProfile) -> tuple[str, str]:
    """(phrase for the strongest axis's pole, phrase for its other pole)."""
    axis, est = profile.strongest(1)[0]
    phrases = load_phrases().values[axis]
    return (phrases.high, phrases.low) if est > 0 else (phrases.low, phrases.high)


# -- determinism ---------------------------------------------------------------------


@pytest.mark.parametrize("length", LENGTHS)
def test_same_profile_gives_same_text_also_after_a_json_round_trip(length: PrecisLength) -> None:
    profile = get_persona("national-conservative").profile
    text = write_precis(profile, length)
    assert write_precis(profile, length) == text
    assert write_precis(ValueProfile.from_json(profile.to_json()), length) == text


def test_text_does_not_depend_on_the_hash_seed() -> None:
    """Boundaries are a frozenset; its iteration order changes with PYTHONHASHSEED."""
    profile = _profile({"care": 1.0}, boundaries=load_axes().boundary_ids)
    code = (
        "import sys; from valuetune.token.precis import write_precis;"
        "from valuetune.values.profile import ValueProfile;"
        "p = ValueProfile.from_json(sys.stdin.read());"
        "sys.stdout.write('\\x00'.join(write_precis(p, n) for n in ('short', 'medium', 'long')))"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            input=profile.to_json(),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert outputs.pop().split("\x00") == [write_precis(profile, n) for n in LENGTHS]


def test_equal_estimates_are_ranked_by_schema_order() -> None:
    ids = load_axes().value_ids
    profile = _profile({ids[5]: 1.0, ids[1]: -1.0, ids[9]: 1.0, ids[3]: 1.0})
    phrases = load_phrases().values
    short = write_precis(profile, PrecisLength.SHORT)
    kept = [phrases[ids[1]].low, phrases[ids[3]].high, phrases[ids[5]].high]
    assert [short.index(p) for p in kept] == sorted(short.index(p) for p in kept)
    assert phrases[ids[9]].high not in short


# -- every persona, every length -----------------------------------------------------


@pytest.mark.parametrize("persona_id", PERSONA_IDS)
def test_persona_precis_is_bounded_and_free_of_numbers(persona_id: str) -> None:
    profile = get_persona(persona_id).profile
    texts = {n: write_precis(profile, n) for n in LENGTHS}
    for name, text in texts.items():
        assert text.strip(), name
        assert not any(ch.isdigit() for ch in text), (name, text)
        assert "The user" in text
    assert len(texts[PrecisLength.SHORT]) <= 400
    assert len(texts[PrecisLength.MEDIUM]) <= 1000
    short, medium, long = (len(texts[n]) for n in LENGTHS)
    assert short < medium <= long


@pytest.mark.parametrize("persona_id", PERSONA_IDS)
def test_strongest_value_appears_at_every_length_and_flips_with_the_sign(persona_id: str) -> None:
    profile = get_persona(persona_id).profile
    own, other = _strongest_phrase(profile)
    flipped = profile * -1
    for length in LENGTHS:
        text, text_flipped = write_precis(profile, length), write_precis(flipped, length)
        assert own in text and other not in text
        assert other in text_flipped and own not in text_flipped
        assert text != text_flipped


def test_lengths_cap_the_number_of_values_and_long_mentions_every_counted_one() -> None:
    ids = load_axes().value_ids
    # every axis counts; estimates fall with schema position so the ranking is known
    profile = _profile({a: 2.0 - 0.09 * i for i, a in enumerate(ids)})
    highs = [load_phrases().values[a].high for a in ids]
    mentioned = {n: [h for h in highs if h in write_precis(profile, n)] for n in LENGTHS}
    assert mentioned[PrecisLength.SHORT] == highs[:3]
    assert mentioned[PrecisLength.MEDIUM] == highs[:6]
    assert mentioned[PrecisLength.LONG] == highs


def test_threshold_decides_whether_a_value_counts() -> None:
    care = load_phrases().values["care"]
    below, at = _profile({"care": 0.49}), _profile({"care": -0.5})
    for length in LENGTHS:
        assert care.high not in write_precis(below, length)
        assert "No strong value leanings" in write_precis(below, length)
        assert care.low in write_precis(at, length)


def test_long_groups_by_strength_and_marks_uncertain_values() -> None:
    phrases = load_phrases().values
    profile = _profile({"care": 1.5, "mercy": -0.8, "economic": 0.9}, values_se={"economic": 0.7})
    text = write_precis(profile, PrecisLength.LONG)
    strong, moderate = text.split("Moderately held")
    assert "Strongly held" in strong and phrases["care"].high in strong
    assert phrases["mercy"].low in moderate and phrases["mercy"].when in moderate
    lines = {ln for ln in text.splitlines() if "less certain" in ln}
    assert len(lines) == 1 and phrases["economic"].high in lines.pop()
    assert "manipulate" in text.splitlines()[-1]
    assert "mention" in text.splitlines()[-1]


# -- neutral profile, style, boundaries ----------------------------------------------


@pytest.mark.parametrize("length", LENGTHS)
def test_neutral_profile_claims_no_leanings(length: PrecisLength) -> None:
    text = write_precis(ValueProfile.neutral(), length)
    assert "No strong value leanings" in text
    assert not [p for p in _all_phrases() if p in text]


@pytest.mark.parametrize("length", LENGTHS)
def test_low_verbosity_asks_for_short_answers(length: PrecisLength) -> None:
    verbosity = load_phrases().style["verbosity"]
    text = write_precis(_profile({}, style={"verbosity": -1.5}), length)
    assert verbosity.low in text
    assert verbosity.high not in text


def test_style_thresholds_differ_by_length() -> None:
    humour = load_phrases().style["humour"]
    profile = _profile({}, style={"humour": 0.45, "directness": 0.35})
    direct = load_phrases().style["directness"].high
    assert humour.high not in write_precis(profile, PrecisLength.SHORT)
    assert humour.high in write_precis(profile, PrecisLength.MEDIUM)
    assert direct not in write_precis(profile, PrecisLength.MEDIUM)
    assert direct in write_precis(profile, PrecisLength.LONG)


def test_boundary_instructions_appear_only_when_chosen() -> None:
    axes = load_axes()
    compact = load_phrases().boundaries
    for boundary in axes.boundaries:
        profile = _profile({"care": 1.0}, boundaries=[boundary.id])
        for length in (PrecisLength.MEDIUM, PrecisLength.LONG):
            text = write_precis(profile, length)
            assert boundary.instruction in text
            others = [b.instruction for b in axes.boundaries if b.id != boundary.id]
            assert not [o for o in others if o in text]
        assert compact[boundary.id] in write_precis(profile, PrecisLength.SHORT)


@pytest.mark.parametrize("persona_id", [p.id for p in PERSONAS if p.profile.boundaries])
def test_persona_boundaries_are_all_kept(persona_id: str) -> None:
    profile = get_persona(persona_id).profile
    axes = load_axes()
    for length in (PrecisLength.MEDIUM, PrecisLength.LONG):
        text = write_precis(profile, length)
        for boundary_id in profile.boundaries:
            assert axes.boundary(boundary_id).instruction in text


# -- lengths and phrase data ---------------------------------------------------------


def test_length_accepts_enum_and_string_and_refuses_others() -> None:
    profile = get_persona("tech-optimist").profile
    assert write_precis(profile, "short") == write_precis(profile, PrecisLength.SHORT)
    assert write_precis(profile) == write_precis(profile, PrecisLength.MEDIUM)
    with pytest.raises(ValuetuneError) as info:
        write_precis(profile, "tiny")
    assert "tiny" in str(info.value)
    assert all(n.value in str(info.value) for n in PrecisLength)


def test_phrase_file_covers_every_axis_dimension_and_boundary_with_both_poles() -> None:
    axes, doc = load_axes(), _raw_phrases()
    assert doc["schema"] == axes.version
    assert set(doc["values"]) == set(axes.value_ids)
    assert set(doc["style"]) == set(axes.style_ids)
    assert set(doc["boundaries"]) == set(axes.boundary_ids)
    phrases = load_phrases()
    for axis in axes.value_ids:
        v = phrases.values[axis]
        assert v.high and v.low and v.when.startswith("in ") and v.high != v.low
    for dim in axes.style_ids:
        s = phrases.style[dim]
        assert s.high.endswith(".") and s.low.endswith(".") and s.high != s.low
    assert len(set(_all_phrases())) == len(_all_phrases())
    texts = [*_all_phrases(), *(v.when for v in phrases.values.values())]
    texts += phrases.boundaries.values()
    assert not [t for t in texts if any(ch.isdigit() for ch in t)]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d["values"].pop("care"),
        lambda d: d["values"].__setitem__("hope", {"high": "x", "low": "y", "when": "in z"}),
        lambda d: d["style"].pop("verbosity"),
        lambda d: d["boundaries"].pop("no_flattery"),
        lambda d: d["values"]["mercy"].pop("low"),
        lambda d: d["style"]["humour"].__setitem__("high", "  "),
        lambda d: d.__setitem__("schema", "axes/v2"),
        lambda d: d.pop("values"),
    ],
    ids=[
        "missing-axis",
        "unknown-axis",
        "missing-style",
        "missing-boundary",
        "missing-pole",
        "blank-pole",
        "wrong-schema",
        "no-values",
    ],
)
def test_corrupt_phrase_documents_are_refused(corrupt: Any) -> None:
    doc = copy.deepcopy(_raw_phrases())
    parse_phrases(copy.deepcopy(doc), load_axes())  # the pristine file parses
    corrupt(doc)
    with pytest.raises(SchemaError):
        parse_phrases(doc, load_axes())


def test_module_imports_only_stdlib_and_the_domain() -> None:
    tree = ast.parse(Path(precis_module.__file__).read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    allowed = ("valuetune.values", "valuetune.errors")
    for name in names:
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or name.startswith(allowed), name
