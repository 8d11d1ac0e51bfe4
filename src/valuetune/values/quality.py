"""Response-quality flags for one respondent: speeding, straight-lining, attention, misfit.

An admin reading survey results needs to know which respondents' answers are worth less:
people who clicked through without reading (`speeder`), gave the same Likert answer over
and over (`straight_lining`), missed an instructed answer (`attention`), or answered in a
pattern the response model finds implausible for any single set of values
(`inconsistent`). Each flag comes with a short plain-language reason for the dashboard.

`inconsistent` is the polytomous lz person-fit statistic under the graded response model,
with each answer's probabilities predicted from the respondent's other answers rather
than taken at the estimate fitted to all of them (`leave_one_out_probabilities` says why).

The flags are evidence, not verdicts: every threshold trades false alarms against misses,
and the defaults in `QualityThresholds` were set so that honest respondents simulated
from the model itself are rarely flagged (see tests/test_quality.py for the measured
rates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from valuetune.errors import InvalidAnswerError
from valuetune.values.irt import Posterior, category_probabilities, loglik_terms
from valuetune.values.items import LIKERT_LABELS, ItemBank, ItemKind
from valuetune.values.survey import Answer, SurveySession

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int_]

_P_FLOOR = 1e-12
# Gauss-Hermite nodes for averaging over eta ~ N(m, v) (probabilists' form, weights sum to 1).
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(15)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()


class QualityFlag(StrEnum):
    SPEEDER = "speeder"
    STRAIGHT_LINING = "straight_lining"
    ATTENTION = "attention"
    INCONSISTENT = "inconsistent"


@dataclass(frozen=True)
class TimedAnswer:
    """One stored answer with the time the respondent took over it.

    `value` None is a skip; `elapsed_ms` None means the time was not recorded (an answer
    replayed from an import, say), and such answers are left out of the speed check.
    """

    item_id: str
    value: int | None
    elapsed_ms: int | None = None

    def __post_init__(self) -> None:
        if self.elapsed_ms is not None and self.elapsed_ms < 0:
            raise InvalidAnswerError(
                f"elapsed time for {self.item_id} must be non-negative, got {self.elapsed_ms} ms"
            )

    @property
    def answer(self) -> Answer:
        """The answer without its timing, as the survey engine stores it."""
        return Answer(self.item_id, self.value)


@dataclass(frozen=True)
class QualityThresholds:
    """When each flag is raised; the defaults are the documented house choice."""

    speeder_median_ms: int = 1500
    """Flag a median time per answered question below this. Our statements run to 15-25
    words: 1.5 s is reading at 600+ words a minute with no time left to decide."""
    speeder_min_timed: int = 5
    """Judge speed only with at least this many timed answers (a median of two says little)."""
    straight_run: int = 8
    """Flag this many consecutive answered Likert statements given the same category."""
    straight_min_likert: int = 10
    """Also flag zero variance over all Likert answers, once there are at least this many."""
    lz_below: float = -2.0
    """Flag person fit lz below this (about the lower 2.3% of lz's nominal N(0, 1))."""
    lz_min_graded: int = 8
    """Compute lz only with at least this many graded answers; with fewer it is noise."""

    def __post_init__(self) -> None:
        if self.speeder_median_ms < 0:
            raise ValueError("speeder_median_ms must be non-negative")
        if min(self.speeder_min_timed, self.straight_run, self.straight_min_likert) < 1:
            raise ValueError("minimum counts and run lengths must be at least 1")
        if self.lz_min_graded < 2:
            raise ValueError("lz needs at least two graded answers")


@dataclass(frozen=True)
class QualityFinding:
    """One raised flag and why, in words an admin can act on."""

    flag: QualityFlag
    reason: str


@dataclass(frozen=True)
class QualityReport:
    """The flags raised for one respondent, with the statistics behind them.

    The statistics are there even when no flag is raised (None when they could not be
    computed: no timed answers, too few graded answers), so a dashboard can show them.
    """

    findings: tuple[QualityFinding, ...]
    answered: int
    skipped: int
    median_seconds: float | None
    longest_run: int
    attention_failures: int
    lz: float | None

    @property
    def flags(self) -> frozenset[QualityFlag]:
        return frozenset(f.flag for f in self.findings)

    @property
    def ok(self) -> bool:
        """Whether no flag was raised."""
        return not self.findings

    def reason(self, flag: QualityFlag) -> str | None:
        """The reason `flag` was raised, or None if it was not."""
        return next((f.reason for f in self.findings if f.flag is flag), None)


def assess_quality(
    bank: ItemBank,
    answers: Sequence[TimedAnswer],
    thresholds: QualityThresholds | None = None,
) -> QualityReport:
    """Check one respondent's answers (in the order given) for the four quality flags.

    The answers are replayed through `SurveySession`, so an unknown item, an answer out of
    range or a repeated item fails with the same `InvalidAnswerError` the survey gives, and
    the attention count and the latent estimate are exactly the survey's own.
    """
    limits = thresholds or QualityThresholds()
    session = SurveySession.replay(bank, [a.answer for a in answers])
    findings: list[QualityFinding] = []

    median_s = _median_seconds(answers, limits)
    if median_s is not None and median_s * 1000.0 < limits.speeder_median_ms:
        findings.append(
            QualityFinding(
                QualityFlag.SPEEDER,
                f"median {median_s:.1f} s per answered question "
                f"(flagged below {limits.speeder_median_ms / 1000:.1f} s)",
            )
        )

    run_length, straight = _straight_lining(bank, answers, limits)
    if straight is not None:
        findings.append(QualityFinding(QualityFlag.STRAIGHT_LINING, straight))

    failures = session.attention_failures
    if failures:
        checks = sum(1 for a in answers if bank.get(a.item_id).kind is ItemKind.ATTENTION)
        findings.append(
            QualityFinding(
                QualityFlag.ATTENTION,
                f"{failures} of {checks} attention check{'s' if checks != 1 else ''} "
                "not answered as instructed",
            )
        )

    idx, y = _graded(bank, answers)
    lz = None
    if len(y) >= limits.lz_min_graded:
        lz = person_fit_lz(leave_one_out_probabilities(bank, idx, y, session.posterior), y)
    if lz is not None and lz < limits.lz_below:
        findings.append(
            QualityFinding(
                QualityFlag.INCONSISTENT,
                f"answers do not hang together: they are hard to predict from one another "
                f"(person fit lz = {lz:.1f} over {len(y)} answers, "
                f"flagged below {limits.lz_below:.1f})",
            )
        )

    answered = sum(1 for a in answers if a.value is not None)
    return QualityReport(
        findings=tuple(findings),
        answered=answered,
        skipped=len(answers) - answered,
        median_seconds=median_s,
        longest_run=run_length,
        attention_failures=failures,
        lz=lz,
    )


def person_fit_lz(probabilities: FloatArray, answers: IntArray) -> float | None:
    """Standardized log-likelihood lz of `answers` under per-answer category probabilities.

    Drasgow, Levine & Williams (1985), polytomous form: with P_ik the probability of
    category k on answer i (shape (n, K), zeros for categories an item lacks),
    ``l0 = sum_i log P_i,y_i``, ``E = sum_i sum_k P_ik log P_ik`` and
    ``Var = sum_i [sum_k P_ik (log P_ik)^2 - (sum_k P_ik log P_ik)^2]``, both exact over the
    categories; ``lz = (l0 - E) / sqrt(Var)``, about N(0, 1) when the answers are drawn
    from the probabilities. Large negative lz: the answers are less likely than expected.
    None when Var is 0 (every answer certain, so fit is undefined).
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    logp = np.log(np.maximum(probs, _P_FLOOR))
    plogp = np.where(probs > 0, probs * logp, 0.0)
    observed = float(logp[np.arange(len(answers)), answers].sum())
    mean_per_answer = plogp.sum(axis=1)
    expected = float(mean_per_answer.sum())
    second = np.where(probs > 0, probs * logp * logp, 0.0).sum(axis=1)
    variance = float((second - mean_per_answer**2).sum())
    if variance <= 1e-12:
        return None
    return (observed - expected) / math.sqrt(variance)


def leave_one_out_probabilities(
    bank: ItemBank, idx: IntArray, answers: IntArray, posterior: Posterior
) -> FloatArray:
    """Each graded answer's category probabilities predicted from all the other answers.

    Why not the probabilities at the estimate itself: the survey asks about 26 graded
    items to estimate 22 latent dimensions, so the estimate fits each answer nearly on
    its own and lz at it sits far above 0 for everyone (measured mean +2.7, SD 0.4, for
    honest simulated respondents; a random responder scores +2.4), which detects nothing.
    Predicting each answer from the rest removes that self-fit: lz is then close to N(0, 1)
    for honest respondents.

    `posterior` is the Laplace fit to all answers (mode mu, covariance Sigma), as
    `SurveySession` keeps it. Dropping answer i is a rank-one change of the precision, and
    one Newton step from mu gives the leave-one-out mode; on eta_i = a_i . theta this is
    ``v_i = s_i / (1 + h_i s_i)`` with ``s_i = a_i' Sigma a_i`` and
    ``m_i = a_i . mu - v_i g_i`` (g_i, h_i: first and second derivatives of log P(y_i) in
    eta at mu). The prediction averages the category probabilities over
    eta_i ~ N(m_i, v_i) by Gauss-Hermite quadrature, so it is the posterior predictive.
    """
    a, d = bank.parameters()
    a, d = a[idx], d[idx]
    eta = a @ posterior.mean
    _, g, h = loglik_terms(eta, d, answers)
    s = np.einsum("ij,jk,ik->i", a, posterior.cov, a)
    # 1 + h s > 0 because the prior keeps the leave-one-out precision positive definite;
    # the floor only guards rounding.
    v = s / np.maximum(1.0 + h * s, 1e-9)
    m = eta - v * g
    nodes = m[:, None] + np.sqrt(np.maximum(v, 0.0))[:, None] * _GH_NODES[None, :]
    probs = category_probabilities(
        nodes, np.broadcast_to(d[:, None, :], (*nodes.shape, d.shape[1]))
    )
    return np.asarray(np.einsum("ink,n->ik", probs, _GH_WEIGHTS))


def _graded(bank: ItemBank, answers: Sequence[TimedAnswer]) -> tuple[IntArray, IntArray]:
    pairs = [
        (bank.index(a.item_id), a.value)
        for a in answers
        if a.value is not None and bank.get(a.item_id).graded
    ]
    return (
        np.array([p[0] for p in pairs], dtype=np.int_),
        np.array([p[1] for p in pairs], dtype=np.int_),
    )


def _median_seconds(answers: Sequence[TimedAnswer], limits: QualityThresholds) -> float | None:
    # Skips are left out: a quick skip is a decision, not a sign of not reading.
    times = [a.elapsed_ms for a in answers if a.value is not None and a.elapsed_ms is not None]
    if len(times) < limits.speeder_min_timed:
        return None
    return float(np.median(times)) / 1000.0


def _straight_lining(
    bank: ItemBank, answers: Sequence[TimedAnswer], limits: QualityThresholds
) -> tuple[int, str | None]:
    """(longest run of one Likert category, reason if flagged).

    Runs are counted over answered Likert statements in order; choice, boundary and
    attention items and skips in between are passed over, since they have other answer
    scales. About half the bank is reverse-keyed (negative loadings), so one non-neutral
    category held across both keyings is not a consistent opinion; the reason says how many
    of the run were reverse-keyed, and person fit (`inconsistent`) weighs the contradiction.
    """
    likert = [
        (a.value, _reverse_keyed(bank, a.item_id))
        for a in answers
        if a.value is not None and bank.get(a.item_id).kind is ItemKind.LIKERT
    ]
    if not likert:
        return 0, None
    best_len, best_end, run = 1, 0, 1
    for i in range(1, len(likert)):
        run = run + 1 if likert[i][0] == likert[i - 1][0] else 1
        if run > best_len:
            best_len, best_end = run, i
    stretch = likert[best_end - best_len + 1 : best_end + 1]
    label = LIKERT_LABELS[stretch[0][0]]
    reversed_count = sum(1 for _, rev in stretch if rev)
    keyed = f" ({reversed_count} of them reverse-keyed)" if reversed_count else ""
    if len(likert) >= limits.straight_min_likert and best_len == len(likert):
        return best_len, f"all {best_len} statements answered {label!r}{keyed}"
    if best_len >= limits.straight_run:
        return best_len, f"{best_len} statements in a row answered {label!r}{keyed}"
    return best_len, None


def _reverse_keyed(bank: ItemBank, item_id: str) -> bool:
    item = bank.get(item_id)
    primary = item.primary_dim()
    return primary is not None and item.loadings[primary] < 0
