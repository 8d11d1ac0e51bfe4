"""Method `steer`: per-axis steering vectors, combined by the profile's weights.

Extraction (once per base model, reusable for every token holder): for each value axis,
take training scenarios whose replies contrast that axis, run the model on the reply
with the highest and the lowest loading, and average each decoder layer's output over
the reply tokens. The axis direction at a layer is the mean difference high − low (or
the first principal component of the differences, sign-aligned to it), normalised.

Application: at each chosen layer a forward hook adds
    strength · r_L · d_L / |d_L|,   d_L = Σ_axis θ_axis · u_axis,L
to the residual stream, where r_L is the layer's typical hidden-state norm and θ the
holder's value estimates: the profile sets the direction, and `strength` the size as a
fraction of the residual norm. The strength is chosen from a small grid: the best fit on
training scenarios (never the held-out ones) among strengths that keep the perplexity of
general text within `max_perplexity_increase` of the base model's.

Decoder layers are found through `LAYER_PATHS` (override with `layers_path`), not a
hard-coded attribute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file

from valuetune.evaluate.fit import persona_fit
from valuetune.evaluate.report import general_text
from valuetune.llm.base import (
    BackendError,
    Chunk,
    ContinuationScore,
    Generation,
    GenerationOptions,
    LLMBackend,
    Message,
)
from valuetune.llm.local import TransformersBackend
from valuetune.tune.artifacts import (
    jti_hash,
    model_fingerprint,
    read_metadata,
    write_metadata,
    writing_artifact,
)
from valuetune.tune.methods import AlignmentMethod, TuneRequest
from valuetune.tune.scenarios import Scenario
from valuetune.values.profile import ValueProfile

LAYER_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen, SmolLM, Gemma
    "model.decoder.layers",  # OPT
    "transformer.h",  # GPT-2, Falcon
    "gpt_neox.layers",  # Pythia
    "model.language_model.layers",  # multimodal wrappers
)
VECTORS_FILE = "vectors.safetensors"


def _walk(model: torch.nn.Module, path: str) -> Any:
    node: Any = model
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def decoder_layers_path(model: torch.nn.Module, override: str | None = None) -> str:
    """The attribute path of the model's decoder blocks: the first in `LAYER_PATHS` that
    holds a non-empty ModuleList, or `override`."""
    for path in (override,) if override else LAYER_PATHS:
        node = _walk(model, path)
        if isinstance(node, torch.nn.ModuleList) and len(node) > 0:
            return path
    tried = override or ", ".join(LAYER_PATHS)
    raise BackendError(f"cannot find decoder layers ({tried}); pass layers_path")


def decoder_layers(model: torch.nn.Module, override: str | None = None) -> torch.nn.ModuleList:
    """The model's decoder blocks, by the first attribute path that exists."""
    layers: torch.nn.ModuleList = _walk(model, decoder_layers_path(model, override))
    return layers


def decoder_layers_parent(model: torch.nn.Module, override: str | None = None) -> torch.nn.Module:
    """The module that holds the decoder blocks (it receives input_ids and the mask)."""
    path = decoder_layers_path(model, override)
    parent: torch.nn.Module = _walk(model, path.rpartition(".")[0]) if "." in path else model
    return parent


@dataclass(frozen=True)
class SteerConfig:
    layer_fractions: tuple[float, ...] = (0.4, 0.5, 0.6)
    """Depths at which to steer, as fractions of the layer count."""
    estimator: Literal["mean", "pca"] = "mean"
    pairs_per_axis: int = 8
    """Contrast pairs per axis used for extraction (the most contrasting first)."""
    strengths: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4)
    """Grid searched on training scenarios; 0 keeps the base model if steering hurts."""
    calibration_scenarios: int = 32
    max_perplexity_increase: float = 0.10
    """Strengths that raise general-text perplexity by more than this are not eligible."""
    layers_path: str | None = None
    batch_size: int = 16
    extra: dict[str, Any] = field(default_factory=dict)


def contrast_pairs(
    scenarios: Sequence[Scenario], axis: str, limit: int
) -> list[tuple[str, str, str]]:
    """(prompt, high reply, low reply) for scenarios whose replies differ on `axis`."""
    found = []
    for s in scenarios:
        weights = [a.loadings.get(axis, 0.0) for a in s.actions]
        hi, lo = (
            max(range(len(weights)), key=weights.__getitem__),
            min(range(len(weights)), key=weights.__getitem__),
        )
        spread = weights[hi] - weights[lo]
        if spread >= 0.8:
            found.append((spread, s.id, s.prompt, s.actions[hi].text, s.actions[lo].text))
    found.sort(key=lambda f: (-f[0], f[1]))
    return [(p, h, lo) for _, _, p, h, lo in found[:limit]]


