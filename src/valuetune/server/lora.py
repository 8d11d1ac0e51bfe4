"""Serving many LoRA adapters on one copy of a base model.

A served model's weights are always in one known state: the base weights, or the base
weights with exactly one adapter's delta (`scale · B @ A`) merged in. `WeightSwitch`
moves between states under the model's lock: it restores the modules the previous
adapter touched from a pristine copy (so the base weights come back bit for bit, however
many switches happen) and adds the next adapter's delta. The pristine copies are taken
once: at start-up, in the background, for the modules the adapters on disk touch
(`keep_pristine`), or else the first time a module is touched. A warm adapter therefore
costs nothing per token; a switch costs one small matrix product and one copy per
adapted module.

Adapters are read from PEFT's format (`adapter_config.json` + `adapter_model.safetensors`)
without building a PEFT model: reading and checking a small adapter takes milliseconds,
and `AdapterCache` keeps the most recently used ones in memory.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import torch

from valuetune.llm.base import (
    Chunk,
    ContinuationScore,
    Generation,
    GenerationOptions,
    LLMBackend,
    Message,
)
from valuetune.tune.artifacts import (
    LORA_KEY,
    PEFT_CONFIG,
    PEFT_WEIGHTS,
    ArtifactError,
    pattern_value,
)

UNSUPPORTED = {
    "use_dora": "DoRA",
    "fan_in_fan_out": "fan-in/fan-out weights",
    "lora_bias": "LoRA biases",
    "modules_to_save": "fully trained modules",
    "layer_replication": "layer replication",
    "trainable_token_indices": "trained token embeddings",
    "target_parameters": "parameter targets",
}


@dataclass(frozen=True)
class LoraWeights:
    """One adapter, checked against the model it will be merged into."""

    id: str
    modules: dict[str, tuple[torch.Tensor, torch.Tensor, float]]
    """module name → (A: r×in, B: out×r, scale)."""

    def delta(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        a, b, scale = self.modules[name]
        return ((b @ a) * scale).to(dtype)


def read_lora(folder: Path, model: torch.nn.Module, ident: str) -> LoraWeights:
    """Read a PEFT LoRA adapter and check every tensor fits a module of `model`."""
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / PEFT_CONFIG).read_text())
        tensors = load_file(str(folder / PEFT_WEIGHTS))
    except Exception as exc:  # json, OS and safetensors errors all mean a damaged adapter
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"the adapter in {folder} is damaged: {first}") from None
    if config.get("peft_type") != "LORA":
        raise ArtifactError(f"{folder} is not a LoRA adapter ({config.get('peft_type')})")
    for field, what in UNSUPPORTED.items():
        if config.get(field):
            raise ArtifactError(f"the adapter in {folder} uses {what}, which serving cannot apply")
    if config.get("bias", "none") != "none":
        raise ArtifactError(f"the adapter in {folder} trains biases, which serving cannot apply")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = LORA_KEY.match(key)
        if match is None:
            raise ArtifactError(f"the adapter in {folder} holds an unexpected tensor {key!r}")
        parts.setdefault(match["module"], {})[match["part"]] = tensor
    modules: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for name, pair in parts.items():
        if set(pair) != {"A", "B"}:
            raise ArtifactError(f"the adapter in {folder} lacks half of {name}'s LoRA pair")
        a, b = pair["A"], pair["B"]
        weight = _weight(model, name)
        if weight is None or a.shape[0] != b.shape[1] or weight.shape != (b.shape[0], a.shape[1]):
            raise ArtifactError(f"the adapter in {folder} does not fit this model at {name}")
        rank = a.shape[0]
        alpha = float(pattern_value(config.get("alpha_pattern") or {}, name, config["lora_alpha"]))
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        # kept in float32: exact for float32 models, and the delta is formed in float32
        modules[name] = (
            a.to(weight.device, torch.float32),
            b.to(weight.device, torch.float32),
            scale,
        )
    if not modules:
        raise ArtifactError(f"the adapter in {folder} is empty")
    return LoraWeights(ident, modules)


def adapter_modules(folder: Path) -> set[str]:
    """The module names a PEFT LoRA adapter touches, from its file's header alone (empty
    when the file cannot be read: `read_lora` says why when the adapter is used)."""
    from safetensors import safe_open

    try:
        with safe_open(str(folder / PEFT_WEIGHTS), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception:  # a damaged adapter is reported when it is read for a request
        return set()
    return {m["module"] for m in map(LORA_KEY.match, keys) if m is not None}


def _weight(model: torch.nn.Module, name: str) -> torch.Tensor | None:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None
    weight = getattr(module, "weight", None)
    return weight if isinstance(weight, torch.Tensor) and weight.dim() == 2 else None


class WeightSwitch:
    """Which adapter, if any, is merged into one model's weights (callers hold its lock)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.active: LoraWeights | None = None
        self._pristine: dict[str, torch.Tensor] = {}
        self.switches = 0

    def activate(self, lora: LoraWeights | None) -> None:
        current = self.active.id if self.active else None
        if (lora.id if lora else None) == current:
            return
        previous, self.active = self.active, None
        with torch.no_grad():
            try:
                wanted = lora.modules if lora else {}
                for name in wanted:  # W = W0 + scale·B@A, in one fused step per module
                    assert lora is not None
                    weight = self._param(name)
                    if name not in self._pristine:
                        self._pristine[name] = weight.detach().clone()
                    a, b, scale = lora.modules[name]
                    if weight.dtype == torch.float32:
                        torch.addmm(self._pristine[name], b, a, alpha=scale, out=weight)
                    else:
                        torch.add(self._pristine[name], lora.delta(name, weight.dtype), out=weight)
                for name in previous.modules if previous else {}:
                    if name not in wanted:
                        self._param(name).copy_(self._pristine[name])
            except BaseException:
                for name, pristine in self._pristine.items():  # back to the base weights
                    self._param(name).copy_(pristine)
                raise
        self.active = lora
        self.switches += 1

    @property
    def kept(self) -> frozenset[str]:
        """The modules whose base weights are held in a pristine copy."""
        return frozenset(self._pristine)

    def keep_pristine(self, names: Iterable[str], lock: threading.Lock) -> int:
        """Copy the base weights of `names` now, so no request pays for the copy; one
        module at a time under `lock`, so requests interleave. Returns how many were new.

        A module without a pristine copy has never been touched by an adapter, so its
        current weight is the base weight."""
        copied = 0
        for name in sorted(names):
            with lock, torch.no_grad():
                weight = _weight(self.model, name)
                if weight is None or name in self._pristine:
                    continue
                self._pristine[name] = weight.detach().clone()
                # write the weight once, unchanged: weights loaded from safetensors are
                # memory-mapped, and the first write to each page (the first merge) would
                # otherwise pay for copying it in, on a request's time
                weight.detach().copy_(self._pristine[name])
                copied += 1
        return copied

    def _param(self, name: str) -> torch.Tensor:
        weight: torch.Tensor = self.model.get_submodule(name).weight  # type: ignore[assignment]
        return weight


class SwitchedBackend(LLMBackend):
    """`inner` run with `lora` (or no adapter) merged into the shared weights first."""

    def __init__(self, inner: LLMBackend, switch: WeightSwitch, lora: LoraWeights | None) -> None:
        self.inner, self.switch, self.lora = inner, switch, lora
        self.name = inner.name
        self.supports_logprobs = inner.supports_logprobs

    def generate(self, messages: Sequence[Message], options: GenerationOptions) -> Generation:
        self.switch.activate(self.lora)
        return self.inner.generate(messages, options)

    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[Chunk]:
        self.switch.activate(self.lora)
        yield from self.inner.stream(messages, options)

    def score(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        self.switch.activate(self.lora)
        return self.inner.score(messages, continuations)

    def perplexity(self, texts: Sequence[str]) -> float:
        self.switch.activate(self.lora)
        return self.inner.perplexity(texts)


T = TypeVar("T")


class AdapterCache(Generic[T]):
    """The `capacity` most recently used loaded artifacts, by id (thread-safe)."""

    def __init__(self, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError("the adapter cache needs room for at least one adapter")
        self.capacity = capacity
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: str, load: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()  # outside the lock: a slow read must not block other holders
        with self._lock:
            self.loads += 1
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)
