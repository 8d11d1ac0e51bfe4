"""The dashboard's figures: loaded from the stores, summarised by `values.cohort` and
`values.quality`, and laid out for drawing (SVG coordinates computed here, so templates
only place them). Excluded respondents are left out of every figure but their count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from valuetune.store.demographics import DemographicsStore
from valuetune.store.survey import RespondentSummary, SurveyStore
from valuetune.values.clusters import cluster_profiles
from valuetune.values.cohort import (
    NOT_STATED,
    CompletionStats,
    axis_distributions,
    cluster_map,
    completion_stats,
    demographic_coverage,
)
from valuetune.values.demographics import DEMOGRAPHIC_FIELDS, PLACEMENT_AXES, PLACEMENT_MAX
from valuetune.values.items import ItemBank
from valuetune.values.personas import load_personas
from valuetune.values.quality import assess_quality

MAX_QUALITY_ROWS = 500
"""Respondents listed under quality flags (flagged ones first)."""


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class AxisPanel:
    name: str
    low: str
    high: str
    mean: float
    sd: float | None
    """None with fewer than two respondents."""
    counts: tuple[int, ...]
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Point:
    """A place on the map, 0..100 each way (y down, as SVG draws)."""

    x: float
    y: float
    name: str = ""
    group: int = 0
    """The respondent's cluster (0 = the largest), for its colour."""


@dataclass(frozen=True)
class Group:
    size: int
    persona: str
    """The exemplar persona nearest the group's centre."""


@dataclass(frozen=True)
class MapPanel:
    points: tuple[Point, ...]
    """One per respondent (unnamed)."""
    personas: tuple[Point, ...]
    groups: tuple[Group, ...]
    """Clusters of respondents (k-means, k by silhouette), largest first."""
    caption: str


@dataclass(frozen=True)
class CoverageTable:
    title: str
    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class QualityRow:
    id: str
    short: str
    flags: tuple[tuple[str, str], ...]
    excluded: str | None

    @property
    def flag_names(self) -> str:
        return ", ".join(f for f, _ in self.flags)


@dataclass(frozen=True)
class Dashboard:
    completion: CompletionStats
    excluded: int
    axes: tuple[AxisPanel, ...]
    map: MapPanel | None
    coverage: tuple[CoverageTable, ...]
    quality: tuple[QualityRow, ...]

    @property
    def completion_rate(self) -> str:
        return _rate(self.completion)

    @property
    def median_minutes(self) -> str:
        return _minutes(self.completion)


def _rate(stats: CompletionStats) -> str:
    return "–" if stats.completion_rate is None else f"{stats.completion_rate:.0%}"


def _minutes(stats: CompletionStats) -> str:
    return "–" if stats.median_minutes is None else f"{stats.median_minutes:.1f} min"


def _included(everyone: list[RespondentSummary]) -> tuple[list[RespondentSummary], int]:
    included = [r for r in everyone if not r.excluded]
    return included, len(everyone) - len(included)


def live_figures(survey: SurveyStore) -> dict[str, str | int]:
    """The headline figures the dashboard refreshes while open."""
    included, excluded = _included(survey.respondents())
    stats = completion_stats([(r.created_at, r.completed_at) for r in included])
    return {
        "respondents": stats.respondents,
        "completed": stats.completed,
        "completion_rate": _rate(stats),
        "median_minutes": _minutes(stats),
        "excluded": excluded,
    }


def build_dashboard(
    survey: SurveyStore, demographics: DemographicsStore, bank: ItemBank
) -> Dashboard:
    everyone = survey.respondents()
    included, excluded = _included(everyone)
    stats = completion_stats([(r.created_at, r.completed_at) for r in included])
    ids = {r.id for r in included if r.completed_at is not None}
    profiles = {rid: p for rid, p in survey.profiles(complete_only=True).items() if rid in ids}
    return Dashboard(
        stats,
        excluded,
        _axes(list(profiles.values()), bank),
        _map(profiles),
        _coverage(demographics, ids),
        _quality(survey, everyone, bank),
    )


