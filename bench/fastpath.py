"""What shared-prompt packing saves in the `dpo` recipe, packed and plain side by side.

Run:  .venv/bin/python -u bench/fastpath.py [--persona progressive-activist] [--steps 8]
      [--layers 16 8] [--home DIR]

For each number of trained layers, the recipe runs twice on the same personal pairs of
one persona, alternating: `packed` (the defaults: a scenario's pairs batched together,
rows that share a prompt run as one packed row) and `plain` (`pack_prompts=False,
group_by_prompt=False`: every pair's chosen and rejected rows separately, in TRL's
random order). Each run counts the token positions one epoch's batches run through the
layers (padding included), and times the reference pass (the whole model over every distinct
prompt + reply, recording the layer replay) and the first `--steps` training steps.
Packing is exact, so both compute the same log-probs; only the time differs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

PERSONA = "progressive-activist"


def measure(home: Path, persona: str, layers: int, steps: int, packed: bool) -> dict[str, Any]:
    import torch

    from valuetune.llm.local import TransformersBackend
    from valuetune.tune.dpo import DPOSettings, build_trainer
    from valuetune.tune.fastpath import pack_shared_prompts
    from valuetune.tune.scenarios import load_scenario_bank
    from valuetune.values.personas import get_persona

    backend = TransformersBackend.embedded(home)
    settings = DPOSettings(trainable_layers=layers)
    if not packed:
        settings = replace(settings, pack_prompts=False, group_by_prompt=False)
    pairs = settings.training_pairs(
        get_persona(persona).profile, load_scenario_bank().split("train")
    )
    rows = [p.to_row() for p in pairs]
    run_dir = Path(tempfile.mkdtemp(prefix="vt-bench-fastpath-"))
    settings = replace(settings, checkpoint_every=10**6)
    started = time.perf_counter()
    trainer = build_trainer(backend, rows, settings, run_dir)  # runs the reference pass
    reference = time.perf_counter() - started
    positions = 0  # token positions the layers run over in one epoch, padding included
    for batch in trainer.get_train_dataloader():
        shape = batch["input_ids"].shape
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        packing = pack_shared_prompts(
            batch["input_ids"], batch["attention_mask"], labels, torch.float32
        )
        positions += packing.input_ids.numel() if packed and packing else shape[0] * shape[1]
    trainer.args.max_steps = steps
    started = time.perf_counter()
    trainer.train()
    training = time.perf_counter() - started
    return {
        "layers": layers,
        "mode": "packed" if packed else "plain",
        "pairs": len(pairs),
        "epoch_positions": positions,
        "reference_s": round(reference, 1),
        "step_s": round(training / steps, 2),
    }


def spawn(home: Path, persona: str, layers: int, steps: int, packed: bool) -> dict[str, Any]:
    argv = [str(home), persona, str(layers), str(steps), "packed" if packed else "plain"]
    cmd = [sys.executable, __file__, "--child", *argv]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        home, persona, layers, steps, mode = sys.argv[2:7]
        import contextlib

        with contextlib.redirect_stdout(sys.stderr):
            doc = measure(Path(home), persona, int(layers), int(steps), mode == "packed")
        print(json.dumps(doc), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persona", default=PERSONA)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--layers", type=int, nargs="+", default=[16, 8])
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "vt-bench-home")
    args = parser.parse_args()
    results = []
    for layers in args.layers:
        for packed in (True, False):
            results.append(spawn(args.home, args.persona, layers, args.steps, packed))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print("| trained layers | mode | pairs | positions per epoch | reference pass s | s per step |")
    print("|---:|---|---:|---:|---:|---:|")
    for row in results:
        print(
            f"| {row['layers']} | {row['mode']} | {row['pairs']} | {row['epoch_positions']} | "
            f"{row['reference_s']} | {row['step_s']} |"
        )
    for layers in args.layers:
        packed, plain = (
            next(r for r in results if r["layers"] == layers and r["mode"] == m)
            for m in ("packed", "plain")
        )
        reference = plain["reference_s"] / packed["reference_s"]
        step = plain["step_s"] / packed["step_s"]
        print(
            f"\n{layers} layers, packed: reference pass {reference:.2f}x faster, a step {step:.2f}x"
        )


if __name__ == "__main__":
    main()
