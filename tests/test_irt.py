"""The graded response model and Bayesian estimation: exact maths and the properties
an adaptive engine must have."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from valuetune.values.irt import (
    Estimator,
    category_probabilities,
    expected_information,
    information,
    loglik_terms,
)
from valuetune.values.items import ItemKind, load_item_bank

BANK = load_item_bank()
A, D = BANK.parameters()
AXES = BANK.axes
ESTIMATOR = Estimator(A, D, AXES.prior_covariance())
GRADED = np.array([i for i, it in enumerate(BANK.items) if it.graded])
SINGLE_AXIS = [
    i
    for i, it in enumerate(BANK.items)
    if it.graded and len(it.loadings) == 1 and it.primary_dim() in AXES.value_ids
]
N_VALUES = len(AXES.value_axes)

answers_history = st.lists(
    st.tuples(st.sampled_from(GRADED.tolist()), st.integers(0, 4)),
    max_size=25,
    unique_by=lambda pair: pair[0],
)


def _fit(history: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    idx = np.array([h[0] for h in history], dtype=np.int_)
    y = np.array([min(h[1], BANK.items[h[0]].n_categories - 1) for h in history], dtype=np.int_)
    return idx, y


def test_category_probabilities_sum_to_one_and_shift_with_eta() -> None:
    etas = np.linspace(-6, 6, 25)
    for row in GRADED[:40]:
        p = category_probabilities(etas, np.broadcast_to(D[row], (25, 4)))
        assert np.allclose(p.sum(axis=1), 1.0)
        k = BANK.items[row].n_categories
        assert np.allclose(p[:, k:], 0.0)
        expected = p @ np.arange(5)
        assert np.all(np.diff(expected) > 0)  # higher eta, higher expected answer


def test_derivatives_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    rows = rng.choice(GRADED, 50)
    eta = rng.normal(0, 2, 50)
    y = np.array([rng.integers(BANK.items[r].n_categories) for r in rows])
    _, g, h = loglik_terms(eta, D[rows], y)
    eps = 1e-5
    lp_hi, g_hi, _ = loglik_terms(eta + eps, D[rows], y)
    lp_lo, g_lo, _ = loglik_terms(eta - eps, D[rows], y)
    assert np.allclose(g, (lp_hi - lp_lo) / (2 * eps), atol=1e-5)
    assert np.allclose(h, (g_hi - g_lo) / (2 * eps), atol=1e-4)
    assert np.all(h < 0)  # log-concave


def test_information_is_the_expected_squared_score() -> None:
    for row in GRADED[::10]:
        for eta in (-2.0, 0.0, 1.3):
            e = np.array([eta])
            p = category_probabilities(e, D[row][None])[0]
            ys = np.arange(BANK.items[row].n_categories)
            _, g, _ = loglik_terms(np.full(len(ys), eta), np.broadcast_to(D[row], (len(ys), 4)), ys)
            fisher = float(np.sum(p[: len(ys)] * g**2))
            assert information(e, D[row][None])[0] == pytest.approx(fisher, rel=1e-6)
    # with no uncertainty about eta, the expected information is the information itself
    m = np.zeros(len(GRADED))
    assert np.allclose(expected_information(m, m, D[GRADED]), information(m, D[GRADED]))


@settings(max_examples=60, deadline=None)
@given(answers_history)
def test_fit_finds_the_mode_and_shrinks_uncertainty_below_the_prior(
    history: list[tuple[int, int]],
) -> None:
    idx, y = _fit(history)
    post = ESTIMATOR.fit(idx, y)
    _, g, _ = loglik_terms(A[idx] @ post.mean, D[idx], y)
    grad = A[idx].T @ g - ESTIMATOR.prior_precision @ post.mean
    assert np.max(np.abs(grad)) < 1e-5
    # Posterior precision = prior precision + a PSD term, so the covariance is below the prior's.
    gap = np.linalg.eigvalsh(ESTIMATOR.prior_cov - post.cov)
    assert gap.min() > -1e-9
    assert np.all(post.sd <= 1.0 + 1e-9)


@settings(max_examples=80, deadline=None)
@given(answers_history, st.sampled_from(SINGLE_AXIS), st.data())
def test_answering_toward_a_pole_moves_the_estimate_toward_it(
    history: list[tuple[int, int]], row: int, data: st.DataObject
) -> None:
    history = [h for h in history if h[0] != row]
    idx, y = _fit(history)
    before = ESTIMATOR.fit(idx, y)
    item = BANK.items[row]
    axis = AXES.dims.index(item.primary_dim() or "")
    sign = np.sign(A[row, axis])
    top = item.n_categories - 1
    agree = ESTIMATOR.fit(np.append(idx, row), np.append(y, top), start=before.mean)
    disagree = ESTIMATOR.fit(np.append(idx, row), np.append(y, 0), start=before.mean)
    assert sign * (agree.mean[axis] - before.mean[axis]) > 0
    assert sign * (disagree.mean[axis] - before.mean[axis]) < 0
    # and answers are ordered: a higher category never moves it less far toward the pole
    k = data.draw(st.integers(0, top - 1))
    lo = ESTIMATOR.fit(np.append(idx, row), np.append(y, k), start=before.mean)
    hi = ESTIMATOR.fit(np.append(idx, row), np.append(y, k + 1), start=before.mean)
    assert sign * (hi.mean[axis] - lo.mean[axis]) > 0


def test_uncertainty_shrinks_as_items_are_answered() -> None:
    rng = np.random.default_rng(3)
    target = np.r_[np.ones(N_VALUES), np.zeros(len(AXES.style))]
    pool = np.array([i for i in GRADED if set(BANK.items[i].loadings) <= set(AXES.value_ids)])
    traces = np.zeros(21)
    for _ in range(15):
        theta = rng.multivariate_normal(np.zeros(len(AXES.dims)), ESTIMATOR.prior_cov)
        answers = np.zeros(len(BANK.items), dtype=np.int_)
        answers[pool] = ESTIMATOR.simulate_answers(theta, pool, rng)  # one answer per item
        post, asked = ESTIMATOR.prior(), list[int]()
        traces[0] += np.trace(post.cov[:N_VALUES, :N_VALUES])
        for step in range(1, 21):
            item = ESTIMATOR.select(post, np.setdiff1d(pool, asked), target)
            assert item is not None and item not in asked
            asked.append(item)
            idx = np.array(asked)
            post = ESTIMATOR.fit(idx, answers[idx], start=post.mean)
            traces[step] += np.trace(post.cov[:N_VALUES, :N_VALUES])
    assert np.all(np.diff(traces) < 0)
    assert traces[20] < 0.6 * traces[0]


def test_selection_prefers_informative_items_on_the_target() -> None:
    post = ESTIMATOR.prior()
    style_only = np.r_[np.zeros(N_VALUES), np.ones(len(AXES.style))]
    chosen = ESTIMATOR.select(post, GRADED, style_only)
    assert chosen is not None
    assert BANK.items[chosen].primary_dim() in AXES.style_ids
    gains = ESTIMATOR.gains(post, GRADED, style_only)
    value_rows = [k for k, i in enumerate(GRADED) if BANK.items[i].primary_dim() in AXES.value_ids]
    assert np.allclose(gains[value_rows], 0.0)
    assert ESTIMATOR.select(post, np.array([], dtype=np.int_), style_only) is None


def test_simulated_answers_follow_the_model() -> None:
    rng = np.random.default_rng(0)
    row = next(i for i in GRADED if BANK.items[i].kind is ItemKind.LIKERT)
    theta = np.zeros(len(AXES.dims))
    idx = np.full(20000, row)
    answers = ESTIMATOR.simulate_answers(theta, idx, rng)
    observed = np.bincount(answers, minlength=5) / len(answers)
    expected = category_probabilities(np.zeros(1), D[row][None])[0]
    assert np.allclose(observed, expected, atol=0.015)


def test_posterior_moments_match_quadrature_in_one_dimension() -> None:
    a = np.array([[1.8], [1.5], [2.0], [1.2], [1.6]])
    d = np.array(
        [
            [2, 0.7, -0.7, -2],
            [1.5, 0.2, -1, -2.5],
            [2.5, 1, 0, -1],
            [1, -0.2, -1.5, -3],
            [2.2, 0.9, -0.4, -1.8],
        ]
    )
    estimator = Estimator(a, d, np.eye(1))
    idx = np.arange(5)
    for y in (np.array([4, 4, 3, 4, 4]), np.array([0, 1, 0, 2, 1]), np.array([2, 3, 1, 2, 2])):
        grid = np.linspace(-8, 8, 16001)
        probs = category_probabilities(
            np.outer(grid, a[:, 0]), np.broadcast_to(d, (len(grid), 5, 4))
        )
        log_post = np.log(probs[:, idx, y]).sum(axis=1) - grid**2 / 2
        w = np.exp(log_post - log_post.max())
        w /= w.sum()
        mean = float(w @ grid)
        var = float(w @ (grid - mean) ** 2)
        moments = estimator.posterior_moments(idx, y, samples=16384)
        assert moments.mean[0] == pytest.approx(mean, abs=0.02)
        assert moments.cov[0, 0] == pytest.approx(var, rel=0.06)
        laplace = estimator.fit(idx, y)
        # the sampled mean is closer to the true mean than the Laplace mode is (or as close)
        assert abs(moments.mean[0] - mean) <= abs(laplace.mean[0] - mean) + 0.01


def test_posterior_moments_are_reproducible_and_close_to_laplace() -> None:
    rng = np.random.default_rng(9)
    idx = rng.choice(GRADED, 25, replace=False)
    theta = rng.multivariate_normal(np.zeros(len(AXES.dims)), ESTIMATOR.prior_cov)
    y = ESTIMATOR.simulate_answers(theta, idx, rng)
    first = ESTIMATOR.posterior_moments(idx, y)
    assert np.array_equal(first.mean, ESTIMATOR.posterior_moments(idx, y).mean)
    laplace = ESTIMATOR.fit(idx, y)
    assert np.max(np.abs(first.mean - laplace.mean)) < 0.2
    assert np.all(np.abs(first.sd / laplace.sd - 1) < 0.2)
    assert not np.array_equal(first.mean, laplace.mean)  # really sampled, not the fallback
