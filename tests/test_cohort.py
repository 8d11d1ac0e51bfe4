"""Cohort statistics: completion, histograms, the persona map, and small-cell suppression."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from valuetune.values.axes import load_axes
from valuetune.values.cohort import (
    NOT_STATED,
    SUPPRESS_AT_MOST,
    ClusterMap,
    axis_distributions,
    cluster_map,
    completion_stats,
    demographic_coverage,
    suppressed_cells,
)
from valuetune.values.personas import load_personas
from valuetune.values.profile import ESTIMATE_LIMIT, ValueProfile

AXES = load_axes()
PERSONAS = load_personas()
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def noisy_profiles(n: int, seed: int, spread: float = 0.6) -> dict[str, ValueProfile]:
    """`n` respondents scattered around the personas (value axes and style)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        base = PERSONAS[i % len(PERSONAS)].profile
        out[f"r{i}"] = ValueProfile(
            base.schema,
            tuple(base.vector + rng.normal(0.0, spread, len(base.values))),
            (0.3,) * len(base.values),
            tuple(rng.normal(0.0, 1.5, len(base.style))),
            (0.5,) * len(base.style),
            frozenset(),
        )
    return out


# -- completion ---------------------------------------------------------------------------


def test_completion_on_a_hand_made_timeline() -> None:
    minutes = [12, 30, 18, None, None]
    timelines = [
        (T0 + timedelta(hours=i), None if m is None else T0 + timedelta(hours=i, minutes=m))
        for i, m in enumerate(minutes)
    ]
    stats = completion_stats(timelines)
    assert (stats.respondents, stats.completed) == (5, 3)
    assert stats.completion_rate == pytest.approx(0.6)
    assert stats.median_minutes == pytest.approx(18.0)
    # an even count takes the middle pair's mean
    assert completion_stats(timelines[:2]).median_minutes == pytest.approx(21.0)


def test_completion_with_nobody_finished_or_nobody_at_all() -> None:
    started = completion_stats([(T0, None), (T0, None)])
    assert (started.completed, started.completion_rate, started.median_minutes) == (0, 0.0, None)
    empty = completion_stats([])
    assert (empty.respondents, empty.completion_rate, empty.median_minutes) == (0, None, None)


def test_completion_before_start_is_refused() -> None:
    with pytest.raises(ValueError, match="before starting"):
        completion_stats([(T0, T0 - timedelta(minutes=1))])


# -- distributions ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 37])
def test_histograms_count_every_profile_once(n: int) -> None:
    profiles = list(noisy_profiles(n, seed=n).values())
    dist = axis_distributions(profiles, AXES)
    assert [d.id for d in dist.values] == list(AXES.value_ids)
    assert [d.id for d in dist.style] == list(AXES.style_ids)
    for j, d in enumerate(dist.values + dist.style):
        assert d.n == n
        assert sum(b.count for b in d.bins) == n
        assert len(d.bins) == 10
        assert d.bins[0].lo == -ESTIMATE_LIMIT and d.bins[-1].hi == ESTIMATE_LIMIT
        assert all(a.hi == pytest.approx(b.lo) for a, b in itertools.pairwise(d.bins))
        xs = [(p.values + p.style)[j] for p in profiles]
        assert d.mean == (pytest.approx(np.mean(xs)) if n else None)
        assert d.sd == (pytest.approx(np.std(xs, ddof=1)) if n > 1 else None)
        assert d.peak == max(b.count for b in d.bins)


def test_histogram_edges_hold_the_extremes() -> None:
    lim = ESTIMATE_LIMIT
    values = {a: 0.0 for a in AXES.value_ids} | {"care": lim, "equality": -lim}
    profile = ValueProfile.from_mappings(values)
    dist = {d.id: d for d in axis_distributions([profile, profile], AXES, bins=8).values}
    assert dist["care"].bins[-1].count == 2
    assert dist["equality"].bins[0].count == 2
    # 0.0 sits on an edge with 8 bins: it is counted once, in the upper bin
    assert [b.count for b in dist["loyalty"].bins] == [0, 0, 0, 0, 2, 0, 0, 0]


def test_histograms_need_a_bin() -> None:
    with pytest.raises(ValueError):
        axis_distributions([], AXES, bins=0)


# -- cluster map --------------------------------------------------------------------------


def _in_unit_square(m: ClusterMap) -> bool:
    coords = [(p.x, p.y) for p in m.points] + [(p.x, p.y) for p in m.personas]
    return all(0.0 <= c <= 1.0 for xy in coords for c in xy)


