"""The transformers backend on a tiny random model (mechanics) and the real embedded model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from valuetune.llm.base import (  # noqa: E402
    BackendError,
    BackendRegistry,
    GenerationOptions,
    LLMBackend,
    Message,
)
from valuetune.llm.embedded import METADATA_FILE, cached_model_dir, embedded_gguf, sha256_file  # noqa: E402
from valuetune.llm.local import TransformersBackend, pick_dtype  # noqa: E402

CHAT = [Message("user", "My neighbour plays loud music at night. What should I do?")]
REPLIES = [
    "Talk to your neighbour kindly and explain how the noise affects your sleep.",
    "Call the police.",
    "Write a polite note and suggest quiet hours that work for both of you, then follow up.",
]


@pytest.fixture(scope="session")
def tiny(embedded_tokenizer: Any, make_tiny_llama: Any) -> TransformersBackend:
    model = make_tiny_llama(2, tie_embeddings=True)
    return TransformersBackend(model, embedded_tokenizer, model_id="tiny")


def _manual_logprob(backend: TransformersBackend, reply: str) -> tuple[float, int]:
    """Independent reference: one unpadded forward pass over prompt + reply."""
    prompt, cont = backend.continuation_ids(CHAT, reply)
    ids = torch.tensor([prompt + cont])
    with torch.no_grad():
        logits = backend.model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    total = sum(logprobs[len(prompt) + k - 1, tok].item() for k, tok in enumerate(cont))
    return total, len(cont)


def test_continuation_ids_follow_the_chat_template(tiny: TransformersBackend) -> None:
    prompt, cont = tiny.continuation_ids(CHAT, REPLIES[0])
    full = tiny.chat_ids([*CHAT, Message("assistant", REPLIES[0])], add_generation_prompt=False)
    assert prompt + cont == full
    assert REPLIES[0] in tiny.tokenizer.decode(cont)


def test_batched_scores_equal_unpadded_reference(tiny: TransformersBackend) -> None:
    batched = tiny.score(CHAT, REPLIES)
    for reply, score in zip(REPLIES, batched, strict=True):
        total, count = _manual_logprob(tiny, reply)
        assert score.tokens == count
        assert score.logprob == pytest.approx(total, abs=1e-3)
        assert score.mean_logprob == pytest.approx(total / count, abs=1e-4)
    assert tiny.score(CHAT, []) == []


class _NoLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward predates `logits_to_keep` (older architectures)."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.config, self.generation_config = inner.config, inner.generation_config

    def forward(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        use_cache: bool | None = None,
        past_key_values: Any = None,
    ) -> Any:
        return self.inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=use_cache,
            past_key_values=past_key_values,
        )


def test_models_without_logits_to_keep_score_and_generate_alike(
    tiny: TransformersBackend,
) -> None:
    assert tiny._last_logits_only == {"logits_to_keep": 1}  # the prompt's LM head is skipped
    older = TransformersBackend(_NoLogitsToKeep(tiny.model), tiny.tokenizer, model_id="older")
    assert older._last_logits_only == {}
    for a, b in zip(older.score(CHAT, REPLIES), tiny.score(CHAT, REPLIES), strict=True):
        assert a.tokens == b.tokens
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
    options = GenerationOptions(max_new_tokens=8)
    assert older.generate(CHAT, options).text == tiny.generate(CHAT, options).text


def test_generation_is_deterministic_and_respects_limits(tiny: TransformersBackend) -> None:
    options = GenerationOptions(max_new_tokens=12)
    first, second = tiny.generate(CHAT, options), tiny.generate(CHAT, options)
    assert first == second
    assert first.completion_tokens <= 12
    assert first.prompt_tokens == len(tiny.chat_ids(CHAT, add_generation_prompt=True))
    sampled = GenerationOptions(max_new_tokens=12, temperature=1.0, seed=7)
    assert tiny.generate(CHAT, sampled) == tiny.generate(CHAT, sampled)


def _generated_ids(backend: TransformersBackend, options: GenerationOptions) -> list[int]:
    """What transformers' own greedy `generate` produces: an independent reference."""
    prompt = backend.chat_ids(CHAT, add_generation_prompt=True)
    ids = torch.tensor([prompt])
    out = backend.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=options.max_new_tokens,
        do_sample=False,
        pad_token_id=backend.tokenizer.pad_token_id,
    )[0]
    return [int(t) for t in out[len(prompt) :]]


def test_greedy_decoding_matches_transformers_generate(tiny: TransformersBackend) -> None:
    options = GenerationOptions(max_new_tokens=16)
    reference = _generated_ids(tiny, options)
    reply = tiny.generate(CHAT, options)
    assert reply.completion_tokens == len(reference)
    assert reply.text == tiny.tokenizer.decode(reference, skip_special_tokens=True)


