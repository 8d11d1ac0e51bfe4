"""How much persona fit can any linear readout of the base model's features reach?

Run:  .venv/bin/python -u bench/probe.py [--personas progressive-activist national-conservative]
      [--home DIR]

Each (scenario, reply) is represented by the base model's hidden states, averaged over
the reply's tokens, at a few layers. A ridge regression learns the persona's utility of
a reply from that representation on the training scenarios (ridge strength chosen by
5-fold cross-validation over training scenarios only); on the held-out scenarios the
reply with the highest predicted utility is the probe's choice, scored like persona fit.
The learning curve (60, 120, 180, all training scenarios) shows whether more scenarios
would help. This bounds what an adapter that learns a *readout* of the model's existing
features can do with this scenario bank; an adapter can also change the features, so it
is evidence, not a proof.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from valuetune.llm.base import Message
from valuetune.llm.local import TransformersBackend
from valuetune.tune.scenarios import Scenario, load_scenario_bank
from valuetune.values.personas import get_persona

LAYERS = (15, 21)
LAMBDAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


@torch.inference_mode()
def features(backend: TransformersBackend, scenarios: list[Scenario]) -> np.ndarray:
    """(replies, layers, hidden): mean hidden state over each reply's tokens."""
    rows = []
    for scenario in scenarios:
        for action in scenario.actions:
            prompt, reply = backend.continuation_ids(
                [Message("user", scenario.prompt)], action.text
            )
            out = backend.model(input_ids=torch.tensor([prompt + reply]), output_hidden_states=True)
            states = torch.stack([out.hidden_states[k] for k in LAYERS])[:, 0, len(prompt) :]
            rows.append(states.mean(1).float().numpy())
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--personas", nargs="+", default=["progressive-activist", "national-conservative"]
    )
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "vt-bench-home")
    args = parser.parse_args()
    backend = TransformersBackend.embedded(args.home)
    bank = load_scenario_bank()
    scenarios = [s for s in bank.split("train") + bank.split("heldout") if s.annotated]
    feats = features(backend, scenarios)
    groups, start = [], 0
    for s in scenarios:
        groups.append(list(range(start, start + len(s.actions))))
        start += len(s.actions)
    train = [j for j, s in enumerate(scenarios) if s.split == "train"]
    test = [j for j, s in enumerate(scenarios) if s.split == "heldout"]
    rng = np.random.default_rng(0)

    def centred(x: np.ndarray) -> np.ndarray:  # within-scenario centring: only differences count
        x = x.copy()
        for g in groups:
            x[g] -= x[g].mean(0)
        return x

    def accuracy(
        x: np.ndarray,
        y: np.ndarray,
        first: list[int],
        fit_on: list[int],
        score_on: list[int],
        lam: float,
    ) -> float:
        rows = [i for j in fit_on for i in groups[j]]
        w = np.linalg.solve(x[rows].T @ x[rows] + lam * np.eye(x.shape[1]), x[rows].T @ y[rows])
        pred = x @ w
        return float(np.mean([int(np.argmax(pred[groups[j]])) == first[j] for j in score_on]))

    print(
        f"{len(train)} training and {len(test)} held-out scenarios; chance ≈ "
        f"{np.mean([1 / len(scenarios[j].actions) for j in test]):.3f}\n"
    )
    print("| persona | layer | ridge (CV) | CV fit | held-out fit by training scenarios used |")
    print("|---|---:|---:|---:|---|")
    for persona in args.personas:
        profile = get_persona(persona).profile
        util = np.array([a.utility(profile) for s in scenarios for a in s.actions])
        y = centred(util[:, None])[:, 0]
        first = [int(np.argmax(util[g])) for g in groups]
        for k, layer in enumerate(LAYERS):
            x = centred(feats[:, k, :])
            x /= x.std()
            folds = np.array_split(rng.permutation(train), 5)
            cv = [
                np.mean(
                    [
                        accuracy(x, y, first, [j for j in train if j not in set(f)], list(f), lam)
                        for f in folds
                    ]
                )
                for lam in LAMBDAS
            ]
            lam = LAMBDAS[int(np.argmax(cv))]
            curve = []
            for n in (60, 120, 180, len(train)):
                draws = 5 if n < len(train) else 1
                fits = [
                    accuracy(x, y, first, list(rng.choice(train, n, replace=False)), test, lam)
                    for _ in range(draws)
                ]
                curve.append(f"{n}: {np.mean(fits):.3f}")
            print(
                f"| {persona} | {layer} | {lam:g} | {max(cv):.3f} | {', '.join(curve)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
