"""SurveySession: phases, stop rules, attention checks, replay, and refusal of bad answers."""

from __future__ import annotations

import numpy as np
import pytest

from valuetune.errors import InvalidAnswerError
from valuetune.values.items import Item, ItemKind, load_item_bank
from valuetune.values.survey import Answer, Phase, SurveyConfig, SurveySession

BANK = load_item_bank()
AXES = BANK.axes


def _answer_all(session: SurveySession, rng: np.random.Generator) -> list[Item]:
    asked = []
    while (item := session.next_item()) is not None:
        asked.append(item)
        value = None if rng.random() < 0.1 else int(rng.integers(item.n_categories))
        session.answer(item.id, value)
    return asked


def test_full_survey_runs_through_the_phases_in_order() -> None:
    session = SurveySession(BANK, SurveyConfig(max_value_items=12, max_style_items=6))
    asked = _answer_all(session, np.random.default_rng(0))
    phases = []
    for item in asked:
        if item.kind is ItemKind.BOUNDARY:
            phases.append("boundaries")
        elif item.graded and item.primary_dim() in AXES.style_ids:
            phases.append("style")
        else:
            phases.append("values")
    assert phases == sorted(phases, key=["values", "style", "boundaries"].index)
    value_items = [i for i in asked if i.graded and i.primary_dim() in AXES.value_ids]
    assert len(value_items) == 12
    assert sum(1 for p in phases if p == "style") == 6
    assert sum(1 for p in phases if p == "boundaries") == len(AXES.boundaries)
    assert session.complete and session.phase is Phase.DONE
    assert session.next_item() is None
    done, total = session.progress()
    assert done == total == len(asked)


def test_attention_check_comes_after_the_configured_number_of_value_items() -> None:
    session = SurveySession(BANK, SurveyConfig(max_value_items=10, attention_after=(4,)))
    asked = _answer_all(session, np.random.default_rng(1))
    position = next(k for k, i in enumerate(asked) if i.kind is ItemKind.ATTENTION)
    assert position == 4
    assert sum(1 for i in asked if i.kind is ItemKind.ATTENTION) == 1


def test_attention_failures_and_boundaries_are_read_from_answers() -> None:
    session = SurveySession(
        BANK, SurveyConfig(max_value_items=3, max_style_items=1, attention_after=(1,))
    )
    chosen = {"no_profanity", "no_flattery"}
    while (item := session.next_item()) is not None:
        if item.kind is ItemKind.ATTENTION:
            assert item.expected is not None
            session.answer(item.id, (item.expected + 1) % 5)
        elif item.kind is ItemKind.BOUNDARY:
            session.answer(item.id, 1 if item.boundary in chosen else 0)
        else:
            session.answer(item.id, 0)
    assert session.attention_failures == 1
    assert session.profile().boundaries == chosen


def test_stop_rule_ends_the_value_phase_at_the_target_standard_error() -> None:
    loose = SurveySession(BANK, SurveyConfig(max_value_items=60, target_se=0.9, attention_after=()))
    rng = np.random.default_rng(2)
    while loose.phase is Phase.VALUES:
        item = loose.next_item()
        assert item is not None
        loose.answer(item.id, int(rng.integers(item.n_categories)))
    n = len(loose.answers)
    assert n < 60
    assert np.all(loose.posterior.sd[: len(AXES.value_axes)] <= 0.9)


def test_replay_reaches_the_same_state() -> None:
    config = SurveyConfig(max_value_items=15)
    first = SurveySession(BANK, config)
    rng = np.random.default_rng(4)
    for _ in range(11):
        item = first.next_item()
        assert item is not None
        first.answer(item.id, None if rng.random() < 0.2 else int(rng.integers(item.n_categories)))
    again = SurveySession.replay(BANK, list(first.answers), config)
    assert again.next_item() == first.next_item()
    assert np.allclose(again.posterior.mean, first.posterior.mean, atol=1e-6)
    assert again.profile() == first.profile()
    assert again.progress() == first.progress()


def test_skipped_items_do_not_move_the_estimate_and_are_not_asked_again() -> None:
    session = SurveySession(BANK)
    item = session.next_item()
    assert item is not None
    session.answer(item.id, None)
    assert np.allclose(session.posterior.mean, 0.0)
    assert session.next_item() != item
    assert session.answers == [Answer(item.id, None)]


def test_bad_answers_are_refused_and_leave_the_session_unchanged() -> None:
    session = SurveySession(BANK)
    item = session.next_item()
    assert item is not None
    with pytest.raises(InvalidAnswerError, match="unknown item"):
        session.answer("no-such-item", 1)
    with pytest.raises(InvalidAnswerError, match=r"0\.\.4"):
        session.answer(item.id, 7)
    assert session.answers == []
    session.answer(item.id, 2)
    with pytest.raises(InvalidAnswerError, match="already answered"):
        session.answer(item.id, 3)
    assert session.answers == [Answer(item.id, 2)]


def test_profile_tracks_the_posterior() -> None:
    session = SurveySession(BANK, SurveyConfig(max_value_items=8))
    before = session.profile()
    assert before.values_se == (1.0,) * len(AXES.value_axes)
    agree_high = 0
    while session.phase is Phase.VALUES:
        item = session.next_item()
        assert item is not None
        if item.kind is ItemKind.ATTENTION:
            session.answer(item.id, item.expected)
            continue
        axis = item.primary_dim()
        # answer every item toward its primary high pole
        toward = item.loadings.get(axis or "", 0.0) > 0
        session.answer(item.id, item.n_categories - 1 if toward else 0)
        agree_high += 1
    after = session.profile()
    assert agree_high == 8
    assert max(after.values_se) < 1.0
    assert sum(after.values) > 0  # every answer leaned toward a high pole


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SurveyConfig(max_value_items=-1)
    with pytest.raises(ValueError):
        SurveyConfig(target_se=0)
