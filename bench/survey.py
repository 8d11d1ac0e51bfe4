"""Benchmark of the adaptive survey: recovery by item count, and engine latency per question.

Run:  .venv/bin/python bench/survey.py [--respondents 200] [--max-items 120] [--seed 0]

Prints a markdown table (adaptive vs random order vs the full bank, side by side from one
run) and the time the engine takes to refit and choose the next item.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from valuetune.values.items import load_item_bank
from valuetune.values.simulate import SimulationConfig, simulate
from valuetune.values.survey import SurveyConfig, SurveySession


def recovery(respondents: int, max_items: int, seed: int) -> None:
    bank = load_item_bank()
    started = time.perf_counter()
    doc = simulate(bank, SimulationConfig(respondents=respondents, max_items=max_items, seed=seed))
    elapsed = time.perf_counter() - started
    print(
        f"Recovery of value-axis vectors, {respondents} simulated respondents, seed {seed} "
        f"({elapsed:.0f} s)\n"
    )
    print("| items | adaptive r | random r | adaptive RMSE | random RMSE |")
    print("|---:|---:|---:|---:|---:|")
    for count, cell in doc["adaptive"].items():
        rnd = doc["random"][count]
        cells = (cell["r"], rnd["r"], cell["rmse"], rnd["rmse"])
        print(f"| {count} | " + " | ".join(f"{x:.3f}" for x in cells) + " |")
    n = doc["config"]["value_items_in_bank"]
    print(f"| full bank ({n}) | {doc['full']['r']:.3f} | | {doc['full']['rmse']:.3f} | |\n")
    print("| population | adaptive r @20 | full-bank r | respondents |")
    print("|---|---:|---:|---:|")
    for pop, cells in doc["by_population"].items():
        at20 = cells["adaptive"].get("20", {"r": float("nan")})["r"]
        print(f"| {pop} | {at20:.3f} | {cells['full']['r']:.3f} | {cells['respondents']} |")


def latency(repeats: int, seed: int) -> None:
    """Wall time of `answer()` (refit) plus `next_item()` (selection), per question."""
    bank = load_item_bank()
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(repeats):
        session = SurveySession(bank, SurveyConfig())
        while (item := session.next_item()) is not None:
            started = time.perf_counter()
            session.answer(item.id, int(rng.integers(item.n_categories)))
            session.next_item()
            times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    print(
        f"\nEngine time per question (refit + next item), {len(ms)} questions: "
        f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--respondents", type=int, default=200)
    parser.add_argument("--max-items", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    recovery(args.respondents, args.max_items, args.seed)
    latency(20, args.seed)


if __name__ == "__main__":
    main()
