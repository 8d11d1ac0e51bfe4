"""Response-quality flags: honest simulated respondents pass, careless patterns are caught.

Honest respondents are simulated the way `valuetune.values.simulate` draws them (a true
latent vector from the population prior, half of them around a persona) and answer the
real adaptive survey through the response model itself, taking time to read. Against
them stand a straight-liner, random responders and a speeder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from valuetune.errors import InvalidAnswerError
from valuetune.values.irt import Estimator, category_probabilities
from valuetune.values.items import Item, ItemKind, load_item_bank
from valuetune.values.personas import load_personas
from valuetune.values.quality import (
    QualityFlag,
    QualityReport,
    QualityThresholds,
    TimedAnswer,
    assess_quality,
    leave_one_out_probabilities,
    person_fit_lz,
)
from valuetune.values.simulate import SimulationConfig
from valuetune.values.survey import SurveySession

BANK = load_item_bank()
A, D = BANK.parameters()
PRIOR = BANK.axes.prior_covariance()
ESTIMATOR = Estimator(A, D, PRIOR)
N_VALUES = len(BANK.axes.value_axes)
HONEST = 100
RANDOM = 30
FALSE_POSITIVE_BOUND = 0.10

Policy = Callable[[Item], int | None]


def honest_policy(rng: np.random.Generator, skip_rate: float = 0.05) -> Policy:
    """A respondent with a true latent vector, answering through the model (with its noise)."""
    population = SimulationConfig()
    theta = rng.multivariate_normal(np.zeros(len(BANK.axes.dims)), PRIOR)
    if rng.random() < population.persona_share:
        personas = load_personas()
        centre = personas[rng.integers(len(personas))].profile.vector
        theta[:N_VALUES] = centre + rng.normal(0.0, population.persona_spread, N_VALUES)

    def answer(item: Item) -> int | None:
        if item.kind is ItemKind.ATTENTION:
            return item.expected  # attentive; a skipped check counts as failed by design
        if rng.random() < skip_rate:
            return None
        if item.graded:
            index = np.array([BANK.index(item.id)], dtype=np.int_)
            return int(ESTIMATOR.simulate_answers(theta, index, rng)[0])
        return int(rng.integers(item.n_categories))

    return answer


def random_policy(rng: np.random.Generator) -> Policy:
    return lambda item: int(rng.integers(item.n_categories))


def straight_policy(item: Item) -> int:
    # "Agree" to every statement and check; the first option of every scenario; "yes" to
    # every boundary.
    return 3 if item.kind in (ItemKind.LIKERT, ItemKind.ATTENTION) else 1


def reading_ms(item: Item, rng: np.random.Generator) -> int:
    """About 1 s to answer plus 240 words a minute, with log-normal spread between people."""
    words = len(item.text.split())
    return int(rng.lognormal(np.log(1000 + 250 * words), 0.4))


def take_survey(
    policy: Policy, rng: np.random.Generator, elapsed_ms: int | None = None
) -> list[TimedAnswer]:
    """Run the real adaptive survey to the end with `policy`, timing each answer."""
    session, answers = SurveySession(BANK), []
    while (item := session.next_item()) is not None:
        value = policy(item)
        session.answer(item.id, value)
        ms = reading_ms(item, rng) if elapsed_ms is None else elapsed_ms
        answers.append(TimedAnswer(item.id, value, ms))
    return answers


@dataclass(frozen=True)
class Cohort:
    answers: list[list[TimedAnswer]]
    reports: list[QualityReport]

    def rate(self, flag: QualityFlag) -> float:
        return sum(flag in r.flags for r in self.reports) / len(self.reports)


@pytest.fixture(scope="module")
def honest() -> Cohort:
    rng = np.random.default_rng(20240611)
    answers = [take_survey(honest_policy(rng), rng) for _ in range(HONEST)]
    return Cohort(answers, [assess_quality(BANK, a) for a in answers])


@pytest.fixture(scope="module")
def random_responders() -> Cohort:
    rng = np.random.default_rng(7)
    answers = [take_survey(random_policy(rng), rng) for _ in range(RANDOM)]
    return Cohort(answers, [assess_quality(BANK, a) for a in answers])


# -- honest respondents ----------------------------------------------------------------


@pytest.mark.parametrize("flag", list(QualityFlag))
def test_honest_respondents_are_rarely_flagged(honest: Cohort, flag: QualityFlag) -> None:
    # Measured over 1,000 such respondents: speeder 0%, straight-lining 0% (longest run 7),
    # attention 0% (attentive by construction), inconsistent 2.9%.
    assert honest.rate(flag) <= FALSE_POSITIVE_BOUND, (flag, honest.rate(flag))


def test_honest_person_fit_is_centred_near_zero(honest: Cohort) -> None:
    # lz at the estimate fitted to the same answers would sit near +2.7 here (the estimate
    # fits 26 answers with 22 dimensions); the leave-one-out form must stay near N(0, 1).
    lz = np.array([r.lz for r in honest.reports if r.lz is not None])
    assert len(lz) == HONEST
    assert abs(float(lz.mean())) < 0.8
    assert 0.7 < float(lz.std()) < 1.4


# -- careless patterns ------------------------------------------------------------------


def test_a_straight_liner_is_flagged_for_straight_lining_and_attention() -> None:
    rng = np.random.default_rng(1)
    report = assess_quality(BANK, take_survey(straight_policy, rng))
    assert QualityFlag.STRAIGHT_LINING in report.flags
    assert QualityFlag.ATTENTION in report.flags  # the first check asks for "Strongly disagree"
    assert QualityFlag.SPEEDER not in report.flags
    reason = report.reason(QualityFlag.STRAIGHT_LINING)
    assert reason is not None and "'Agree'" in reason and "reverse-keyed" in reason


def test_random_responders_are_caught_far_more_often_than_honest_ones(
    honest: Cohort, random_responders: Cohort
) -> None:
    # Measured over 300 random responders: inconsistent 48%, attention 79%.
    inconsistent = random_responders.rate(QualityFlag.INCONSISTENT)
    assert inconsistent >= 0.25
    assert inconsistent >= 4 * max(honest.rate(QualityFlag.INCONSISTENT), 0.02)
    caught = sum(
        bool(r.flags & {QualityFlag.INCONSISTENT, QualityFlag.ATTENTION})
        for r in random_responders.reports
    )
    assert caught / RANDOM >= 0.8
    lz = [r.lz for r in random_responders.reports if r.lz is not None]
    assert float(np.median(lz)) < -1.0
    assert not any(QualityFlag.SPEEDER in r.flags for r in random_responders.reports)


def test_a_speeder_is_flagged_with_the_median_time(honest: Cohort) -> None:
    clean = next(a for a, r in zip(honest.answers, honest.reports, strict=True) if r.ok)
    fast = [TimedAnswer(a.item_id, a.value, 300) for a in clean]
    report = assess_quality(BANK, fast)
    assert report.flags == {QualityFlag.SPEEDER}
    assert report.median_seconds == pytest.approx(0.3)
    reason = report.reason(QualityFlag.SPEEDER)
    assert reason is not None and "0.3 s" in reason


def test_speed_is_judged_on_answered_questions_with_recorded_times(honest: Cohort) -> None:
    clean = honest.answers[0]
    # quick skips and untimed answers do not make a careful respondent a speeder
    mixed = [
        TimedAnswer(a.item_id, a.value, a.elapsed_ms if a.value is not None else 50) for a in clean
    ]
    asked = {a.item_id for a in clean}
    unasked = [i for i in _likert_ids(60) if i not in asked][:10]
    mixed += [TimedAnswer(i, None, 10) for i in unasked]
    assert QualityFlag.SPEEDER not in assess_quality(BANK, mixed).flags
    untimed = [TimedAnswer(a.item_id, a.value, None) for a in clean]
    report = assess_quality(BANK, untimed)
    assert report.median_seconds is None and QualityFlag.SPEEDER not in report.flags


# -- straight-lining rules ----------------------------------------------------------------


def _likert_ids(n: int) -> list[str]:
    return [item.id for item in BANK.of_kind(ItemKind.LIKERT)[:n]]


def test_a_run_is_counted_over_likert_statements_only() -> None:
    ids = _likert_ids(8)
    choice, boundary = BANK.of_kind(ItemKind.CHOICE)[0], BANK.of_kind(ItemKind.BOUNDARY)[0]
    answers = [TimedAnswer(i, 2) for i in ids[:4]]
    # other answer scales and skips in between neither extend nor break the run
    answers += [TimedAnswer(choice.id, 0), TimedAnswer(boundary.id, 1), TimedAnswer(ids[4], None)]
    answers += [TimedAnswer(i, 2) for i in ids[5:]] + [TimedAnswer(_likert_ids(9)[8], 2)]
    report = assess_quality(BANK, answers)
    assert report.longest_run == 8
    assert QualityFlag.STRAIGHT_LINING in report.flags
    # one run shorter is not flagged
    assert QualityFlag.STRAIGHT_LINING not in assess_quality(BANK, answers[:-1]).flags


def test_zero_variance_over_enough_statements_is_flagged() -> None:
    long_runs_allowed = QualityThresholds(straight_run=50, straight_min_likert=10)
    same = [TimedAnswer(i, 1) for i in _likert_ids(10)]
    report = assess_quality(BANK, same, long_runs_allowed)
    reason = report.reason(QualityFlag.STRAIGHT_LINING)
    assert reason is not None and reason.startswith("all 10 statements")
    assert (
        QualityFlag.STRAIGHT_LINING not in assess_quality(BANK, same[:9], long_runs_allowed).flags
    )


# -- attention ------------------------------------------------------------------------------


@pytest.mark.parametrize("wrong", [0, 1, 2])
def test_attention_flag_matches_the_survey_count(wrong: int) -> None:
    checks = BANK.of_kind(ItemKind.ATTENTION)[:2]
    answers = [TimedAnswer(c.id, c.expected) for c in checks]
    for n in range(wrong):
        expected = checks[n].expected
        assert expected is not None
        # first wrong answer: another category; second: a skip, which also fails
        answers[n] = TimedAnswer(checks[n].id, (expected + 1) % 5 if n == 0 else None)
    report = assess_quality(BANK, answers)
    session = SurveySession.replay(BANK, [a.answer for a in answers])
    assert report.attention_failures == session.attention_failures == wrong
    assert (QualityFlag.ATTENTION in report.flags) == (wrong > 0)
    if wrong:
        assert (
            report.reason(QualityFlag.ATTENTION)
            == f"{wrong} of 2 attention checks not answered as instructed"
        )


# -- person fit ---------------------------------------------------------------------------


def test_lz_is_standardised_when_answers_follow_the_probabilities() -> None:
    # E[l] and Var[l] are exact, so lz has mean 0 and SD 1 over answers drawn from the
    # very probabilities it is computed with (checked by Monte Carlo).
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(5), size=30)
    probs[:10, 2:] = 0.0  # two-category items padded like forced choices
    probs[:10] /= probs[:10].sum(axis=1, keepdims=True)
    cum = probs.cumsum(axis=1)
    draws = []
    for _ in range(2000):
        y = np.minimum((cum < rng.random((30, 1))).sum(axis=1), 4)
        lz = person_fit_lz(probs, y)
        assert lz is not None
        draws.append(lz)
    assert abs(np.mean(draws)) < 0.05
    assert abs(np.std(draws) - 1.0) < 0.05
    modal = person_fit_lz(probs, probs.argmax(axis=1))
    least = person_fit_lz(probs, np.where(probs > 0, probs, 2.0).argmin(axis=1))
    assert modal is not None and least is not None and modal > 2.0 and least < -2.0


def test_lz_is_undefined_when_every_answer_is_certain() -> None:
    certain = np.array([[0.0, 1.0, 0.0, 0.0, 0.0]] * 4)
    assert person_fit_lz(certain, np.ones(4, dtype=np.int_)) is None


def test_leave_one_out_matches_refitting_without_each_answer(honest: Cohort) -> None:
    answers = honest.answers[1]
    graded = [
        (BANK.index(a.item_id), a.value)
        for a in answers
        if a.value is not None and BANK.get(a.item_id).graded
    ]
    idx = np.array([g[0] for g in graded], dtype=np.int_)
    y = np.array([g[1] for g in graded], dtype=np.int_)
    full = ESTIMATOR.fit(idx, y)
    approx = leave_one_out_probabilities(BANK, idx, y, full)
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    weights = weights / weights.sum()
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        post = ESTIMATOR.fit(idx[keep], y[keep])
        a = A[idx[i]]
        mean, sd = a @ post.mean, float(np.sqrt(a @ post.cov @ a))
        eta = mean + sd * nodes
        exact = weights @ category_probabilities(
            eta, np.broadcast_to(D[idx[i]], (len(nodes), D.shape[1]))
        )
        assert np.allclose(approx[i], exact, atol=0.03), (i, approx[i], exact)
        assert approx[i].sum() == pytest.approx(1.0)


def test_person_fit_needs_enough_graded_answers() -> None:
    few = [TimedAnswer(i, 0 if n % 2 else 4) for n, i in enumerate(_likert_ids(7))]
    assert assess_quality(BANK, few).lz is None
    assert assess_quality(BANK, few, QualityThresholds(lz_min_graded=7)).lz is not None


# -- edge cases ---------------------------------------------------------------------------


def test_no_answers_raise_no_flags() -> None:
    report = assess_quality(BANK, [])
    assert report.ok and report.flags == frozenset()
    assert (report.answered, report.skipped, report.longest_run) == (0, 0, 0)
    assert report.median_seconds is None and report.lz is None


def test_all_skipped_fails_only_the_skipped_attention_check() -> None:
    ids = [*_likert_ids(12), BANK.of_kind(ItemKind.ATTENTION)[0].id]
    report = assess_quality(BANK, [TimedAnswer(i, None, 100) for i in ids])
    assert report.flags == {QualityFlag.ATTENTION}
    assert (report.answered, report.skipped) == (0, 13)


def test_bad_input_gets_the_survey_errors() -> None:
    with pytest.raises(InvalidAnswerError, match="unknown item id 'no-such-item'"):
        assess_quality(BANK, [TimedAnswer("no-such-item", 1, 2000)])
    with pytest.raises(InvalidAnswerError, match=r"must be in 0\.\.4"):
        assess_quality(BANK, [TimedAnswer("care-01", 7, 2000)])
    with pytest.raises(InvalidAnswerError, match="already answered"):
        assess_quality(BANK, [TimedAnswer("care-01", 1), TimedAnswer("care-01", 2)])
    with pytest.raises(InvalidAnswerError, match="non-negative"):
        TimedAnswer("care-01", 1, -5)


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError):
        QualityThresholds(straight_run=0)
    with pytest.raises(ValueError):
        QualityThresholds(lz_min_graded=1)
