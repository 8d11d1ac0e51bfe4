"""Steering vectors on a tiny random Llama: layer lookup, direction, artifact round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from valuetune.llm.base import BackendError, GenerationOptions, Message  # noqa: E402
from valuetune.llm.local import TransformersBackend  # noqa: E402
from valuetune.tune.artifacts import ArtifactError  # noqa: E402
from valuetune.tune.methods import TuneRequest  # noqa: E402
from valuetune.tune.scenarios import ScenarioBank, parse_bank  # noqa: E402
from valuetune.tune.steer import (  # noqa: E402
    SteerConfig,
    SteeredBackend,
    SteerMethod,
    contrast_pairs,
    decoder_layers,
    extract_vectors,
)
from valuetune.values.axes import load_axes  # noqa: E402
from valuetune.values.profile import ValueProfile  # noqa: E402

AXES = load_axes()
CHAT = [Message("user", "Which word?")]


@pytest.fixture(scope="module")
def tiny(embedded_tokenizer: Any, make_tiny_llama: Any) -> TransformersBackend:
    return TransformersBackend(make_tiny_llama(4), embedded_tokenizer, model_id="tiny")


@pytest.fixture(scope="module")
def bank() -> ScenarioBank:
    docs = []
    for i in range(40):
        axis = ["care", "economic"][i % 2]
        docs.append(
            {
                "id": f"t{i:03d}",
                "domain": "work",
                "prompt": f"Dilemma number {i}?",
                "actions": [
                    {"text": f"Help them now, gently, case {i}.", "loadings": {axis: 0.9}},
                    {"text": f"Let them sort it out alone, case {i}.", "loadings": {axis: -0.8}},
                ],
            }
        )
    return parse_bank(docs)


def _profile(**values: float) -> ValueProfile:
    return ValueProfile.from_mappings({a: values.get(a, 0.0) for a in AXES.value_ids})


def test_decoder_layers_are_found_by_lookup_with_override(tiny: TransformersBackend) -> None:
    layers = decoder_layers(tiny.model)
    assert len(layers) == 4
    assert decoder_layers(tiny.model, "model.layers") is layers
    with pytest.raises(BackendError, match="layers_path"):
        decoder_layers(tiny.model, "model.nowhere")
    with pytest.raises(BackendError):
        decoder_layers(torch.nn.Linear(2, 2))


def test_contrast_pairs_pick_high_and_low_replies(bank: ScenarioBank) -> None:
    pairs = contrast_pairs(bank.scenarios, "care", 5)
    assert len(pairs) == 5
    assert all(h.startswith("Help") and lo.startswith("Let") for _, h, lo in pairs)
    assert contrast_pairs(bank.scenarios, "mercy", 5) == []


def test_extracted_directions_are_unit_vectors_at_chosen_layers(
    tiny: TransformersBackend, bank: ScenarioBank
) -> None:
    layers, vectors, norms = extract_vectors(tiny, bank.scenarios, AXES.value_ids, SteerConfig())
    assert set(vectors) == {"care", "economic"}
    assert all(0 <= layer < 4 for layer in layers)
    for v in vectors.values():
        assert v.shape == (len(layers), 32)
        assert torch.allclose(v.norm(dim=-1), torch.ones(len(layers)), atol=1e-5)
    assert torch.all(norms > 0)
    pca = extract_vectors(tiny, bank.scenarios, ["care"], SteerConfig(estimator="pca"))[1]["care"]
    assert torch.all((pca * vectors["care"]).sum(-1) > 0)  # sign-aligned with the mean difference


def test_steering_moves_logits_in_the_intended_direction(tiny: TransformersBackend) -> None:
    """Push the last layer's output along (unembedding of A - unembedding of B)."""
    tok = tiny.tokenizer
    a, b = (
        tok(" yes", add_special_tokens=False)["input_ids"][0],
        tok(" no", add_special_tokens=False)["input_ids"][0],
    )
    unembed = tiny.model.get_output_embeddings().weight.detach()
    direction = (unembed[a] - unembed[b]) / (unembed[a] - unembed[b]).norm()
    base = tiny.score(CHAT, [" yes", " no"])
    for sign in (1.0, -1.0):
        steered = SteeredBackend(tiny, [3], (sign * 5.0 * direction)[None, :])
        yes, no = steered.score(CHAT, [" yes", " no"])
        moved = (yes.logprob - no.logprob) - (base[0].logprob - base[1].logprob)
        assert sign * moved > 0
    # hooks are removed afterwards: the base model is untouched
    assert [s.logprob for s in tiny.score(CHAT, [" yes", " no"])] == pytest.approx(
        [s.logprob for s in base], abs=1e-5
    )


def test_artifact_round_trip_gives_identical_outputs(
    tiny: TransformersBackend, bank: ScenarioBank, tmp_path: Path
) -> None:
    profile = _profile(care=1.5, economic=-1.0)
    config = SteerConfig(strengths=(0.0, 0.3), calibration_scenarios=10)
    request = TuneRequest(tiny, profile, "jti", bank, "tiny", {})
    meta = SteerMethod(config).build(request, tmp_path / "steer")
    assert meta["strength"] in (0.0, 0.3) and meta["extraction_seconds"] >= 0
    assert set(meta["calibration_fit"]) == {"0.0", "0.3"}
    first = SteerMethod(config).apply(tiny, tmp_path / "steer")
    second = SteerMethod(config).apply(tiny, tmp_path / "steer")
    replies = [a.text for a in bank.scenarios[0].actions]
    assert [s.logprob for s in first.score(CHAT, replies)] == [
        s.logprob for s in second.score(CHAT, replies)
    ]
    assert first.generate(CHAT, GenerationOptions(max_new_tokens=5)).completion_tokens <= 5


def test_a_damaged_or_foreign_artifact_is_refused(
    tiny: TransformersBackend, bank: ScenarioBank, tmp_path: Path
) -> None:
    request = TuneRequest(tiny, _profile(care=1.0), "jti", bank, "tiny", {})
    SteerMethod(SteerConfig(strengths=(0.1,), calibration_scenarios=4)).build(
        request, tmp_path / "s"
    )
    (tmp_path / "s" / "vectors.safetensors").write_bytes(b"garbage")
    with pytest.raises(BackendError, match="damaged"):
        SteerMethod().apply(tiny, tmp_path / "s")
    with pytest.raises(ArtifactError):
        SteerMethod().apply(tiny, tmp_path)
