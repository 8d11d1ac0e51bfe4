"""The persona-fit benchmark's arithmetic, with backends whose preferences are known."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from valuetune.evaluate.fit import bootstrap_ci, choice_disagreement, persona_fit
from valuetune.evaluate.report import evaluate_method, general_text
from valuetune.llm.base import (
    BackendRegistry,
    ContinuationScore,
    Generation,
    GenerationOptions,
    LLMBackend,
    Message,
)
from valuetune.tune.scenarios import ScenarioBank, parse_bank
from valuetune.values.axes import load_axes
from valuetune.values.profile import ValueProfile

AXES = load_axes()


def _profile(**values: float) -> ValueProfile:
    return ValueProfile.from_mappings({a: values.get(a, 0.0) for a in AXES.value_ids})


class OracleBackend(LLMBackend):
    """Scores each reply by its utility to a fixed profile: a model whose values we know."""

    name = "oracle"

    def __init__(self, bank: ScenarioBank, profile: ValueProfile, ppl: float = 12.0) -> None:
        self.actions = {a.text: a for s in bank.scenarios for a in s.actions}
        self.profile, self.ppl = profile, ppl

    def generate(self, messages: Sequence[Message], options: GenerationOptions) -> Generation:
        return Generation("", 0, 0, "stop")

    def score(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        return [ContinuationScore(self.actions[c].utility(self.profile), 1) for c in continuations]

    def perplexity(self, texts: Sequence[str]) -> float:
        return self.ppl


def _bank() -> ScenarioBank:
    docs = []
    for i, axis in enumerate(["care", "economic", "social", "mercy"] * 30):
        docs.append(
            {
                "id": f"e{i:03d}",
                "domain": "work",
                "prompt": f"Q{i}?",
                "actions": [
                    {"text": f"e{i} high", "loadings": {axis: 0.9}},
                    {"text": f"e{i} mid", "loadings": {axis: 0.2}},
                    {"text": f"e{i} low", "loadings": {axis: -0.7}},
                ],
            }
        )
    return parse_bank(docs)


BANK = _bank()
PROGRESSIVE = _profile(care=1.5, economic=-1.2, social=1.8, mercy=1.0)
CONSERVATIVE = _profile(care=-0.8, economic=1.4, social=-1.6, mercy=-1.1)


def test_a_model_with_the_holders_values_fits_perfectly() -> None:
    report = persona_fit(OracleBackend(BANK, PROGRESSIVE), PROGRESSIVE, BANK.split("heldout"))
    assert report.fit == 1.0
    assert report.rank_correlation == pytest.approx(1.0)
    assert report.fit_ci == (1.0, 1.0)
    assert set(report.per_axis) == {"care", "economic", "social", "mercy"}


def test_a_model_with_opposite_values_fits_not_at_all() -> None:
    report = persona_fit(OracleBackend(BANK, CONSERVATIVE), PROGRESSIVE, BANK.split("heldout"))
    assert report.fit == 0.0
    assert report.rank_correlation == pytest.approx(-1.0)


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_data() -> None:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 2, 30).astype(float)
    large = rng.integers(0, 2, 3000).astype(float)
    low, high = bootstrap_ci(small)
    assert low <= small.mean() <= high
    assert (bootstrap_ci(large)[1] - bootstrap_ci(large)[0]) < (high - low) / 5
    assert bootstrap_ci(small) == bootstrap_ci(small)  # seeded


def test_opposite_holders_models_choose_differently_where_profiles_disagree() -> None:
    heldout = BANK.split("heldout")
    a = persona_fit(OracleBackend(BANK, PROGRESSIVE), PROGRESSIVE, heldout)
    b = persona_fit(OracleBackend(BANK, CONSERVATIVE), CONSERVATIVE, heldout)
    contested = {
        s.id for s in heldout if s.ranking(PROGRESSIVE)[0][0] != s.ranking(CONSERVATIVE)[0][0]
    }
    assert contested
    assert choice_disagreement(a, b, contested) == 1.0
    assert choice_disagreement(a, a, contested) == 0.0


def test_evaluation_document_has_the_contract_fields() -> None:
    registry = BackendRegistry()  # fakes go through the real registry
    registry.register("oracle", lambda profile: OracleBackend(BANK, profile))
    base = registry.create("oracle", profile=CONSERVATIVE)
    aligned = OracleBackend(BANK, PROGRESSIVE, ppl=13.2)
    doc = evaluate_method(base, aligned, PROGRESSIVE, BANK, method="oracle")
    for field in ("fit", "fit_ci", "base_fit", "gain", "perplexity_change", "method", "per_axis"):
        assert field in doc
    assert doc["fit"] == 1.0 and doc["base_fit"] == 0.0 and doc["gain"] == 1.0
    assert doc["perplexity_change"] == pytest.approx(0.1)
    assert doc["n_items"] == len(BANK.split("heldout"))


def test_general_text_is_long_enough_for_a_stable_perplexity() -> None:
    paragraphs = general_text()
    assert len(paragraphs) >= 25
    assert sum(len(p.split()) for p in paragraphs) > 2000
