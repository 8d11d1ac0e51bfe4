"""ValueProfile: canonical JSON round trips, arithmetic, similarity, refusal of bad input."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valuetune.errors import SchemaError
from valuetune.values.axes import load_axes
from valuetune.values.profile import PRECISION, ValueProfile

AXES = load_axes()
N_VALUES, N_STYLE = len(AXES.value_axes), len(AXES.style)
finite = st.floats(min_value=-4.0, max_value=4.0, allow_nan=False)
positive = st.floats(min_value=0.0, max_value=4.0, allow_nan=False)


@st.composite
def profiles(draw: st.DrawFn) -> ValueProfile:
    return ValueProfile(
        schema="axes/v1",
        values=tuple(draw(finite) for _ in range(N_VALUES)),
        values_se=tuple(draw(positive) for _ in range(N_VALUES)),
        style=tuple(draw(finite) for _ in range(N_STYLE)),
        style_se=tuple(draw(positive) for _ in range(N_STYLE)),
        boundaries=frozenset(draw(st.sets(st.sampled_from(AXES.boundary_ids)))),
    )


@given(profiles())
def test_canonical_json_round_trips_exactly(profile: ValueProfile) -> None:
    text = profile.to_json()
    again = ValueProfile.from_json(text)
    assert again == profile
    assert again.to_json() == text


@given(profiles())
def test_canonical_json_is_sorted_compact_and_fixed_precision(profile: ValueProfile) -> None:
    text = profile.to_json()
    assert " " not in text.replace("axes/v1", "")
    doc = json.loads(text)
    assert list(doc) == sorted(doc)
    assert list(doc["values"]) == sorted(doc["values"])
    # every number carries exactly PRECISION decimals
    for entry in doc["values"].values():
        for key in ("est", "se"):
            assert f'"{key}":' in text
            assert round(entry[key], PRECISION) == entry[key]
    assert f"{profile.values[0]:.{PRECISION}f}".replace("-0.000", "0.000") in text


def test_construction_rounds_clips_and_normalises() -> None:
    p = ValueProfile.from_mappings({a: 9.0 for a in AXES.value_ids}, {"humour": -0.00001})
    assert p.values == (4.0,) * N_VALUES
    assert p.style_value("humour") == 0.0
    assert math.copysign(1.0, p.style_value("humour")) == 1.0  # no negative zero


@given(profiles(), profiles())
def test_arithmetic_is_vector_arithmetic(a: ValueProfile, b: ValueProfile) -> None:
    total = a + b
    for i in range(N_VALUES):
        assert total.values[i] == pytest.approx(
            max(-4, min(4, a.values[i] + b.values[i])), abs=2e-3
        )
    assert total.boundaries == a.boundaries | b.boundaries
    assert (a - a).values == (0.0,) * N_VALUES
    assert (a * 2.0).values == tuple(round(max(-4, min(4, v * 2.0)), PRECISION) for v in a.values)
    half = a / 2
    assert half.values_se == tuple(round(s / 2, PRECISION) for s in a.values_se) or all(
        abs(x - s / 2) <= 1e-3 for x, s in zip(half.values_se, a.values_se, strict=True)
    )


def test_distance_and_similarity() -> None:
    ones = ValueProfile.from_mappings({a: 1.0 for a in AXES.value_ids})
    minus = ones * -1.0
    zero = ValueProfile.neutral()
    assert ones.similarity(ones) == pytest.approx(1.0)
    assert ones.similarity(minus) == pytest.approx(-1.0)
    assert ones.similarity(zero) == 0.0
    assert ones.distance(minus) == pytest.approx(2.0 * math.sqrt(N_VALUES))
    assert ones.distance(ones) == 0.0


def test_mean_is_the_centroid() -> None:
    a = ValueProfile.from_mappings({x: 1.0 for x in AXES.value_ids}, boundaries=["no_profanity"])
    b = ValueProfile.from_mappings({x: -0.5 for x in AXES.value_ids}, boundaries=["no_flattery"])
    m = ValueProfile.mean([a, b])
    assert m.values == (0.25,) * N_VALUES
    assert m.boundaries == {"no_profanity", "no_flattery"}


def test_profiles_are_immutable_and_hashable() -> None:
    p = ValueProfile.neutral()
    with pytest.raises(AttributeError):
        p.values = ()  # type: ignore[misc]
    assert {p: 1}[ValueProfile.neutral()] == 1


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema="axes/v9"), "newer"),
        (lambda d: d["values"].pop("care"), "lacks"),
        (lambda d: d["values"].update(bogus={"est": 0, "se": 0}), "unknown value axes"),
        (lambda d: d["values"]["care"].update(est="high"), "malformed"),
        (lambda d: d.update(boundaries=["no_such_boundary"]), "unknown boundaries"),
        (lambda d: d["values"]["care"].update(est=float("nan")), "finite"),
    ],
)
def test_bad_profile_documents_are_refused(mutate: object, message: str) -> None:
    doc = ValueProfile.neutral().to_dict()
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(SchemaError, match=message):
        ValueProfile.from_dict(doc)


def test_invalid_json_is_refused() -> None:
    with pytest.raises(SchemaError, match="not valid JSON"):
        ValueProfile.from_json("{not json")


def test_mixing_schemas_is_refused_and_strongest_ranks_by_magnitude() -> None:
    p = ValueProfile.from_mappings({a: 0.1 for a in AXES.value_ids} | {"mercy": -2.0, "care": 1.5})
    assert [a for a, _ in p.strongest(2)] == ["mercy", "care"]