def test_personas_taken_as_respondents_sit_on_their_own_persona() -> None:
    m = cluster_map({p.id: p.profile for p in PERSONAS})
    assert m.components == 2 and len(m.personas) == len(PERSONAS) and _in_unit_square(m)
    placed = {p.persona_id: np.array([p.x, p.y]) for p in m.personas}
    for point in m.points:
        here = np.array([point.x, point.y])
        on_map = min(placed, key=lambda pid: float(np.linalg.norm(placed[pid] - here)))
        assert on_map == point.respondent_id
        assert point.nearest_persona == point.respondent_id and point.persona_distance == 0.0


def test_each_respondent_gets_the_persona_nearest_in_full_space() -> None:
    profiles = noisy_profiles(len(PERSONAS), seed=4, spread=0.15)
    m = cluster_map(profiles)
    for i, point in enumerate(m.points):
        assert point.nearest_persona == PERSONAS[i].id
        assert point.persona_distance == pytest.approx(
            profiles[point.respondent_id].distance(PERSONAS[i].profile)
        )


def test_map_distances_are_the_principal_plane_scaled_evenly() -> None:
    profiles = noisy_profiles(40, seed=2)
    m = cluster_map(profiles, personas=())
    x = np.array([p.vector for p in profiles.values()])
    u, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    plane = u[:, :2] * s[:2]
    drawn = np.array([[p.x, p.y] for p in m.points])
    ratios = [
        np.linalg.norm(drawn[i] - drawn[j]) / np.linalg.norm(plane[i] - plane[j])
        for i, j in itertools.combinations(range(len(plane)), 2)
    ]
    assert np.allclose(ratios, ratios[0])
    ev = np.array(m.explained_variance)
    assert np.allclose(ev, s[:2] ** 2 / (s @ s))
    assert ev.sum() <= 1.0 and ev[0] >= ev[1] > 0.0


def test_the_map_does_not_depend_on_respondent_order_and_mirrors_with_the_data() -> None:
    profiles = noisy_profiles(25, seed=8)
    m = cluster_map(profiles, personas=())
    backwards = cluster_map(dict(reversed(profiles.items())), personas=())
    where = {p.respondent_id: (p.x, p.y) for p in backwards.points}
    for p in m.points:
        assert (p.x, p.y) == pytest.approx(where[p.respondent_id])
    mirrored = cluster_map({k: -v for k, v in profiles.items()}, personas=())
    for p, q in zip(m.points, mirrored.points, strict=True):
        assert (q.x, q.y) == pytest.approx((1.0 - p.x, 1.0 - p.y))


def test_maps_of_no_one_and_one_respondent_are_degenerate_not_errors() -> None:
    empty = cluster_map({})
    assert (empty.points, empty.personas, empty.components) == ((), (), 0)
    assert empty.explained_variance == (0.0, 0.0)
    one = cluster_map({"solo": PERSONAS[3].profile})
    assert one.components == 0 and one.personas == ()
    assert (one.points[0].x, one.points[0].y) == (0.5, 0.5)
    assert one.points[0].nearest_persona == PERSONAS[3].id
    twins = cluster_map({"a": PERSONAS[0].profile, "b": PERSONAS[0].profile})
    assert twins.components == 0 and {(p.x, p.y) for p in twins.points} == {(0.5, 0.5)}


def test_two_respondents_make_a_line() -> None:
    m = cluster_map({"a": PERSONAS[0].profile, "b": PERSONAS[10].profile})
    assert m.components == 1 and m.explained_variance == pytest.approx((1.0, 0.0))
    assert {p.y for p in m.points} | {p.y for p in m.personas} == {0.5}
    assert m.points[0].x != m.points[1].x and len(m.personas) == len(PERSONAS)
    assert _in_unit_square(m)


# -- demographic coverage ------------------------------------------------------------------

FIELDS = {"gender": ["woman", "man", "non-binary", "other"], "age": ["18-34", "35+"]}


def test_coverage_counts_declared_categories_and_the_unstated() -> None:
    records: list[dict[str, str | None]] = (
        [{"gender": "woman", "age": "18-34"}] * 30
        + [{"gender": "man", "age": "35+"}] * 25
        + [{"gender": None, "age": "prefer not to say"}] * 6
        + [{"gender": "Prefer not to say"}] * 7
    )
    gender, age = demographic_coverage(records, FIELDS)
    assert gender.total == age.total == len(records)
    cells = {c.category: c for c in gender.cells}
    assert list(cells) == [*FIELDS["gender"], NOT_STATED]
    assert (cells["woman"].count, cells["man"].count, cells[NOT_STATED].count) == (30, 25, 13)
    assert cells["non-binary"].count == 0 and not cells["non-binary"].suppressed
    ages = {c.category: c.count for c in age.cells}
    assert ages == {"18-34": 30, "35+": 25, NOT_STATED: 13}


