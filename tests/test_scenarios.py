"""The built-in scenario bank: size, coverage, annotations, split."""

from __future__ import annotations

from collections import Counter

from valuetune.tune.scenarios import load_scenario_bank
from valuetune.values.axes import load_axes
from valuetune.values.personas import get_persona

BANK = load_scenario_bank()
AXES = load_axes()


def test_bank_has_300_scenarios_across_12_domains() -> None:
    assert len(BANK) >= 300
    domains = Counter(s.domain for s in BANK.scenarios)
    assert len(domains) >= 12
    assert min(domains.values()) >= 10


def test_every_scenario_is_annotated_and_contrasts_an_axis() -> None:
    for scenario in BANK.scenarios:
        assert 2 <= len(scenario.actions) <= 4
        assert scenario.annotated, scenario.id
        axis = scenario.contrast_axis()
        weights = [a.loadings.get(axis or "", 0.0) for a in scenario.actions]
        assert max(weights) - min(weights) >= 1.0, scenario.id
        assert scenario.norm and scenario.situation and scenario.intention


def test_every_value_axis_is_contrasted_in_training_and_held_out_scenarios() -> None:
    for split in ("train", "heldout"):
        used = Counter(s.contrast_axis() for s in BANK.split(split))
        missing = set(AXES.value_ids) - set(used)
        assert not missing, (split, missing)


def test_texts_are_unique() -> None:
    prompts = [s.prompt.casefold() for s in BANK.scenarios]
    replies = [a.text.casefold() for s in BANK.scenarios for a in s.actions]
    assert len(set(prompts)) == len(prompts)
    assert len(set(replies)) == len(replies)


def test_split_is_about_one_in_five_and_stable() -> None:
    heldout = BANK.split("heldout")
    assert 0.12 * len(BANK) <= len(heldout) <= 0.28 * len(BANK)
    assert {s.id for s in heldout} == {s.id for s in load_scenario_bank().split("heldout")}
    assert not {s.id for s in heldout} & {s.id for s in BANK.split("train")}


def test_opposite_personas_rank_many_held_out_scenarios_differently() -> None:
    progressive = get_persona("progressive-activist").profile
    conservative = get_persona("national-conservative").profile
    heldout = BANK.split("heldout")
    contested = [
        s for s in heldout if s.ranking(progressive)[0][0] != s.ranking(conservative)[0][0]
    ]
    assert len(contested) >= 0.4 * len(heldout)
