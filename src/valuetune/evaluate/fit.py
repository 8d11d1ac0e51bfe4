"""The persona-fit benchmark: does the model choose the reply its token holder would?

On held-out scenarios the model scores every candidate reply (length-normalised
log-likelihood as the assistant's answer) and "chooses" the best one. Fit is the share of
scenarios where that choice is the reply the profile ranks first; rank correlation
(Spearman) compares the model's whole ordering with the profile's. A bootstrap over
scenarios gives a 95% interval; a per-axis breakdown groups scenarios by the value axis
their replies contrast most.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from valuetune.llm.base import LLMBackend, Message
from valuetune.tune.pairs import PreferencePair
from valuetune.tune.scenarios import Scenario
from valuetune.values.profile import ValueProfile

BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class ItemResult:
    scenario_id: str
    axis: str
    model_choice: int
    profile_choice: int
    rank_correlation: float  # NaN when undefined (ties)

    @property
    def agrees(self) -> bool:
        return self.model_choice == self.profile_choice


@dataclass(frozen=True)
class FitReport:
    fit: float
    fit_ci: tuple[float, float]
    rank_correlation: float
    per_axis: dict[str, dict[str, float]]
    items: tuple[ItemResult, ...]

    @property
    def n(self) -> int:
        return len(self.items)


def model_scores(backend: LLMBackend, scenario: Scenario) -> list[float]:
    """The model's length-normalised log-likelihood of each reply."""
    scores = backend.score([Message("user", scenario.prompt)], [a.text for a in scenario.actions])
    return [s.mean_logprob for s in scores]


def preference_margin(backend: LLMBackend, pairs: Sequence[PreferencePair]) -> float:
    """Mean length-normalised log-likelihood advantage of the chosen over the rejected reply."""
    total = 0.0
    for pair in pairs:
        chosen, rejected = backend.score(
            [Message("user", pair.prompt)], [pair.chosen, pair.rejected]
        )
        total += chosen.mean_logprob - rejected.mean_logprob
    return total / max(1, len(pairs))


def bootstrap_ci(values: Sequence[float], *, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, resampling items with replacement."""
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (BOOTSTRAP_SAMPLES, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def evaluate_items(
    backend: LLMBackend, profile: ValueProfile, scenarios: Sequence[Scenario]
) -> list[ItemResult]:
    results = []
    for scenario in scenarios:
        if not scenario.annotated:
            continue
        utilities = [a.utility(profile) for a in scenario.actions]
        scores = model_scores(backend, scenario)
        if len(set(utilities)) > 1 and len(set(scores)) > 1:
            rho = float(spearmanr(utilities, scores).statistic)
        else:
            rho = float("nan")
        results.append(
            ItemResult(
                scenario.id,
                scenario.contrast_axis() or "none",
                int(np.argmax(scores)),
                int(np.argmax(utilities)),
                rho,
            )
        )
    return results


def summarise(items: Sequence[ItemResult], *, seed: int = 0) -> FitReport:
    agreement = [1.0 if i.agrees else 0.0 for i in items]
    rhos = [i.rank_correlation for i in items if not np.isnan(i.rank_correlation)]
    by_axis: dict[str, list[float]] = defaultdict(list)
    for item, agree in zip(items, agreement, strict=True):
        by_axis[item.axis].append(agree)
    return FitReport(
        fit=float(np.mean(agreement)) if agreement else float("nan"),
        fit_ci=bootstrap_ci(agreement, seed=seed),
        rank_correlation=float(np.mean(rhos)) if rhos else float("nan"),
        per_axis={
            a: {"fit": float(np.mean(v)), "n": float(len(v))} for a, v in sorted(by_axis.items())
        },
        items=tuple(items),
    )


def persona_fit(
    backend: LLMBackend, profile: ValueProfile, scenarios: Sequence[Scenario], *, seed: int = 0
) -> FitReport:
    """Fit of `backend`'s choices to `profile` on `scenarios` (use the held-out split)."""
    return summarise(evaluate_items(backend, profile, scenarios), seed=seed)


def choice_disagreement(a: FitReport, b: FitReport, contested: set[str]) -> float:
    """Share of `contested` scenarios on which two models choose different replies."""
    first = {i.scenario_id: i.model_choice for i in a.items}
    second = {i.scenario_id: i.model_choice for i in b.items}
    shared = [s for s in contested if s in first and s in second]
    if not shared:
        return float("nan")
    return sum(first[s] != second[s] for s in shared) / len(shared)
