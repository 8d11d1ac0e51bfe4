"""The graded response model, vectorised, and Bayesian estimation under it.

Shapes: `eta` is the linear predictor a . theta of each item, shape (n,); `d` holds each
item's thresholds, shape (n, K-1) with -inf padding; answers `y` are categories (n,).
``S_k = P(Y >= k) = sigmoid(eta + d_k)``, with S_0 = 1 and S_K = 0; ``P(Y = k) = S_k - S_k+1``.
The log-likelihood of a graded item is concave in eta, so Newton's method on the
log-posterior (log-likelihood plus a Gaussian log-prior) converges to the unique mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

_P_FLOOR = 1e-12
# Gauss-Hermite nodes for expectations over eta ~ N(m, s^2) (probabilists' weights).
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(7)
_GH_WEIGHTS = _GH_WEIGHTS / _GH_WEIGHTS.sum()


def _sigmoid(x: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _bounded_cumulative(eta: Array, d: Array) -> Array:
    """S with its bounds: shape (..., K+1) = [1, S_1 .. S_K-1, 0]."""
    s = _sigmoid(eta[..., None] + d)
    ones = np.ones((*s.shape[:-1], 1))
    return np.concatenate([ones, s, np.zeros_like(ones)], axis=-1)


def category_probabilities(eta: Array, d: Array) -> Array:
    """P(Y = k) for every category, shape (..., K)."""
    s = _bounded_cumulative(eta, d)
    return np.clip(s[..., :-1] - s[..., 1:], 0.0, 1.0)


def information(eta: Array, d: Array) -> Array:
    """Fisher information about eta carried by one answer: sum_k P_k'^2 / P_k."""
    s = _bounded_cumulative(eta, d)
    w = s * (1.0 - s)
    p = np.maximum(s[..., :-1] - s[..., 1:], _P_FLOOR)
    dp = w[..., :-1] - w[..., 1:]
    return np.asarray(np.sum(dp * dp / p, axis=-1))


def expected_information(mean_eta: Array, sd_eta: Array, d: Array) -> Array:
    """E[information(eta)] for eta ~ N(mean_eta, sd_eta^2): the Bayesian item information."""
    eta = mean_eta[:, None] + sd_eta[:, None] * _GH_NODES[None, :]  # (n, nodes)
    info = information(eta, np.broadcast_to(d[:, None, :], (*eta.shape, d.shape[-1])))
    return np.asarray(info @ _GH_WEIGHTS)


def loglik_terms(eta: Array, d: Array, y: NDArray[np.int_]) -> tuple[Array, Array, Array]:
    """Per answer: log P(y), and its first and second derivatives in eta."""
    s = _bounded_cumulative(eta, d)
    rows = np.arange(len(y))
    s_lo, s_hi = s[rows, y], s[rows, y + 1]
    w_lo, w_hi = s_lo * (1.0 - s_lo), s_hi * (1.0 - s_hi)
    p = np.maximum(s_lo - s_hi, _P_FLOOR)
    g = (w_lo - w_hi) / p
    dw_lo, dw_hi = w_lo * (1.0 - 2.0 * s_lo), w_hi * (1.0 - 2.0 * s_hi)
    h = (dw_lo - dw_hi) / p - g * g
    # Concavity holds exactly; the clamp only guards against rounding at extreme eta.
    return np.log(p), g, np.minimum(h, -1e-10)


@dataclass(frozen=True)
class Posterior:
    """A Gaussian summary of the posterior over the latent dimensions."""

    mean: Array
    cov: Array

    @property
    def sd(self) -> Array:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))


