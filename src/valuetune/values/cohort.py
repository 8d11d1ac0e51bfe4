"""Statistics over many respondents for the admin dashboard: pure functions of plain data.

Four views, each a frozen dataclass a template can draw without further arithmetic:
completion (`completion_stats`), per-axis histograms (`axis_distributions`), a 2-D map of
respondents among the exemplar personas (`cluster_map`), and demographic coverage with
small cells suppressed (`demographic_coverage`). Nothing here touches a database: the
caller loads the rows and passes them in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from valuetune.errors import SchemaError
from valuetune.values.axes import AxesSchema
from valuetune.values.personas import Persona, load_personas, nearest_personas
from valuetune.values.profile import ESTIMATE_LIMIT, ValueProfile

SUPPRESS_AT_MOST = 10
"""Counts from 1 to this many people are never shown."""
NOT_STATED = "not stated"
"""The cell for a field left unanswered or answered "prefer not to say"."""
_NOT_STATED_ANSWERS = frozenset({"", "prefer not to say", "prefer_not"})
_SPREAD_TOL = 1e-9  # profiles are rounded to 1e-3, so real spread is far above this


# -- completion ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CompletionStats:
    """How many started, how many finished, and how long finishing took."""

    respondents: int
    completed: int
    completion_rate: float | None
    """completed / respondents; None with no respondents (0 of 0 is no rate)."""
    median_minutes: float | None
    """Median minutes from start to completion; None when nobody completed."""


def completion_stats(timelines: Sequence[tuple[datetime, datetime | None]]) -> CompletionStats:
    """Completion figures from (created_at, completed_at or None) per respondent."""
    durations = []
    for created, completed in timelines:
        if completed is None:
            continue
        minutes = (completed - created).total_seconds() / 60.0
        if minutes < 0:
            raise ValueError(
                f"a respondent completed ({completed.isoformat()}) before starting "
                f"({created.isoformat()}); check the stored timestamps and their time zones"
            )
        durations.append(minutes)
    n = len(timelines)
    return CompletionStats(
        respondents=n,
        completed=len(durations),
        completion_rate=len(durations) / n if n else None,
        median_minutes=float(np.median(durations)) if durations else None,
    )


# -- distributions ------------------------------------------------------------------------


@dataclass(frozen=True)
class HistogramBin:
    lo: float
    hi: float
    count: int


@dataclass(frozen=True)
class AxisDistribution:
    """The spread of one dimension's posterior means over the cohort."""

    id: str
    name: str
    low: str
    high: str
    bins: tuple[HistogramBin, ...]
    n: int
    mean: float | None
    """None with no profiles."""
    sd: float | None
    """Sample SD (n - 1 in the denominator); None with fewer than two profiles."""

    @property
    def peak(self) -> int:
        """The largest bin count, to scale bars by."""
        return max((b.count for b in self.bins), default=0)


@dataclass(frozen=True)
class CohortDistributions:
    values: tuple[AxisDistribution, ...]
    style: tuple[AxisDistribution, ...]


def axis_distributions(
    profiles: Sequence[ValueProfile], axes: AxesSchema, bins: int = 10
) -> CohortDistributions:
    """Per value axis and style dimension: a histogram of estimates, their mean and SD.

    The bins split the whole scale a profile can hold, [-ESTIMATE_LIMIT, ESTIMATE_LIMIT]
    (profiles clip their estimates to it), into `bins` equal parts, the last closed on
    the right; so every profile lands in exactly one bin per dimension and the bins are
    the same for every cohort, which keeps dashboards comparable.
    """
    if bins < 1:
        raise ValueError("a histogram needs at least one bin")
    for p in profiles:
        if p.schema != axes.version:
            raise SchemaError(f"a {p.schema} profile cannot be summarised under {axes.version}")
    edges = np.linspace(-ESTIMATE_LIMIT, ESTIMATE_LIMIT, bins + 1)
    values = np.array([p.values for p in profiles]).reshape(len(profiles), len(axes.value_axes))
    style = np.array([p.style for p in profiles]).reshape(len(profiles), len(axes.style))
    return CohortDistributions(
        values=tuple(
            _distribution(a.id, a.name, a.low, a.high, values[:, j], edges)
            for j, a in enumerate(axes.value_axes)
        ),
        style=tuple(
            _distribution(s.id, s.name, s.low, s.high, style[:, j], edges)
            for j, s in enumerate(axes.style)
        ),
    )


