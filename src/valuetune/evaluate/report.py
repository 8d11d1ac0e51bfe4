"""One evaluation document: the aligned model's fit against the base model's, side by side."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from valuetune.evaluate.fit import FitReport, persona_fit
from valuetune.llm.base import LLMBackend
from valuetune.tune.scenarios import ScenarioBank
from valuetune.values.profile import ValueProfile


@cache
def general_text() -> tuple[str, ...]:
    """Held-out general text written for the project (capability retention)."""
    text = resources.files("valuetune.evaluate").joinpath("data", "general_text.txt").read_text()
    return tuple(p.strip() for p in text.split("\n\n") if p.strip())


@dataclass(frozen=True)
class Baseline:
    """The base model's side of an evaluation, computed once when comparing methods."""

    fit: FitReport
    perplexity: float


def baseline(
    base: LLMBackend, profile: ValueProfile, bank: ScenarioBank, seed: int = 0
) -> Baseline:
    return Baseline(
        persona_fit(base, profile, bank.split("heldout"), seed=seed),
        base.perplexity(general_text()),
    )


def evaluate_method(
    base: LLMBackend,
    aligned: LLMBackend,
    profile: ValueProfile,
    bank: ScenarioBank,
    *,
    method: str,
    seed: int = 0,
    base_side: Baseline | None = None,
) -> dict[str, Any]:
    """The JSON document of `valuetune eval`."""
    base_side = base_side or baseline(base, profile, bank, seed)
    before, ppl_base = base_side.fit, base_side.perplexity
    after = persona_fit(aligned, profile, bank.split("heldout"), seed=seed)
    ppl = aligned.perplexity(general_text())
    return {
        "method": method,
        "fit": round(after.fit, 4),
        "fit_ci": [round(after.fit_ci[0], 4), round(after.fit_ci[1], 4)],
        "base_fit": round(before.fit, 4),
        "base_fit_ci": [round(before.fit_ci[0], 4), round(before.fit_ci[1], 4)],
        "gain": round(after.fit - before.fit, 4),
        "rank_correlation": round(after.rank_correlation, 4),
        "base_rank_correlation": round(before.rank_correlation, 4),
        "perplexity": round(ppl, 4),
        "base_perplexity": round(ppl_base, 4),
        "perplexity_change": round(ppl / ppl_base - 1.0, 4),
        "per_axis": {
            axis: {
                "fit": round(cell["fit"], 4),
                "base_fit": round(before.per_axis[axis]["fit"], 4),
                "n": int(cell["n"]),
            }
            for axis, cell in after.per_axis.items()
        },
        "n_items": after.n,
        "choices": {i.scenario_id: i.model_choice for i in after.items},
    }