def _axes(profiles: list[Any], bank: ItemBank) -> tuple[AxisPanel, ...]:
    if not profiles:
        return ()
    panels = []
    for axis in axis_distributions(profiles, bank.axes).values:
        peak = max(axis.peak, 1)
        width = 100 / len(axis.bins)
        bars = tuple(
            Bar(i * width + 0.5, 40 - 38 * b.count / peak, width - 1, 38 * b.count / peak)
            for i, b in enumerate(axis.bins)
        )
        panels.append(
            AxisPanel(
                axis.name,
                axis.low,
                axis.high,
                axis.mean or 0.0,
                axis.sd,
                tuple(b.count for b in axis.bins),
                bars,
            )
        )
    return tuple(panels)


def _map(profiles: dict[str, Any]) -> MapPanel | None:
    if len(profiles) < 3:
        return None
    drawn = cluster_map(profiles, load_personas())
    if drawn.components == 0:
        return None
    clustering = cluster_profiles(profiles)
    group = {rid: j for j, c in enumerate(clustering.clusters) for rid in c.members}
    share = sum(drawn.explained_variance)
    return MapPanel(
        tuple(
            Point(round(p.x * 100, 2), round((1 - p.y) * 100, 2), group=group[p.respondent_id])
            for p in drawn.points
        ),
        tuple(
            Point(round(p.x * 100, 2), round((1 - p.y) * 100, 2), p.name) for p in drawn.personas
        ),
        tuple(Group(len(c.members), c.nearest_persona.name) for c in clustering.clusters),
        f"The two directions in which respondents differ most ({share:.0%} of their spread); "
        f"colours are {clustering.k} groups found by k-means (silhouette "
        f"{clustering.silhouette:.2f}).",
    )


def _coverage(demographics: DemographicsStore, completed: set[str]) -> tuple[CoverageTable, ...]:
    stored = demographics.demographics_by_respondent()
    placed = demographics.placements_by_respondent()
    records: list[dict[str, str | None]] = []
    for rid in completed:
        record = dict(stored.get(rid, {}))
        economic, social = placed.get(rid, (None, None))
        record["economic"] = None if economic is None else str(economic)
        record["social"] = None if social is None else str(social)
        records.append(record)
    scale = [str(n) for n in range(PLACEMENT_MAX + 1)]
    fields = {f.id: [c for c, _ in f.options] for f in DEMOGRAPHIC_FIELDS}
    fields |= {a.id: scale for a in PLACEMENT_AXES}
    titles = {f.id: f.question for f in DEMOGRAPHIC_FIELDS}
    titles |= {
        a.id: f"Self-placement, {a.id} (0 {a.low.split(':')[0]}, 10 {a.high.split(':')[0]})"
        for a in PLACEMENT_AXES
    }
    labels = {f.id: dict(f.options) for f in DEMOGRAPHIC_FIELDS}
    tables = []
    for field in demographic_coverage(records, fields):
        rows = tuple(
            (
                "Not stated"
                if c.category == NOT_STATED
                else labels.get(field.field, {}).get(c.category, c.category),
                "fewer than 11" if c.suppressed else str(c.count),
            )
            for c in field.cells
        )
        tables.append(CoverageTable(titles[field.field], rows))
    return tuple(tables)


def _quality(
    survey: SurveyStore, everyone: list[RespondentSummary], bank: ItemBank
) -> tuple[QualityRow, ...]:
    answers = survey.all_timed_answers()
    rows = []
    for summary in everyone:
        report = assess_quality(bank, answers.get(summary.id, []))
        flags = tuple((str(f.flag), f.reason) for f in report.findings)
        rows.append(QualityRow(summary.id, summary.id[:8], flags, summary.excluded))
    rows.sort(key=lambda r: (not r.flags, r.excluded is not None))
    return tuple(rows[:MAX_QUALITY_ROWS])