def _distribution(
    id_: str, name: str, low: str, high: str, x: NDArray[np.float64], edges: NDArray[np.float64]
) -> AxisDistribution:
    counts, _ = np.histogram(x, bins=edges)
    return AxisDistribution(
        id=id_,
        name=name,
        low=low,
        high=high,
        bins=tuple(
            HistogramBin(float(lo), float(hi), int(c))
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ),
        n=len(x),
        mean=float(x.mean()) if len(x) else None,
        sd=float(x.std(ddof=1)) if len(x) > 1 else None,
    )


# -- cluster map --------------------------------------------------------------------------


@dataclass(frozen=True)
class MapPoint:
    """One respondent on the map, with the persona nearest in the full value space."""

    respondent_id: str
    x: float
    y: float
    nearest_persona: str | None
    persona_distance: float | None


@dataclass(frozen=True)
class PersonaPoint:
    persona_id: str
    name: str
    x: float
    y: float


@dataclass(frozen=True)
class ClusterMap:
    """Respondents and personas in the plane of the respondents' first two components.

    Coordinates are in [0, 1] with one scale for both axes (distances on the map are
    proportional to distances in the plane); y grows upward, so an SVG draws 1 - y.
    `components` says how many of the two axes carry spread: 0 with fewer than two
    distinct respondents (no plane: respondents sit at the centre and no persona is
    placed, since every persona would too), 1 when all respondents lie on one line
    (everything has y = 0.5), else 2.
    """

    points: tuple[MapPoint, ...]
    personas: tuple[PersonaPoint, ...]
    explained_variance: tuple[float, float]
    """Share of the respondents' total variance along each axis (0 for an absent axis)."""
    components: int


def cluster_map(
    profiles: Mapping[str, ValueProfile], personas: Sequence[Persona] | None = None
) -> ClusterMap:
    """PCA map of respondents' value vectors, with the personas projected into the plane.

    The plane is fitted to the respondents alone (centred on their mean, by SVD), so the
    personas show where the cohort sits among them rather than bending the axes. Signs
    are fixed so the largest-magnitude loading of each component is positive: the same
    cohort always draws the same way round. Each respondent's nearest persona is measured
    in the full value space (`nearest_personas`), not on the map.
    """
    ids = list(profiles)
    if not ids:
        return ClusterMap((), (), (0.0, 0.0), 0)
    schemas = {p.schema for p in profiles.values()}
    if len(schemas) > 1:
        raise SchemaError(f"cannot map profiles of different schemas: {sorted(schemas)}")
    pool = tuple(personas) if personas is not None else load_personas(schemas.pop())

    x = np.array([profiles[i].vector for i in ids])
    centre = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - centre, full_matrices=False)
    present = [k for k in range(min(2, len(s))) if s[k] > _SPREAD_TOL]
    basis = np.zeros((2, x.shape[1]))  # absent components stay zero: coordinate 0
    for k in present:
        v = vt[k]
        basis[k] = v if v[int(np.argmax(np.abs(v)))] > 0 else -v
    total = float(s @ s)
    explained = tuple(float(s[k] ** 2) / total if k in present else 0.0 for k in range(2))

    shown = pool if present else ()
    plane = (x - centre) @ basis.T  # (respondents, 2)
    persona_x = np.array([p.profile.vector for p in shown]) if shown else x[:0]
    persona_plane = (persona_x - centre) @ basis.T
    unit = _unit_square(np.vstack([plane, persona_plane]))

    points = []
    for row, rid in enumerate(ids):
        nearest = nearest_personas(profiles[rid], 1, pool) if pool else []
        points.append(
            MapPoint(
                rid,
                float(unit[row, 0]),
                float(unit[row, 1]),
                nearest[0][0].id if nearest else None,
                nearest[0][1] if nearest else None,
            )
        )
    placed = tuple(
        PersonaPoint(p.id, p.name, float(unit[len(ids) + j, 0]), float(unit[len(ids) + j, 1]))
        for j, p in enumerate(shown)
    )
    return ClusterMap(tuple(points), placed, (explained[0], explained[1]), len(present))