def test_stream_pieces_add_up_and_logprobs_match_a_plain_forward(
    tiny: TransformersBackend,
) -> None:
    options = GenerationOptions(max_new_tokens=10, logprobs=True, top_logprobs=3)
    pieces = list(tiny.stream(CHAT, options))
    assert all(p.finish_reason is None for p in pieces[:-1]) and pieces[-1].finish_reason
    whole = tiny.generate(CHAT, options)
    assert "".join(p.text for p in pieces) == whole.text
    tokens = _generated_ids(tiny, options)
    assert len(whole.logprobs) == len(tokens) == pieces[-1].completion_tokens
    prompt = tiny.chat_ids(CHAT, add_generation_prompt=True)
    with torch.no_grad():
        logits = tiny.model(input_ids=torch.tensor([prompt + tokens])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    for k, (token, entry) in enumerate(zip(tokens, whole.logprobs, strict=True)):
        expected = logp[len(prompt) + k - 1, token].item()
        assert entry.logprob == pytest.approx(expected, abs=1e-4)
        assert entry.token == tiny.tokenizer.decode([token])
        assert len(entry.top) == 3
        assert [v for _, v in entry.top] == sorted((v for _, v in entry.top), reverse=True)
        assert entry.top[0][1] == pytest.approx(entry.logprob, abs=1e-5)  # greedy: the top one


def test_stop_strings_cut_the_reply_and_never_leak_into_a_piece(
    tiny: TransformersBackend,
) -> None:
    free = tiny.generate(CHAT, GenerationOptions(max_new_tokens=24))
    stop = free.text[len(free.text) // 2 : len(free.text) // 2 + 3]
    assert len(stop) == 3
    options = GenerationOptions(max_new_tokens=24, stop=(stop,))
    pieces = list(tiny.stream(CHAT, options))
    text = "".join(p.text for p in pieces)
    assert text == free.text[: free.text.index(stop)]
    assert pieces[-1].finish_reason == "stop"
    assert all(stop not in p.text for p in pieces)


def test_sampling_options(tiny: TransformersBackend) -> None:
    greedy = tiny.generate(CHAT, GenerationOptions(max_new_tokens=12))
    narrow = GenerationOptions(max_new_tokens=12, temperature=1.5, top_p=1e-6, seed=1)
    assert tiny.generate(CHAT, narrow).text == greedy.text  # the nucleus is the top token
    draws = {
        tiny.generate(CHAT, GenerationOptions(max_new_tokens=12, temperature=1.0, seed=s)).text
        for s in range(4)
    }
    assert len(draws) > 1  # a random tiny model is near uniform: seeds differ


def test_perplexity_matches_its_definition(tiny: TransformersBackend) -> None:
    texts = ["The water cycle moves water between sea, air and land.", "Bread needs flour."]
    total, count = 0.0, 0
    for text in texts:
        ids = tiny.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = tiny.model(input_ids=ids).logits[0].float()
        lp = torch.log_softmax(logits[:-1], dim=-1).gather(1, ids[0, 1:, None])
        total -= lp.sum().item()
        count += ids.shape[1] - 1
    assert tiny.perplexity(texts) == pytest.approx(math.exp(total / count), rel=1e-4)
    with pytest.raises(BackendError):
        tiny.perplexity([""])


def test_options_refuse_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValueError):
        GenerationOptions(max_new_tokens=10, frequency_penalty=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        GenerationOptions(temperature=-1)


def test_registry_refuses_duplicates_and_names_unknown_backends(tiny: TransformersBackend) -> None:
    registry = BackendRegistry()
    registry.register("tiny", lambda: tiny)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("tiny", lambda: tiny)
    assert isinstance(registry.create("tiny"), LLMBackend)
    with pytest.raises(BackendError, match="registered: tiny"):
        registry.create("nope")


def test_cpu_dtype_is_float32_without_native_bf16() -> None:
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    expected = torch.bfloat16 if native else torch.float32
    assert pick_dtype(torch.device("cpu")) == expected
    assert pick_dtype(torch.device("cpu"), "float32") == torch.float32
    with pytest.raises(BackendError):
        pick_dtype(torch.device("cpu"), "float8")


def test_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot load a model"):
        TransformersBackend.from_directory(tmp_path / "no-model")


@pytest.mark.slow
def test_the_real_embedded_model_converts_once_and_answers_sensibly(tmp_path: Path) -> None:
    folder = cached_model_dir(tmp_path)
    meta = json.loads((folder / METADATA_FILE).read_text())
    assert meta["gguf_sha256"] == sha256_file(embedded_gguf())
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert not list(tmp_path.glob("models/.*"))  # no partial conversion left behind
    stamp = (folder / "model.safetensors").stat().st_mtime
    assert cached_model_dir(tmp_path) == folder
    assert (folder / "model.safetensors").stat().st_mtime == stamp  # loaded from the cache
    model = TransformersBackend.embedded(tmp_path)
    good, bad = model.score(
        [Message("user", "What is the capital of France?")],
        ["The capital of France is Paris.", "Seventeen purple bananas sang."],
    )
    assert good.mean_logprob > bad.mean_logprob + 1.0
    answer = model.generate(
        [Message("user", "What is the capital of France?")], GenerationOptions(max_new_tokens=20)
    )
    assert "Paris" in answer.text
