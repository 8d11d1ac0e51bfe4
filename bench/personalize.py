"""Persona fit of every alignment method for contrasting personas (issue 4's targets).

Run:  .venv/bin/python bench/personalize.py [--personas progressive-activist national-conservative]
      [--methods precis steer soup dpo] [--dpo-settings '{"pairs": 256}'] [--home DIR]
      [--library DIR]   (soup: a library built by `valuetune soup build`)
      [--train-scenarios N]   (train on N of the training scenarios: a learning curve)

For each persona: the base model's fit on the held-out scenarios, each method's fit, gain,
95% CI and perplexity change, build time, and the fit on the 75 held-out scenarios of the
first 320-scenario bank (comparable with runs before the bank grew); and, between the
first two personas, how often their personalized models choose differently on the
held-out scenarios where the two profiles disagree. Uses the embedded model (converted
once under --home).

With --train-scenarios N, methods see only N training scenarios: the first N of one fixed
random order, so smaller sets are nested in larger ones. The held-out scenarios are the
same whatever N is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from valuetune.evaluate.report import baseline, evaluate_method
from valuetune.llm.base import ContinuationScore, Generation, GenerationOptions, LLMBackend, Message
from valuetune.llm.local import TransformersBackend
from valuetune.tune.dpo import DPOMethod, DPOSettings
from valuetune.tune.methods import AlignmentMethod, TuneRequest
from valuetune.tune.precis import PrecisMethod
from valuetune.tune.scenarios import Scenario, ScenarioBank, load_scenario_bank
from valuetune.tune.soup import SoupMethod
from valuetune.tune.steer import SteerMethod
from valuetune.values.personas import get_persona
from valuetune.values.profile import ValueProfile

FIRST_BANK = ("wf", "hf", "cf", "wt")
"""Id prefixes of the first 320 scenarios: their held-out 75 keep comparisons with older runs."""

METHODS: dict[str, AlignmentMethod] = {
    "precis": PrecisMethod(),
    "steer": SteerMethod(),
    "soup": SoupMethod(),
    "dpo": DPOMethod(),
}


def fewer_training_scenarios(bank: ScenarioBank, n: int) -> ScenarioBank:
    """`bank` with only the first `n` training scenarios of one fixed random order."""
    train = bank.split("train")
    if not 0 < n <= len(train):
        raise SystemExit(f"--train-scenarios must be 1-{len(train)}")
    order = np.random.default_rng(0).permutation(len(train))
    kept = {train[i].id for i in order[:n]}
    return replace(
        bank, scenarios=tuple(s for s in bank.scenarios if s.split != "train" or s.id in kept)
    )


class RememberedBase(LLMBackend):
    """The base model, each score and perplexity computed once: its choices on the held-out
    scenarios do not depend on the persona, only their agreement with it does."""

    def __init__(self, backend: LLMBackend) -> None:
        self.backend = backend
        self.name = backend.name
        self._scores: dict[Any, list[ContinuationScore]] = {}
        self._perplexity: dict[tuple[str, ...], float] = {}

    def generate(self, messages: Sequence[Message], options: GenerationOptions) -> Generation:
        return self.backend.generate(messages, options)

    def score(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        key = (tuple(messages), tuple(continuations))
        if key not in self._scores:
            self._scores[key] = self.backend.score(messages, continuations)
        return self._scores[key]

    def perplexity(self, texts: Sequence[str]) -> float:
        key = tuple(texts)
        if key not in self._perplexity:
            self._perplexity[key] = self.backend.perplexity(texts)
        return self._perplexity[key]


def agreement(choices: dict[str, int], scenarios: list[Scenario], profile: ValueProfile) -> float:
    """Persona fit on `scenarios` from a model's choices (scenario id -> reply index)."""
    hits = [
        choices[s.id] == int(np.argmax([a.utility(profile) for a in s.actions])) for s in scenarios
    ]
    return float(np.mean(hits)) if hits else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--personas", nargs="+", default=["progressive-activist", "national-conservative"]
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument(
        "--dpo-settings", type=json.loads, default={}, help="DPOSettings fields as JSON"
    )
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "vt-bench-home")
    parser.add_argument("--library", type=Path, help="soup library (default: under --home)")
    parser.add_argument("--train-scenarios", type=int, help="train on this many scenarios")
    args = parser.parse_args()
    METHODS["soup"] = SoupMethod(args.home)
    METHODS["dpo"] = DPOMethod(DPOSettings(**args.dpo_settings))
    backend = TransformersBackend.embedded(args.home)
    remembered = RememberedBase(backend)
    bank = load_scenario_bank()
    if args.train_scenarios is not None:
        bank = fewer_training_scenarios(bank, args.train_scenarios)
    heldout = bank.split("heldout")
    first_heldout = [s for s in heldout if s.id.split("-")[0] in FIRST_BANK]
    work = Path(tempfile.mkdtemp(prefix="vt-bench-"))
    print(
        f"{len(heldout)} held-out scenarios ({len(first_heldout)} of the first 320-scenario "
        f"bank), {len(bank.split('train'))} training scenarios; model {backend.model_id}\n"
    )
    print(
        "| persona | method | fit | 95% CI | base fit | gain | rank corr | ppl change | build s "
        "| fit on the first 75 (base) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    aligned: dict[tuple[str, str], Any] = {}
    for persona_id in args.personas:
        profile = get_persona(persona_id).profile
        base_side = baseline(remembered, profile, bank)
        base_choices = {i.scenario_id: i.model_choice for i in base_side.fit.items}
        base_first = agreement(base_choices, first_heldout, profile)
        for name in args.methods:
            method = METHODS[name]
            out = work / f"{persona_id}-{name}"
            started = time.perf_counter()
            extra = {"library": args.library} if args.library else {}
            method.build(
                TuneRequest(backend, profile, persona_id, bank, backend.model_id, extra), out
            )
            built = time.perf_counter() - started
            model = method.apply(backend, out)
            doc = evaluate_method(backend, model, profile, bank, method=name, base_side=base_side)
            aligned[(persona_id, name)] = doc["choices"]
            first = agreement(doc["choices"], first_heldout, profile)
            print(
                f"| {persona_id} | {name} | {doc['fit']:.3f} | {doc['fit_ci'][0]:.2f}-"
                f"{doc['fit_ci'][1]:.2f} | {doc['base_fit']:.3f} | {doc['gain']:+.3f} | "
                f"{doc['rank_correlation']:.3f} | {doc['perplexity_change']:+.1%} | {built:.0f} "
                f"| {first:.3f} ({base_first:.3f}) |",
                flush=True,
            )
    if len(args.personas) >= 2:
        first, second = (get_persona(p).profile for p in args.personas[:2])
        contested = {s.id for s in heldout if s.ranking(first)[0][0] != s.ranking(second)[0][0]}
        print(f"\n{len(contested)} held-out scenarios where the two profiles' first choices differ")
        for name in args.methods:
            one, two = aligned[(args.personas[0], name)], aligned[(args.personas[1], name)]
            share = sum(one[s] != two[s] for s in contested) / max(1, len(contested))
            early = [s for s in contested if s.split("-")[0] in FIRST_BANK]
            share_early = sum(one[s] != two[s] for s in early) / max(1, len(early))
            print(
                f"- {name}: the two personalized models choose differently on {share:.0%} "
                f"({share_early:.0%} of the {len(early)} from the first 320-scenario bank)"
            )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
