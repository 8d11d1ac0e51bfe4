"""The versioned axes schema: value axes, interaction-style dimensions and boundaries.

The schema is data (`data/axes_v1.json`); this module parses and checks it. Value and
style dimensions together form the latent space the IRT engine estimates; boundaries
are stated directly, not inferred.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray

from valuetune.errors import SchemaError

CURRENT_SCHEMA = "axes/v1"
SUPPORTED_SCHEMAS = ("axes/v1",)


@dataclass(frozen=True)
class ValueAxis:
    """A bipolar value axis; positive estimates lean toward `high`."""

    id: str
    name: str
    low: str
    high: str
    meaning: str
    factors: tuple[float, ...]


@dataclass(frozen=True)
class StyleDimension:
    """A bipolar interaction-style preference (how a person wants to be spoken to)."""

    id: str
    name: str
    low: str
    high: str
    meaning: str


@dataclass(frozen=True)
class Boundary:
    """Something a person may not want from an AI, with the instruction that honours it."""

    id: str
    name: str
    instruction: str


@dataclass(frozen=True)
class AxesSchema:
    """One version of the value model."""

    version: str
    value_axes: tuple[ValueAxis, ...]
    style: tuple[StyleDimension, ...]
    boundaries: tuple[Boundary, ...]

    @property
    def value_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.value_axes)

    @property
    def style_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.style)

    @property
    def boundary_ids(self) -> tuple[str, ...]:
        return tuple(b.id for b in self.boundaries)

    @property
    def dims(self) -> tuple[str, ...]:
        """The latent dimensions in engine order: value axes, then style dimensions."""
        return self.value_ids + self.style_ids

    def dim_index(self, dim: str) -> int:
        try:
            return self.dims.index(dim)
        except ValueError:
            raise SchemaError(f"{dim!r} is not a dimension of {self.version}") from None

    def axis(self, axis_id: str) -> ValueAxis:
        for axis in self.value_axes:
            if axis.id == axis_id:
                return axis
        raise SchemaError(f"{axis_id!r} is not a value axis of {self.version}")

    def style_dimension(self, dim_id: str) -> StyleDimension:
        for dim in self.style:
            if dim.id == dim_id:
                return dim
        raise SchemaError(f"{dim_id!r} is not a style dimension of {self.version}")

    def boundary(self, boundary_id: str) -> Boundary:
        for boundary in self.boundaries:
            if boundary.id == boundary_id:
                return boundary
        raise SchemaError(f"{boundary_id!r} is not a boundary of {self.version}")

    def prior_covariance(self) -> NDArray[np.float64]:
        """Population prior over `dims`: a two-factor model for values, independent style.

        Value axes covary in populations (binding foundations, conservation values and
        religiosity move together; so do equality, care and economic-left positions).
        Sigma = L L^T + diag(1 - communalities) keeps unit variances, so estimates stay
        on the standardised scale while an answer on one axis informs the related ones.
        """
        loadings = np.array([a.factors for a in self.value_axes], dtype=np.float64)
        shared = loadings @ loadings.T
        value_cov = shared + np.diag(1.0 - np.diag(shared))
        n_values, n_style = len(self.value_axes), len(self.style)
        cov = np.eye(n_values + n_style)
        cov[:n_values, :n_values] = value_cov
        return cov


def check_schema_version(version: object) -> str:
    """Refuse a schema version this valuetune cannot read, saying why."""
    if not isinstance(version, str) or not version.startswith("axes/v"):
        raise SchemaError(f"not a valuetune axes schema version: {version!r}")
    if version not in SUPPORTED_SCHEMAS:
        try:
            newer = int(version.removeprefix("axes/v")) > int(CURRENT_SCHEMA.removeprefix("axes/v"))
        except ValueError:
            raise SchemaError(f"not a valuetune axes schema version: {version!r}") from None
        if newer:
            raise SchemaError(
                f"{version} is newer than this valuetune supports "
                f"({', '.join(SUPPORTED_SCHEMAS)}); upgrade valuetune to read it"
            )
        raise SchemaError(f"{version} is not supported (supported: {', '.join(SUPPORTED_SCHEMAS)})")
    return version


def parse_axes(doc: Any) -> AxesSchema:
    """Build an `AxesSchema` from its JSON document, refusing corrupt or unknown ones."""
    if not isinstance(doc, dict):
        raise SchemaError("axes schema must be a JSON object")
    version = check_schema_version(doc.get("schema"))
    try:
        factor_count = len(doc["factors"])
        value_axes = tuple(
            ValueAxis(
                id=str(a["id"]),
                name=str(a["name"]),
                low=str(a["low"]),
                high=str(a["high"]),
                meaning=str(a["meaning"]),
                factors=tuple(float(f) for f in a["factors"]),
            )
            for a in doc["value_axes"]
        )
        style = tuple(
            StyleDimension(
                id=str(s["id"]),
                name=str(s["name"]),
                low=str(s["low"]),
                high=str(s["high"]),
                meaning=str(s["meaning"]),
            )
            for s in doc["style"]
        )
        boundaries = tuple(
            Boundary(id=str(b["id"]), name=str(b["name"]), instruction=str(b["instruction"]))
            for b in doc["boundaries"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"axes schema {version} is corrupt: {exc!r}") from None
    ids = [a.id for a in value_axes] + [s.id for s in style] + [b.id for b in boundaries]
    if len(set(ids)) != len(ids):
        raise SchemaError(f"axes schema {version} repeats an id")
    for axis in value_axes:
        if len(axis.factors) != factor_count:
            raise SchemaError(f"axis {axis.id!r} needs {factor_count} factor loadings")
        if sum(f * f for f in axis.factors) >= 1.0:
            raise SchemaError(f"axis {axis.id!r}: factor loadings must explain < 100% variance")
    return AxesSchema(version=version, value_axes=value_axes, style=style, boundaries=boundaries)


@cache
def load_axes(version: str = CURRENT_SCHEMA) -> AxesSchema:
    """The built-in schema for `version` (read once; the schema is immutable data)."""
    check_schema_version(version)
    name = version.replace("/", "_") + ".json"
    text = resources.files("valuetune.values").joinpath("data", name).read_text("utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"built-in {name} is not valid JSON: {exc}") from None
    return parse_axes(doc)