class Estimator:
    """Bayesian estimation and adaptive item selection for one item bank.

    `a` (n_items, n_dims) and `d` (n_items, K-1) are the bank's parameters; the prior
    is N(0, prior_cov).
    """

    def __init__(self, a: Array, d: Array, prior_cov: Array) -> None:
        self.a, self.d = a, d
        self.prior_cov = prior_cov
        self.prior_precision = np.linalg.inv(prior_cov)

    def prior(self) -> Posterior:
        return Posterior(np.zeros(self.a.shape[1]), self.prior_cov.copy())

    def log_posterior(self, theta: Array, idx: NDArray[np.int_], y: NDArray[np.int_]) -> float:
        eta = self.a[idx] @ theta
        logp, _, _ = loglik_terms(eta, self.d[idx], y)
        return float(logp.sum() - 0.5 * theta @ self.prior_precision @ theta)

    def fit(
        self,
        idx: NDArray[np.int_],
        y: NDArray[np.int_],
        start: Array | None = None,
        *,
        tol: float = 1e-8,
        max_iter: int = 100,
    ) -> Posterior:
        """Laplace approximation: the posterior mode and the inverse negative Hessian there.

        Newton steps with backtracking; the objective is strictly concave (concave
        log-likelihood plus a Gaussian log-prior), so the mode is unique.
        """
        theta = np.zeros(self.a.shape[1]) if start is None else start.astype(np.float64).copy()
        if len(idx) == 0:
            return self.prior()
        a, d = self.a[idx], self.d[idx]
        current = self.log_posterior(theta, idx, y)
        hess = -self.prior_precision
        for _ in range(max_iter):
            _, g, h = loglik_terms(a @ theta, d, y)
            grad = a.T @ g - self.prior_precision @ theta
            hess = (a.T * h) @ a - self.prior_precision
            step = np.linalg.solve(hess, -grad)
            scale = 1.0
            while True:
                candidate = theta + scale * step
                value = self.log_posterior(candidate, idx, y)
                if value >= current - 1e-12 or scale < 1e-4:
                    break
                scale *= 0.5
            theta, moved, current = candidate, float(np.max(np.abs(scale * step))), value
            if moved < tol:
                break
        _, _, h = loglik_terms(a @ theta, d, y)
        hess = (a.T * h) @ a - self.prior_precision
        cov = np.linalg.inv(-hess)
        return Posterior(theta, 0.5 * (cov + cov.T))

    def posterior_moments(
        self,
        idx: NDArray[np.int_],
        y: NDArray[np.int_],
        laplace: Posterior | None = None,
        *,
        samples: int = 4096,
        seed: int = 0,
    ) -> Posterior:
        """Posterior mean and covariance by self-normalised importance sampling.

        The proposal is the Laplace fit with its covariance inflated by 1.1^2, so its tails
        cover the posterior's; a wider proposal wastes samples in 22 dimensions (effective
        sample size about 75% at 1.1, 2% at 1.5, measured on the built-in bank). Draws come
        from a fixed seed: the same answers always give the same profile. If the weights
        degenerate (effective sample size under 5%), the Laplace fit is returned.
        """
        if len(idx) == 0:
            return self.prior()
        fit = laplace if laplace is not None else self.fit(idx, y)
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((samples, len(fit.mean)))
        chol = np.linalg.cholesky(fit.cov * 1.21)
        theta = fit.mean + z @ chol.T  # (samples, dims)
        eta = theta @ self.a[idx].T  # (samples, answers)
        s = _bounded_cumulative(eta, np.broadcast_to(self.d[idx], (*eta.shape, self.d.shape[1])))
        cols = np.arange(len(y))
        p = np.maximum(s[:, cols, y] - s[:, cols, y + 1], _P_FLOOR)
        log_target = np.log(p).sum(axis=1) - 0.5 * np.einsum(
            "ij,jk,ik->i", theta, self.prior_precision, theta
        )
        log_w = log_target + 0.5 * np.einsum("ij,ij->i", z, z)  # minus log proposal density
        w = np.exp(log_w - log_w.max())
        w /= w.sum()
        if 1.0 / float(w @ w) < 0.05 * samples:
            return fit
        mean = w @ theta
        centred = theta - mean
        cov = (centred * w[:, None]).T @ centred
        return Posterior(mean, 0.5 * (cov + cov.T))

    def gains(self, post: Posterior, candidates: NDArray[np.int_], target: Array) -> Array:
        """Expected reduction of the summed posterior variance over `target` dims.

        For an item with loadings a and expected information I (averaged over the
        posterior of eta = a . theta), the rank-one update of the covariance gives
        ``trace_T(Sigma) - trace_T(Sigma') = I * |(Sigma a)_T|^2 / (1 + I a' Sigma a)``.
        `target` is a 0/1 weight per dim.
        """
        a = self.a[candidates]
        sa = a @ post.cov  # (n, dims)
        var_eta = np.einsum("ij,ij->i", sa, a)
        info = expected_information(
            a @ post.mean, np.sqrt(np.maximum(var_eta, 0.0)), self.d[candidates]
        )
        reach = np.einsum("ij,j,ij->i", sa, target, sa)
        return np.asarray(info * reach / (1.0 + info * var_eta))

    def select(self, post: Posterior, candidates: NDArray[np.int_], target: Array) -> int | None:
        """The candidate item that most reduces posterior variance on `target`."""
        if len(candidates) == 0:
            return None
        return int(candidates[int(np.argmax(self.gains(post, candidates, target)))])

    def simulate_answers(
        self, theta: Array, idx: NDArray[np.int_], rng: np.random.Generator
    ) -> NDArray[np.int_]:
        """Answers a respondent at `theta` gives under the model itself (with its noise)."""
        probs = category_probabilities(self.a[idx] @ theta, self.d[idx])
        cum = np.cumsum(probs, axis=-1)
        u = rng.random(len(idx))[:, None]
        answers = np.minimum(np.sum(cum < u, axis=-1), probs.shape[-1] - 1)
        return np.asarray(answers, dtype=np.int_)
