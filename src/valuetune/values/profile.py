"""`ValueProfile`: an immutable value object for one person's measured values.

A profile holds, per value axis and per style dimension, an estimate on the latent scale
and its standard error, plus the set of boundaries the person chose, under one schema
version. Numbers are rounded to `PRECISION` decimals on construction, so the canonical
JSON form round-trips exactly: `ValueProfile.from_json(p.to_json()) == p`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from valuetune.canonical import canonical_json
from valuetune.errors import SchemaError
from valuetune.values.axes import AxesSchema, check_schema_version, load_axes

PRECISION = 3
ESTIMATE_LIMIT = 4.0
PRIOR_SE = 1.0


def _clean(x: float, lo: float, hi: float) -> float:
    if not math.isfinite(x):
        raise SchemaError(f"profile numbers must be finite, got {x!r}")
    value = round(min(max(float(x), lo), hi), PRECISION)
    return 0.0 if value == 0.0 else value  # no negative zero


@dataclass(frozen=True)
class ValueProfile:
    """Per-axis estimates and standard errors, style preferences and boundaries."""

    schema: str
    values: tuple[float, ...]
    values_se: tuple[float, ...]
    style: tuple[float, ...]
    style_se: tuple[float, ...]
    boundaries: frozenset[str]

    def __post_init__(self) -> None:
        axes = load_axes(check_schema_version(self.schema))
        n_values, n_style = len(axes.value_axes), len(axes.style)
        if not (len(self.values) == len(self.values_se) == n_values):
            raise SchemaError(f"{self.schema} profiles have {n_values} value axes")
        if not (len(self.style) == len(self.style_se) == n_style):
            raise SchemaError(f"{self.schema} profiles have {n_style} style dimensions")
        unknown = set(self.boundaries) - set(axes.boundary_ids)
        if unknown:
            raise SchemaError(f"unknown boundaries for {self.schema}: {sorted(unknown)}")
        lim = ESTIMATE_LIMIT
        set_ = object.__setattr__
        set_(self, "values", tuple(_clean(v, -lim, lim) for v in self.values))
        set_(self, "style", tuple(_clean(v, -lim, lim) for v in self.style))
        set_(self, "values_se", tuple(_clean(v, 0.0, lim) for v in self.values_se))
        set_(self, "style_se", tuple(_clean(v, 0.0, lim) for v in self.style_se))
        set_(self, "boundaries", frozenset(self.boundaries))

    # -- construction --------------------------------------------------------------

    @classmethod
    def from_mappings(
        cls,
        values: Mapping[str, float],
        style: Mapping[str, float] | None = None,
        boundaries: Iterable[str] = (),
        *,
        values_se: Mapping[str, float] | None = None,
        style_se: Mapping[str, float] | None = None,
        schema: str = "axes/v1",
    ) -> ValueProfile:
        """Build from axis-id mappings; missing style dims are 0, missing SEs are 0."""
        axes = load_axes(check_schema_version(schema))
        _refuse_unknown(values, axes.value_ids, "value axes")
        _refuse_unknown(style or {}, axes.style_ids, "style dimensions")
        missing = [a for a in axes.value_ids if a not in values]
        if missing:
            raise SchemaError(f"profile lacks value axes: {missing}")
        style, values_se, style_se = style or {}, values_se or {}, style_se or {}
        return cls(
            schema=schema,
            values=tuple(float(values[a]) for a in axes.value_ids),
            values_se=tuple(float(values_se.get(a, 0.0)) for a in axes.value_ids),
            style=tuple(float(style.get(s, 0.0)) for s in axes.style_ids),
            style_se=tuple(float(style_se.get(s, 0.0)) for s in axes.style_ids),
            boundaries=frozenset(boundaries),
        )

    @classmethod
    def neutral(cls, schema: str = "axes/v1") -> ValueProfile:
        """The population centre with prior uncertainty: what we know before any answer."""
        axes = load_axes(schema)
        nv, ns = len(axes.value_axes), len(axes.style)
        return cls(
            schema, (0.0,) * nv, (PRIOR_SE,) * nv, (0.0,) * ns, (PRIOR_SE,) * ns, frozenset()
        )

    # -- views ---------------------------------------------------------------------

    @property
    def axes(self) -> AxesSchema:
        return load_axes(self.schema)

    @property
    def vector(self) -> NDArray[np.float64]:
        """The value-axis estimates as a numpy vector (schema order)."""
        return np.array(self.values, dtype=np.float64)

    def value(self, axis_id: str) -> float:
        return self.values[self.axes.value_ids.index(self.axes.axis(axis_id).id)]

    def value_se(self, axis_id: str) -> float:
        return self.values_se[self.axes.value_ids.index(self.axes.axis(axis_id).id)]

    def style_value(self, dim_id: str) -> float:
        return self.style[self.axes.style_ids.index(self.axes.style_dimension(dim_id).id)]

    def strongest(self, n: int = 3) -> list[tuple[str, float]]:
        """The `n` value axes furthest from the centre, as (axis id, estimate)."""
        ranked = sorted(
            zip(self.axes.value_ids, self.values, strict=True), key=lambda p: -abs(p[1])
        )
        return ranked[:n]

    # -- arithmetic ----------------------------------------------------------------
    # Estimates combine as vectors; standard errors propagate as for independent
    # Gaussian errors; boundaries are a set: `+` takes the union, other operators keep
    # the left operand's.

    def _check_same_schema(self, other: ValueProfile) -> None:
        if other.schema != self.schema:
            raise SchemaError(f"cannot combine {self.schema} and {other.schema} profiles")

    def __add__(self, other: ValueProfile) -> ValueProfile:
        if not isinstance(other, ValueProfile):
            return NotImplemented
        self._check_same_schema(other)
        return ValueProfile(
            self.schema,
            tuple(a + b for a, b in zip(self.values, other.values, strict=True)),
            tuple(math.hypot(a, b) for a, b in zip(self.values_se, other.values_se, strict=True)),
            tuple(a + b for a, b in zip(self.style, other.style, strict=True)),
            tuple(math.hypot(a, b) for a, b in zip(self.style_se, other.style_se, strict=True)),
            self.boundaries | other.boundaries,
        )

    def __neg__(self) -> ValueProfile:
        return self * -1.0

    def __sub__(self, other: ValueProfile) -> ValueProfile:
        if not isinstance(other, ValueProfile):
            return NotImplemented
        return (self + (-other)).with_boundaries(self.boundaries)

    def __mul__(self, k: float) -> ValueProfile:
        if not isinstance(k, int | float):
            return NotImplemented
        return ValueProfile(
            self.schema,
            tuple(v * k for v in self.values),
            tuple(s * abs(k) for s in self.values_se),
            tuple(v * k for v in self.style),
            tuple(s * abs(k) for s in self.style_se),
            self.boundaries,
        )

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> ValueProfile:
        if not isinstance(k, int | float):
            return NotImplemented
        if k == 0:
            raise ZeroDivisionError("cannot divide a profile by zero")
        return self * (1.0 / k)

    def with_boundaries(self, boundaries: Iterable[str]) -> ValueProfile:
        return ValueProfile(
            self.schema,
            self.values,
            self.values_se,
            self.style,
            self.style_se,
            frozenset(boundaries),
        )

    @classmethod
    def mean(cls, profiles: Iterable[ValueProfile]) -> ValueProfile:
        """The centroid of several profiles (standard error of the mean estimate)."""
        items = list(profiles)
        if not items:
            raise ValueError("mean of no profiles")
        total = items[0]
        for p in items[1:]:
            total = total + p
        return (total / len(items)).with_boundaries(
            frozenset().union(*(p.boundaries for p in items))
        )

    # -- comparison ----------------------------------------------------------------

    def distance(self, other: ValueProfile) -> float:
        """Euclidean distance between value-axis estimates."""
        self._check_same_schema(other)
        return float(np.linalg.norm(self.vector - other.vector))

    def similarity(self, other: ValueProfile) -> float:
        """Cosine similarity of value-axis estimates, in [-1, 1] (0 if either is centred)."""
        self._check_same_schema(other)
        a, b = self.vector, other.vector
        norm = float(np.linalg.norm(a) * np.linalg.norm(b))
        return 0.0 if norm == 0.0 else float(a @ b) / norm

    # -- canonical JSON ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        axes = self.axes
        return {
            "schema": self.schema,
            "values": {
                a: {"est": v, "se": s}
                for a, v, s in zip(axes.value_ids, self.values, self.values_se, strict=True)
            },
            "style": {
                d: {"est": v, "se": s}
                for d, v, s in zip(axes.style_ids, self.style, self.style_se, strict=True)
            },
            "boundaries": sorted(self.boundaries),
        }

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, compact, `PRECISION` decimals."""
        return canonical_json(self.to_dict(), precision=PRECISION)

    @classmethod
    def from_dict(cls, doc: Any) -> ValueProfile:
        if not isinstance(doc, dict):
            raise SchemaError("a profile must be a JSON object")
        schema = check_schema_version(doc.get("schema"))
        try:
            values = {k: float(v["est"]) for k, v in doc["values"].items()}
            values_se = {k: float(v["se"]) for k, v in doc["values"].items()}
            style = {k: float(v["est"]) for k, v in doc.get("style", {}).items()}
            style_se = {k: float(v["se"]) for k, v in doc.get("style", {}).items()}
            boundaries = [str(b) for b in doc.get("boundaries", [])]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(f"profile document is malformed: {exc!r}") from None
        return cls.from_mappings(
            values, style, boundaries, values_se=values_se, style_se=style_se, schema=schema
        )

    @classmethod
    def from_json(cls, text: str) -> ValueProfile:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"profile is not valid JSON: {exc}") from None
        return cls.from_dict(doc)


def _refuse_unknown(mapping: Mapping[str, float], known: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise SchemaError(f"unknown {what}: {unknown}")
