"""Our DPO recipe against TRL's default DPO recipe, side by side on the same pairs.

Run:  .venv/bin/python -u bench/tune.py [--persona progressive-activist] [--pairs 256]
      [--cap-ratio 3] [--home DIR]

Each recipe trains in its own process (so peak memory is its own) on the same personal
pairs of one persona, with the embedded model:

- `ours`: the `dpo` method's recipe (DPOSettings defaults: LoRA on the top layers with
  lower-layer replay, precomputed reference, completion-only head, lr 1e-3, 2 epochs).
- `trl-default`: TRL's `DPOConfig()` defaults (lr 1e-6, 3 epochs, batch 8, gradient
  checkpointing, reference computed at every step) with a PEFT LoRA adapter of rank 16
  on every linear layer, stopped at `cap-ratio` times our training time.

Reported per recipe: training seconds, seconds per pair-epoch, peak resident memory, and
held-out persona fit. Ours is "at least cap-ratio times faster at equal fit" when the
default recipe, given cap-ratio times our time, has not reached our fit.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PERSONA = "progressive-activist"


def _pairs(persona: str, n: int) -> list[Any]:
    from valuetune.tune.dpo import DPOSettings
    from valuetune.tune.scenarios import load_scenario_bank
    from valuetune.values.personas import get_persona

    return DPOSettings(pairs=n).training_pairs(
        get_persona(persona).profile, load_scenario_bank().split("train")
    )


def _fit(backend: Any, aligned: Any, persona: str) -> dict[str, Any]:
    from valuetune.evaluate.report import evaluate_method
    from valuetune.tune.scenarios import load_scenario_bank
    from valuetune.values.personas import get_persona

    doc = evaluate_method(
        backend, aligned, get_persona(persona).profile, load_scenario_bank(), method="dpo"
    )
    return {k: doc[k] for k in ("fit", "fit_ci", "base_fit", "gain", "perplexity_change")}


def run_ours(home: Path, persona: str, n: int) -> dict[str, Any]:
    from valuetune.llm.local import TransformersBackend
    from valuetune.tune.dpo import DPOSettings, load_adapter, train_adapter

    backend = TransformersBackend.embedded(home)
    pairs = _pairs(persona, n)
    out = Path(tempfile.mkdtemp(prefix="vt-bench-tune-")) / "ours"
    started = time.perf_counter()
    meta = train_adapter(backend, pairs, DPOSettings(pairs=n), out, metadata={})
    seconds = time.perf_counter() - started
    epochs = float(meta["metrics"]["epochs"])
    return {
        "recipe": "ours",
        "pairs": len(pairs),
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "seconds_per_pair_epoch": round(seconds / (len(pairs) * epochs), 3),
        **_fit(backend, load_adapter(backend, out), persona),
    }


def run_default(home: Path, persona: str, n: int, budget: float) -> dict[str, Any]:
    from datasets import Dataset  # type: ignore[import-untyped]
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer  # type: ignore[attr-defined]

    from valuetune.llm.local import TransformersBackend
    from valuetune.tune.dpo import stop_callback

    backend = TransformersBackend.embedded(home)
    pairs = _pairs(persona, n)
    rows = [{k: p.to_row()[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]
    args = DPOConfig(
        output_dir=tempfile.mkdtemp(prefix="vt-bench-trl-"),
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
    )
    model = copy.deepcopy(backend.model)
    lora = LoraConfig(r=16, target_modules="all-linear", task_type="CAUSAL_LM")
    stopper = stop_callback(time.monotonic() + budget, None)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=backend.tokenizer,
        peft_config=lora,
        callbacks=[stopper],
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    merged = trainer.model.merge_and_unload()
    aligned = TransformersBackend(merged, backend.tokenizer, model_id=backend.model_id)
    done = trainer.state.global_step * args.per_device_train_batch_size
    return {
        "recipe": "trl-default",
        "pairs": len(pairs),
        "epochs": round(float(trainer.state.epoch or 0.0), 3),
        "train_seconds": round(seconds, 1),
        "seconds_per_pair_epoch": round(seconds / max(1, done), 3),
        "stopped": stopper.reason or "completed",
        **_fit(backend, aligned, persona),
    }


def child(argv: list[str]) -> None:
    recipe, home, persona, n, budget = argv[0], Path(argv[1]), argv[2], int(argv[3]), argv[4]
    with contextlib.redirect_stdout(sys.stderr):
        if recipe == "ours":
            doc = run_ours(home, persona, n)
        else:
            doc = run_default(home, persona, n, float(budget))
    doc["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(doc), flush=True)


def spawn(recipe: str, home: Path, persona: str, n: int, budget: float = 0.0) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", recipe, str(home), persona, str(n), str(budget)]
    result = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persona", default=PERSONA)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--cap-ratio", type=float, default=3.0)
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "vt-bench-home")
    args = parser.parse_args()
    ours = spawn("ours", args.home, args.persona, args.pairs)
    budget = args.cap_ratio * ours["train_seconds"]
    default = spawn("trl-default", args.home, args.persona, args.pairs, budget)
    print(
        "| recipe | pairs | epochs run | train s | s per pair-epoch | peak RSS MB | fit | 95% CI "
        "| ppl change |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in (ours, default):
        print(
            f"| {row['recipe']} | {row['pairs']} | {row['epochs']} | {row['train_seconds']} | "
            f"{row['seconds_per_pair_epoch']} | {row['peak_rss_mb']} | {row['fit']:.3f} | "
            f"{row['fit_ci'][0]:.2f}-{row['fit_ci'][1]:.2f} | {row['perplexity_change']:+.1%} |"
        )
    print(f"\nbase fit {ours['base_fit']:.3f}")
    speed = default["seconds_per_pair_epoch"] / ours["seconds_per_pair_epoch"]
    print(f"per pair-epoch, ours is {speed:.1f}x faster")
    if default["fit"] < ours["fit"]:
        print(
            f"given {args.cap_ratio:g}x our training time ({budget:.0f} s), the default recipe "
            f"reached fit {default['fit']:.3f} < ours {ours['fit']:.3f}: ours is more than "
            f"{args.cap_ratio:g}x faster to our fit"
        )
    else:
        print(f"the default recipe reached our fit within {args.cap_ratio:g}x our time")


if __name__ == "__main__":
    main()