def _unit_square(xy: NDArray[np.float64]) -> NDArray[np.float64]:
    """Scale points into [0, 1]^2 with one factor for both axes, centred on each axis."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float(np.max(hi - lo))
    if span <= _SPREAD_TOL:
        return np.full_like(xy, 0.5)
    return np.asarray(np.clip((xy - (lo + hi) / 2.0) / span + 0.5, 0.0, 1.0), dtype=np.float64)


# -- demographic coverage -----------------------------------------------------------------


@dataclass(frozen=True)
class CoverageCell:
    """One category's count; `count` is None exactly when `suppressed`."""

    category: str
    count: int | None
    suppressed: bool


@dataclass(frozen=True)
class FieldCoverage:
    field: str
    cells: tuple[CoverageCell, ...]
    total: int | None
    """Records counted; None only when the field has a single cell that is suppressed."""


def demographic_coverage(
    records: Sequence[Mapping[str, str | None]], fields: Mapping[str, Sequence[str]]
) -> tuple[FieldCoverage, ...]:
    """Per field, respondents per category plus `NOT_STATED`, with small counts suppressed.

    `fields` maps each field to its declared categories in display order. Every declared
    category gets a cell even at 0, so a cell's presence says nothing about whether
    anyone chose it; a value outside the declared list is refused rather than shown as a
    new cell. A missing key, None, "" and "prefer not to say" count as not stated.

    Suppression (see `suppressed_cells`) assumes the reader knows the field total, which
    the dashboard shows anyway as the number of respondents.
    """
    out = []
    for field, declared in fields.items():
        categories = [str(c) for c in declared]
        if NOT_STATED in categories or len(set(categories)) != len(categories):
            raise ValueError(f"categories of {field!r} repeat a name or use {NOT_STATED!r}")
        counts = dict.fromkeys([*categories, NOT_STATED], 0)
        for n, record in enumerate(records):
            value = record.get(field)
            if value is None or value.strip().casefold() in _NOT_STATED_ANSWERS:
                counts[NOT_STATED] += 1
            elif value in counts:
                counts[value] += 1
            else:
                raise ValueError(
                    f"record {n}: {field} {value!r} is not a declared category "
                    f"({', '.join(categories)}); declare it or correct the record"
                )
        hidden = suppressed_cells(list(counts.values()))
        cells = tuple(
            CoverageCell(c, None if i in hidden else n, i in hidden)
            for i, (c, n) in enumerate(counts.items())
        )
        single = len(cells) == 1 and bool(hidden)
        out.append(FieldCoverage(field, cells, None if single else len(records)))
    return tuple(out)


def suppressed_cells(counts: Sequence[int]) -> frozenset[int]:
    """Indices of the cells of one field to hide, so that no count of 1-10 can be worked out.

    Rule: if any cell counts 1 to `SUPPRESS_AT_MOST` people, let T be the larger of
    `SUPPRESS_AT_MOST` and the second-smallest count, and hide every cell counting at
    most T. If every hidden cell then holds exactly T, raise T to the next count up and
    repeat. Without a small cell nothing is hidden and zeros show as 0.

    Why each part, against a reader who knows the total and this very rule:
    - the second-smallest count: one small cell is never hidden alone, else total minus
      the shown cells gives it; with one small cell this is the usual complementary
      suppression of the next-smallest cell.
    - zeros hidden too (when a small cell exists): two hidden cells summing to 2 would
      otherwise both be 1, since a hidden cell would be known to be at least 1.
    - ties hidden together: picking one of two equal cells by name lets a reader rule
      out the alternatives the rule would have treated differently.
    - raising T past an all-equal group: two hidden tens next to a shown 11 add to 20
      and could each only be 10.
    tests/test_cohort.py checks by brute force over many tables that every hidden cell
    keeps at least two values consistent with what is shown.
    """
    if not any(1 <= c <= SUPPRESS_AT_MOST for c in counts):
        return frozenset()
    ordered = sorted(counts)
    cap = max(SUPPRESS_AT_MOST, ordered[1]) if len(ordered) > 1 else ordered[0]
    hidden = [i for i, c in enumerate(counts) if c <= cap]
    while len(hidden) < len(counts) and all(counts[i] == cap for i in hidden):
        cap = min(c for c in counts if c > cap)
        hidden = [i for i, c in enumerate(counts) if c <= cap]
    return frozenset(hidden)
