"""Adapters in the layout vLLM's multi-LoRA server loads (`--enable-lora --lora-modules`).

Each adapter becomes `<out>/<module name>/` with `adapter_config.json` and
`adapter_model.safetensors` (PEFT's format, which vLLM reads) and a copy of valuetune's
metadata. vLLM applies one scale (`lora_alpha / r`) per adapter and ignores PEFT's
per-module `alpha_pattern`/`rank_pattern`; an adapter that uses them is rewritten with
each module's own scale folded into its B matrix, so vLLM computes the same deltas.
The module name (`vt-<method>-<id>`) is what a valuetune proxy asks vLLM for.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valuetune.tune.artifacts import (
    LORA_KEY,
    METADATA,
    PEFT_CONFIG,
    PEFT_WEIGHTS,
    ArtifactError,
    pattern_value,
    writing_artifact,
)
from valuetune.tune.catalog import CatalogEntry

VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""`--max-lora-rank` values vLLM accepts."""


@dataclass(frozen=True)
class ExportedAdapter:
    name: str
    path: Path
    method: str
    rank: int


def export_adapter(entry: CatalogEntry, out: Path) -> ExportedAdapter:
    """Write one adapter under `out` (atomically: a finished directory or none)."""
    if not entry.is_adapter:
        raise ArtifactError(f"{entry.path} holds {entry.method} vectors, not a LoRA adapter")
    try:
        config = json.loads((entry.path / PEFT_CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"the adapter in {entry.path} is damaged: {exc}") from None
    target = out / entry.module_name
    with writing_artifact(target, overwrite=True) as work:  # an export repeats as it likes
        if config.get("alpha_pattern") or config.get("rank_pattern"):
            config = _fold_patterns(entry.path, config, work)
        else:
            shutil.copyfile(entry.path / PEFT_WEIGHTS, work / PEFT_WEIGHTS)
        (work / PEFT_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        shutil.copyfile(entry.path / METADATA, work / METADATA)
    return ExportedAdapter(entry.module_name, target, entry.method, _rank(target))


def _fold_patterns(source: Path, config: dict[str, Any], work: Path) -> dict[str, Any]:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(source / PEFT_WEIGHTS))
    alpha, rank = config["lora_alpha"], config["r"]
    rs = bool(config.get("use_rslora"))
    default = alpha / math.sqrt(rank) if rs else alpha / rank
    for key, tensor in tensors.items():
        match = LORA_KEY.match(key)
        if match is None or match["part"] != "B":
            continue
        module = match["module"]
        own_alpha = pattern_value(config.get("alpha_pattern") or {}, module, alpha)
        own_rank = tensor.shape[1]
        scale = own_alpha / math.sqrt(own_rank) if rs else own_alpha / own_rank
        tensors[key] = (tensor.float() * (scale / default)).to(tensor.dtype).contiguous()
    save_file(tensors, str(work / PEFT_WEIGHTS), metadata={"format": "pt"})
    return {**config, "alpha_pattern": {}, "rank_pattern": {}}


def _rank(folder: Path) -> int:
    from safetensors import safe_open

    ranks = [0]
    with safe_open(str(folder / PEFT_WEIGHTS), framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            if key.endswith("lora_A.weight"):
                ranks.append(fh.get_slice(key).get_shape()[0])
    return max(ranks)


def max_lora_rank(adapters: list[ExportedAdapter]) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that holds every adapter."""
    need = max(a.rank for a in adapters)
    for allowed in VLLM_RANKS:
        if allowed >= need:
            return allowed
    raise ArtifactError(f"an adapter of rank {need} is above vLLM's largest ({VLLM_RANKS[-1]})")


def vllm_command(base_model: str, served_name: str, adapters: list[ExportedAdapter]) -> str:
    modules = " ".join(f"{a.name}={a.path}" for a in adapters)
    return (
        f"vllm serve {base_model} --served-model-name {served_name} --enable-lora "
        f"--max-lora-rank {max_lora_rank(adapters)} --max-loras {max(1, len(adapters))} "
        f"--lora-modules {modules}"
    )
