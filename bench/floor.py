"""How close the `dpo` recipe runs to this CPU's arithmetic limit, and the time it implies.

Run:  .venv/bin/python -u bench/floor.py [--persona progressive-activist] [--steps 8]
      [--home DIR]

Three measurements in one run, with the default settings and the embedded model:

- the CPU's fp32 matrix-multiply rate at the model's own shapes (a batch's positions
  through an MLP projection, an attention projection and the LM head), best of several
  repeats: what the hardware gives the layers' arithmetic;
- the floating-point operations of the recipe, counted by `torch.utils.flop_counter` on
  the reference pass and on every training step of one epoch (forward and backward);
- the time of the first `--steps` training steps, uncounted.

The floor is the recipe's operations at the best measured rate: no implementation of
the same arithmetic (same layers, pairs, epochs and sequence lengths) runs faster on this
CPU. It says what a time target asks of the recipe rather than of its implementation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

PERSONA = "progressive-activist"


def matmul_rates(repeats: int = 5) -> dict[str, float]:
    """Best fp32 GFLOP/s of (m x k) @ (k x n) at shapes the model runs."""
    import torch

    shapes = {
        "mlp 1024x576 @ 576x1536": (1024, 576, 1536),
        "attention 1024x576 @ 576x576": (1024, 576, 576),
        "lm head 512x576 @ 576x49152": (512, 576, 49152),
    }
    rates = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b  # warm up
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(10):
                a @ b
            best = min(best, (time.perf_counter() - started) / 10)
        rates[name] = 2 * m * k * n / best / 1e9
    return rates


def measure(home: Path, persona: str, steps: int) -> dict[str, Any]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from valuetune.llm.local import TransformersBackend
    from valuetune.tune.dpo import DPOSettings, build_trainer
    from valuetune.tune.scenarios import load_scenario_bank
    from valuetune.values.personas import get_persona

    rates = matmul_rates()
    backend = TransformersBackend.embedded(home)
    settings = DPOSettings()
    pairs = settings.training_pairs(
        get_persona(persona).profile, load_scenario_bank().split("train")
    )
    rows = [p.to_row() for p in pairs]
    run_dir = Path(tempfile.mkdtemp(prefix="vt-bench-floor-"))
    settings = replace(settings, checkpoint_every=10**6)
    counter = FlopCounterMode(display=False)
    with counter:
        trainer = build_trainer(backend, rows, settings, run_dir)  # runs the reference pass
    reference_flops = counter.get_total_flops()
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # what `train` would set
    batches = list(trainer.get_train_dataloader())
    epoch_flops = 0
    with trainer.replay.replaying() if trainer.replay else torch.enable_grad():
        for batch in batches:
            counter = FlopCounterMode(display=False)
            with counter:
                trainer.training_step(model, batch)
            model.zero_grad(set_to_none=True)
            epoch_flops += counter.get_total_flops()
    trainer.args.max_steps = steps
    started = time.perf_counter()
    trainer.train()
    step_s = (time.perf_counter() - started) / steps
    epochs = settings.epochs
    total = reference_flops + epochs * epoch_flops
    best = max(rates.values())
    return {
        "pairs": len(pairs),
        "steps_per_epoch": len(batches),
        "matmul_gflops": {k: round(v, 1) for k, v in rates.items()},
        "reference_tflop": round(reference_flops / 1e12, 2),
        "epoch_tflop": round(epoch_flops / 1e12, 2),
        "recipe_tflop": round(total / 1e12, 2),
        "step_s": round(step_s, 2),
        "step_gflops": round(epoch_flops / len(batches) / step_s / 1e9, 1),
        "floor_s": round(total / (best * 1e9), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persona", default=PERSONA)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "vt-bench-home")
    args = parser.parse_args()
    doc = measure(args.home, args.persona, args.steps)
    print(json.dumps(doc, indent=2))
    print("\n| shape | fp32 GFLOP/s |\n|---|---:|")
    for name, rate in doc["matmul_gflops"].items():
        print(f"| {name} | {rate} |")
    print(
        f"\nrecipe ({doc['pairs']} pairs, {doc['steps_per_epoch']} steps an epoch): "
        f"reference pass {doc['reference_tflop']} TFLOP, an epoch {doc['epoch_tflop']} TFLOP, "
        f"in all {doc['recipe_tflop']} TFLOP\n"
        f"a step: {doc['step_s']} s, {doc['step_gflops']} GFLOP/s\n"
        f"floor at the best matmul rate: {doc['floor_s']} s"
    )


if __name__ == "__main__":
    main()