class StopForward(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a hook once the deepest needed layer has run: later layers are skipped."""


@torch.inference_mode()
def reply_activations(
    backend: TransformersBackend,
    items: Sequence[tuple[str, str]],
    layers: Sequence[int],
    batch: int,
    layers_path: str | None = None,
) -> torch.Tensor:
    """Mean decoder-layer output over each reply's tokens: (items, layers, hidden).

    Hooks capture the chosen layers' outputs and stop the forward pass after the deepest
    one, so the layers above it (and the vocabulary projection) never run.
    """
    blocks = decoder_layers(backend.model, layers_path)
    captured: dict[int, torch.Tensor] = {}

    def capture(index: int) -> Any:
        def hook(_m: Any, _i: Any, output: Any) -> None:
            captured[index] = output[0] if isinstance(output, tuple) else output
            if index == max(layers):
                raise StopForward

        return hook

    handles = [blocks[layer].register_forward_hook(capture(layer)) for layer in layers]
    out = []
    try:
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            encoded = [backend.continuation_ids([Message("user", p)], r) for p, r in chunk]
            width = max(len(p) + len(c) for p, c in encoded)
            ids = torch.full((len(chunk), width), backend.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, (p, c) in enumerate(encoded):
                ids[i, : len(p) + len(c)] = torch.tensor(p + c)
                mask[i, : len(p) + len(c)] = 1
            captured.clear()
            with suppress(StopForward):
                backend.model(
                    input_ids=ids.to(backend.device), attention_mask=mask.to(backend.device)
                )
            for i, (p, c) in enumerate(encoded):
                span = slice(len(p), len(p) + len(c))
                out.append(
                    torch.stack([captured[layer][i, span].float().mean(0) for layer in layers])
                )
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(out)


def extract_vectors(
    backend: TransformersBackend,
    scenarios: Sequence[Scenario],
    axes: Sequence[str],
    config: SteerConfig,
) -> tuple[list[int], dict[str, torch.Tensor], torch.Tensor]:
    """(layer indices, unit direction per axis (layers, hidden), typical norm per layer)."""
    n_layers = len(decoder_layers(backend.model, config.layers_path))
    layers = sorted(
        {min(n_layers - 1, max(0, round(f * n_layers))) for f in config.layer_fractions}
    )
    vectors: dict[str, torch.Tensor] = {}
    norms: list[torch.Tensor] = []
    for axis in axes:
        pairs = contrast_pairs(scenarios, axis, config.pairs_per_axis)
        if not pairs:
            continue
        acts = reply_activations(
            backend,
            [(p, h) for p, h, _ in pairs] + [(p, lo) for p, _, lo in pairs],
            layers,
            config.batch_size,
            config.layers_path,
        )
        high, low = acts[: len(pairs)], acts[len(pairs) :]
        norms.append(acts.norm(dim=-1).mean(0))
        diff = high - low  # (pairs, layers, hidden)
        direction = diff.mean(0)
        if config.estimator == "pca" and len(pairs) > 1:
            for k in range(len(layers)):
                _, _, v = torch.pca_lowrank(diff[:, k], q=1, center=True)
                pc = v[:, 0]
                direction[k] = pc * torch.sign(pc @ direction[k])
        vectors[axis] = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    if not vectors:
        raise BackendError("no training scenario contrasts any axis: cannot extract vectors")
    return layers, vectors, torch.stack(norms).mean(0)


class SteeredBackend(LLMBackend):
    """A transformers backend with steering vectors added while it runs."""

    supports_logprobs = True

    def __init__(
        self,
        base: TransformersBackend,
        layers: Sequence[int],
        delta: torch.Tensor,
        layers_path: str | None = None,
    ) -> None:
        self.base, self.layers, self.delta = base, list(layers), delta  # delta: (layers, hidden)
        self.layers_path = layers_path
        self.name = f"{base.name}+steer"

    @contextmanager
    def _steering(self) -> Iterator[None]:
        blocks = decoder_layers(self.base.model, self.layers_path)
        handles = []
        for k, layer in enumerate(self.layers):
            vec = self.delta[k].to(self.base.device)

            def hook(_m: Any, _i: Any, output: Any, vec: torch.Tensor = vec) -> Any:
                if isinstance(output, tuple):
                    return (output[0] + vec.to(output[0].dtype), *output[1:])
                return output + vec.to(output.dtype)

            handles.append(blocks[layer].register_forward_hook(hook))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def generate(self, messages: Sequence[Message], options: GenerationOptions) -> Generation:
        with self._steering():
            return self.base.generate(messages, options)

    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[Chunk]:
        with self._steering():  # held while the caller iterates
            yield from self.base.stream(messages, options)

    def score(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        with self._steering():
            return self.base.score(messages, continuations)

    def perplexity(self, texts: Sequence[str]) -> float:
        with self._steering():
            return self.base.perplexity(texts)


def combine(
    profile: ValueProfile,
    layers: Sequence[int],
    vectors: dict[str, torch.Tensor],
    norms: torch.Tensor,
    strength: float,
) -> torch.Tensor:
    """The residual-stream offset per steered layer for `profile`: (layers, hidden)."""
    axes = profile.axes
    total = torch.zeros_like(next(iter(vectors.values())))
    for axis, unit in vectors.items():
        total += profile.values[axes.value_ids.index(axis)] * unit
    direction = total / total.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    offset: torch.Tensor = strength * norms[:, None] * direction
    return offset


class SteerMethod(AlignmentMethod):
    name = "steer"
    cost = 1

    def __init__(self, config: SteerConfig | None = None) -> None:
        self.config = config or SteerConfig()

    def build(self, request: TuneRequest, out: Path) -> dict[str, Any]:
        backend = request.backend
        if not isinstance(backend, TransformersBackend):
            raise BackendError("steering needs a local transformers model")
        started = time.perf_counter()
        train = request.bank.split("train")
        axes = request.profile.axes.value_ids
        layers, vectors, norms = extract_vectors(backend, train, axes, self.config)
        extraction_s = time.perf_counter() - started
        calibration = train[: self.config.calibration_scenarios]
        texts = general_text()[:6]
        base_ppl = backend.perplexity(texts)
        fits: dict[float, float] = {}
        ppl_change: dict[float, float] = {}
        for strength in self.config.strengths:
            delta = combine(request.profile, layers, vectors, norms, strength)
            steered = SteeredBackend(backend, layers, delta, self.config.layers_path)
            ppl_change[strength] = steered.perplexity(texts) / base_ppl - 1.0
            if ppl_change[strength] > self.config.max_perplexity_increase:
                continue  # too damaging to general ability, whatever the fit
            fits[strength] = persona_fit(steered, request.profile, calibration).fit
        eligible = list(fits) or [0.0]
        best = max(eligible, key=lambda s: (fits.get(s, 0.0), -s))
        tensors = {f"axis.{a}": v.contiguous() for a, v in vectors.items()}
        tensors["layer_norms"] = norms.contiguous()
        tensors["weights"] = torch.tensor(request.profile.values, dtype=torch.float32)
        with writing_artifact(out, overwrite=bool(request.settings.get("overwrite"))) as work:
            save_file(tensors, str(work / VECTORS_FILE))
            return write_metadata(
                work,
                "alignment/steer",
                method=self.name,
                token_jti_hash=jti_hash(request.jti),
                base_model=request.base_model,
                base_model_sha256=model_fingerprint(backend),
                layers=layers,
                strength=best,
                calibration_fit={str(k): round(v, 4) for k, v in fits.items()},
                calibration_perplexity_change={str(k): round(v, 4) for k, v in ppl_change.items()},
                extraction_seconds=round(extraction_s, 2),
                axes=sorted(vectors),
                schema=request.profile.schema,
                config={k: v for k, v in asdict(self.config).items() if k != "extra"},
            )

    def apply(self, backend: LLMBackend, artifact: Path) -> LLMBackend:
        meta = read_metadata(artifact, "alignment/steer")
        if not isinstance(backend, TransformersBackend):
            raise BackendError("steering needs a local transformers model")
        try:
            tensors = load_file(str(artifact / VECTORS_FILE))
        except Exception as exc:  # safetensors raises several types for damaged files
            raise BackendError(f"steering vectors in {artifact} are damaged: {exc}") from None
        vectors = {k.removeprefix("axis."): v for k, v in tensors.items() if k.startswith("axis.")}
        weights = tensors["weights"].tolist()
        profile = ValueProfile(
            meta["schema"],
            tuple(weights),
            (0.0,) * len(weights),
            (0.0,) * 6,
            (0.0,) * 6,
            frozenset(),
        )
        delta = combine(profile, meta["layers"], vectors, tensors["layer_norms"], meta["strength"])
        return SteeredBackend(backend, meta["layers"], delta, meta["config"].get("layers_path"))
