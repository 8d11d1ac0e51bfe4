"""Simulated respondents: how well does the survey recover a profile, item by item?

Each simulated respondent has a true latent vector, drawn either from the population
prior or around an exemplar persona, and answers through the same response model the
engine assumes (so the answers carry the model's own noise). The same respondent then
answers (a) adaptively, (b) in a random order and (c) the whole value bank; at each
checkpoint we compare the estimated and true value-axis vectors by Pearson r and RMSE.

The model is its own ground truth here: the figures say how efficient the design is if
the item parameters are right, not how well they fit real people (that needs field data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from valuetune.values.irt import Estimator
from valuetune.values.items import ItemBank
from valuetune.values.personas import load_personas

CHECKPOINTS = (5, 10, 15, 20, 25, 30, 40, 60, 80, 120)
STRATEGIES = ("adaptive", "random")


@dataclass(frozen=True)
class SimulationConfig:
    respondents: int = 200
    max_items: int = 40
    seed: int = 0
    persona_share: float = 0.5
    """Fraction of respondents drawn around a persona; the rest come from the prior."""
    persona_spread: float = 0.5
    """Standard deviation of a persona-based respondent around the persona, per axis."""

    def __post_init__(self) -> None:
        if self.respondents < 1:
            raise ValueError("need at least one respondent")
        if self.max_items < 1:
            raise ValueError("max_items must be at least 1")
        if not 0.0 <= self.persona_share <= 1.0:
            raise ValueError("persona_share must be in [0, 1]")


def _pearson(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / denom if denom > 0 else 0.0


def _summary(rs: list[float], rmses: list[float]) -> dict[str, float]:
    return {"r": round(float(np.mean(rs)), 4), "rmse": round(float(np.mean(rmses)), 4)}


def simulate(bank: ItemBank, config: SimulationConfig) -> dict[str, Any]:
    """Run the simulation; the result is one JSON-ready document (see module docstring)."""
    axes = bank.axes
    a, d = bank.parameters()
    prior_cov = axes.prior_covariance()
    estimator = Estimator(a, d, prior_cov)
    n_values = len(axes.value_axes)
    target = np.zeros(len(axes.dims))
    target[:n_values] = 1.0
    pool = np.array(
        [
            i
            for i, it in enumerate(bank.items)
            if it.graded and set(it.loadings) <= set(axes.value_ids)
        ],
        dtype=np.int_,
    )
    k_max = min(config.max_items, len(pool))
    checkpoints = [c for c in CHECKPOINTS if c <= k_max]
    personas = [p.profile for p in load_personas(axes.version)]
    rng = np.random.default_rng(config.seed)

    # results[population][strategy][checkpoint] -> (list of r, list of rmse)
    populations = ("prior", "persona")
    results: dict[str, dict[str, dict[str, tuple[list[float], list[float]]]]] = {
        pop: {s: {str(c): ([], []) for c in checkpoints} for s in STRATEGIES} for pop in populations
    }
    full: dict[str, tuple[list[float], list[float]]] = {pop: ([], []) for pop in populations}

    def record(
        bucket: tuple[list[float], list[float]],
        truth: NDArray[np.float64],
        est: NDArray[np.float64],
    ) -> None:
        bucket[0].append(_pearson(truth, est))
        bucket[1].append(float(np.sqrt(np.mean((truth - est) ** 2))))

    for _ in range(config.respondents):
        theta = rng.multivariate_normal(np.zeros(len(axes.dims)), prior_cov)
        population = "prior"
        if rng.random() < config.persona_share:
            population = "persona"
            persona = personas[rng.integers(len(personas))]
            theta[:n_values] = persona.vector + rng.normal(0.0, config.persona_spread, n_values)
        truth = theta[:n_values]
        # One answer per item, fixed per respondent, so the strategies differ only in order.
        answers = np.full(len(bank.items), -1, dtype=np.int_)
        answers[pool] = estimator.simulate_answers(theta, pool, rng)

        # (a) adaptive
        post, asked = estimator.prior(), list[int]()
        for step in range(1, k_max + 1):
            remaining = np.setdiff1d(pool, asked)
            item = estimator.select(post, remaining, target)
            assert item is not None
            asked.append(item)
            idx = np.array(asked, dtype=np.int_)
            post = estimator.fit(idx, answers[idx], start=post.mean)
            if str(step) in results[population]["adaptive"]:
                record(results[population]["adaptive"][str(step)], truth, post.mean[:n_values])
        # (b) random order
        order = rng.permutation(pool)
        start = None
        for c in checkpoints:
            idx = order[:c]
            post = estimator.fit(idx, answers[idx], start=start)
            start = post.mean
            record(results[population]["random"][str(c)], truth, post.mean[:n_values])
        # (c) the full value bank
        post = estimator.fit(pool, answers[pool])
        record(full[population], truth, post.mean[:n_values])

    def merged(strategy: str) -> dict[str, dict[str, float]]:
        out = {}
        for c in checkpoints:
            rs = [r for pop in populations for r in results[pop][strategy][str(c)][0]]
            es = [e for pop in populations for e in results[pop][strategy][str(c)][1]]
            out[str(c)] = _summary(rs, es)
        return out

    doc: dict[str, Any] = {s: merged(s) for s in STRATEGIES}
    doc["full"] = _summary(
        [r for pop in populations for r in full[pop][0]],
        [e for pop in populations for e in full[pop][1]],
    )
    doc["by_population"] = {
        pop: {
            **{s: {c: _summary(*results[pop][s][c]) for c in results[pop][s]} for s in STRATEGIES},
            "full": _summary(*full[pop]),
            "respondents": len(full[pop][0]),
        }
        for pop in populations
        if full[pop][0]
    }
    doc["config"] = {
        "respondents": config.respondents,
        "max_items": config.max_items,
        "seed": config.seed,
        "persona_share": config.persona_share,
        "persona_spread": config.persona_spread,
        "value_items_in_bank": len(pool),
        "schema": axes.version,
    }
    return doc
