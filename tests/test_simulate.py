"""The survey simulation: document shape, reproducibility, and adaptive beating random."""

from __future__ import annotations

import pytest

from valuetune.values.items import load_item_bank
from valuetune.values.simulate import SimulationConfig, simulate

BANK = load_item_bank()


def test_document_shape_and_reproducibility() -> None:
    config = SimulationConfig(respondents=6, max_items=12, seed=5)
    doc = simulate(BANK, config)
    assert set(doc["adaptive"]) == set(doc["random"]) == {"5", "10"}
    for strategy in ("adaptive", "random"):
        for cell in doc[strategy].values():
            assert set(cell) == {"r", "rmse"}
            assert -1.0 <= cell["r"] <= 1.0 and cell["rmse"] > 0
    assert set(doc["full"]) == {"r", "rmse"}
    assert doc["config"]["value_items_in_bank"] >= 120
    assert simulate(BANK, config) == doc
    assert simulate(BANK, SimulationConfig(respondents=6, max_items=12, seed=6)) != doc


def test_more_items_recover_profiles_better_and_adaptive_beats_random() -> None:
    doc = simulate(BANK, SimulationConfig(respondents=40, max_items=20, seed=11))
    adaptive, random = doc["adaptive"], doc["random"]
    counts = ["5", "10", "15", "20"]
    assert [adaptive[c]["r"] for c in counts] == sorted(adaptive[c]["r"] for c in counts)
    for c in counts:
        assert adaptive[c]["r"] > random[c]["r"], c
        assert adaptive[c]["rmse"] < random[c]["rmse"], c
    assert doc["full"]["r"] > adaptive["20"]["r"]


@pytest.mark.slow
def test_adaptive_beats_random_at_every_length_at_benchmark_scale() -> None:
    doc = simulate(BANK, SimulationConfig(respondents=200, max_items=40, seed=0))
    for count, cell in doc["adaptive"].items():
        assert cell["r"] > doc["random"][count]["r"], count
    assert doc["adaptive"]["20"]["r"] >= 0.78  # recorded in bench/README.md: 0.80


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        SimulationConfig(respondents=0)
    with pytest.raises(ValueError):
        SimulationConfig(persona_share=2.0)
