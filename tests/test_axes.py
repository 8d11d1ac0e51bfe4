"""The axes/v1 schema: shape, documentation, prior, and refusal of bad schemas."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from valuetune.errors import SchemaError
from valuetune.values.axes import load_axes, parse_axes

DOCS = Path(__file__).resolve().parents[1] / "docs" / "axes.md"


def _raw() -> dict[str, object]:
    text = resources.files("valuetune.values").joinpath("data", "axes_v1.json").read_text()
    doc: dict[str, object] = json.loads(text)
    return doc


def test_schema_has_three_parts_and_12_to_20_value_axes() -> None:
    axes = load_axes()
    assert axes.version == "axes/v1"
    assert 12 <= len(axes.value_axes) <= 20
    assert {"directness", "formality", "verbosity", "humour", "empathy"} <= set(axes.style_ids)
    assert len(axes.boundaries) >= 8
    assert len(set(axes.dims)) == len(axes.dims)


def test_every_axis_is_documented_with_poles_and_sources() -> None:
    text = DOCS.read_text()
    for axis in load_axes().value_axes:
        section = text.split(f"### `{axis.id}`", 1)
        assert len(section) == 2, f"docs/axes.md has no section for {axis.id}"
        body = section[1].split("\n#", 1)[0]
        assert axis.low.split()[0].lower() in body.lower()
        assert axis.high.split()[0].lower() in body.lower()
        assert "source" in body.lower()


def test_prior_is_a_correlation_matrix_with_the_expected_structure() -> None:
    axes = load_axes()
    cov = axes.prior_covariance()
    assert np.allclose(np.diag(cov), 1.0)
    assert np.allclose(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > 0.1
    i = axes.value_ids.index
    # binding foundations and religiosity move together; social progressivism opposes them
    assert cov[i("authority"), i("religiosity")] > 0.3
    assert cov[i("social"), i("religiosity")] < -0.3
    assert cov[i("economic"), i("equality")] < -0.3
    # style is independent of values
    n = len(axes.value_axes)
    assert np.allclose(cov[:n, n:], 0.0)


def test_newer_schema_is_refused_with_an_upgrade_hint() -> None:
    doc = _raw()
    doc["schema"] = "axes/v2"
    with pytest.raises(SchemaError, match=r"newer.*upgrade"):
        parse_axes(doc)


@pytest.mark.parametrize("version", ["axes/vX", "ax/v1", None, 3])
def test_unknown_schema_version_is_refused(version: object) -> None:
    doc = _raw()
    doc["schema"] = version
    with pytest.raises(SchemaError):
        parse_axes(doc)


def test_corrupt_schema_is_refused() -> None:
    doc = copy.deepcopy(_raw())
    del doc["value_axes"][0]["high"]  # type: ignore[index]
    with pytest.raises(SchemaError, match="corrupt"):
        parse_axes(doc)
    doc = _raw()
    doc["value_axes"][1]["id"] = doc["value_axes"][0]["id"]  # type: ignore[index]
    with pytest.raises(SchemaError, match="repeats"):
        parse_axes(doc)
    with pytest.raises(SchemaError):
        parse_axes([1, 2, 3])