def test_a_small_cell_is_hidden_with_its_complement() -> None:
    records = [{"gender": "woman"}] * 30 + [{"gender": "man"}] * 20 + [{"gender": "other"}] * 3
    (gender,) = demographic_coverage(records, {"gender": FIELDS["gender"]})
    shown = {c.category: c.count for c in gender.cells if not c.suppressed}
    assert shown == {"woman": 30, "man": 20}  # 3, and the zeros that would give it away
    assert all(c.count is None for c in gender.cells if c.suppressed)


def test_an_undeclared_category_is_refused() -> None:
    with pytest.raises(ValueError, match="'martian' is not a declared category"):
        demographic_coverage([{"gender": "martian"}], {"gender": FIELDS["gender"]})


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def _undetermined(counts: Sequence[int]) -> bool:
    """Whether every hidden cell keeps two possible values for a reader who knows the rule.

    The reader sees which cells are hidden, the shown counts and the total, and considers
    every way of filling the hidden cells that the rule would have published the same
    way. A witness is searched among transfers between two hidden cells first (fast);
    only if some cell has none are all fillings tried, so a pass is proof either way.
    """
    hidden = sorted(suppressed_cells(counts))
    if not hidden:
        return True
    if len(counts) == 1:
        return False  # the total is the cell: `demographic_coverage` hides the total

    def published_alike(alternative: list[int]) -> bool:
        return sorted(suppressed_cells(alternative)) == hidden

    unresolved = []
    for i in hidden:
        witnessed = False
        for j in hidden:
            if j == i:
                continue
            for moved in range(-counts[i], counts[j] + 1):
                if moved == 0:
                    continue
                alternative = list(counts)
                alternative[i] += moved
                alternative[j] -= moved
                if published_alike(alternative):
                    witnessed = True
                    break
            if witnessed:
                break
        if not witnessed:
            unresolved.append(i)
    if not unresolved:
        return True
    possible: dict[int, set[int]] = {i: set() for i in unresolved}
    for fill in _compositions(sum(counts[i] for i in hidden), len(hidden)):
        alternative = list(counts)
        for i, v in zip(hidden, fill, strict=True):
            alternative[i] = v
        if published_alike(alternative):
            for i in unresolved:
                possible[i].add(alternative[i])
            if all(len(v) > 1 for v in possible.values()):
                return True
    return False


def _check_table(counts: Sequence[int]) -> None:
    hidden = suppressed_cells(counts)
    for i, c in enumerate(counts):
        if 1 <= c <= SUPPRESS_AT_MOST:
            assert i in hidden, counts
    assert len(hidden) != 1 or len(counts) == 1, counts  # never one hidden cell beside a total
    assert _undetermined(counts), counts


def test_no_small_count_can_be_worked_out_from_any_small_table() -> None:
    # every table of two and three cells with counts up to 13, exhaustively
    for size in (2, 3):
        for counts in itertools.product(range(14), repeat=size):
            _check_table(counts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 30) | st.sampled_from([0, 1, 10, 11, 12]), min_size=2, max_size=6))
def test_no_small_count_can_be_worked_out_from_random_tables(counts: list[int]) -> None:
    _check_table(counts)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"gender": st.sampled_from([*FIELDS["gender"], None, "prefer not to say"])}
        ),
        max_size=60,
    )
)
def test_published_coverage_shows_only_true_counts_and_never_a_small_one(
    records: list[dict[str, str | None]],
) -> None:
    (gender,) = demographic_coverage(records, {"gender": FIELDS["gender"]})
    truth = {c: 0 for c in [*FIELDS["gender"], NOT_STATED]}
    for r in records:
        value = r["gender"]
        truth[NOT_STATED if value in (None, "prefer not to say") else value] += 1
    assert gender.total == len(records)
    for cell in gender.cells:
        assert cell.suppressed == (cell.count is None)
        if not cell.suppressed:
            assert cell.count == truth[cell.category]
            assert not 1 <= cell.count <= SUPPRESS_AT_MOST
    hidden = [c for c in gender.cells if c.suppressed]
    assert len(hidden) != 1


def test_a_field_with_a_single_cell_hides_its_total() -> None:
    (field,) = demographic_coverage([{}] * 4, {"anything": []})
    assert field.cells[0].suppressed and field.total is None
