"""The `dpo` method on a tiny random Llama: replay exactness, learning, resume, artifacts."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from valuetune.evaluate.fit import preference_margin  # noqa: E402
from valuetune.llm.base import BackendError, Message  # noqa: E402
from valuetune.llm.local import TransformersBackend  # noqa: E402
from valuetune.tune.artifacts import ArtifactError, read_metadata  # noqa: E402
from valuetune.tune.dpo import (  # noqa: E402
    DPOMethod,
    DPOSettings,
    TrainingCancelled,
    build_trainer,
    load_adapter,
    run_directory,
    train_adapter,
)
from valuetune.tune.fastpath import (  # noqa: E402
    LowerLayerReplay,
    PromptGroupedSampler,
    install_completion_head,
    pack_shared_prompts,
)
from valuetune.tune.methods import TuneRequest  # noqa: E402
from valuetune.tune.pairs import PreferencePair  # noqa: E402
from valuetune.tune.scenarios import parse_bank  # noqa: E402
from valuetune.tune.steer import decoder_layers  # noqa: E402
from valuetune.values.axes import load_axes  # noqa: E402
from valuetune.values.profile import ValueProfile  # noqa: E402

FAST = DPOSettings(
    pairs=16,
    epochs=2,
    learning_rate=5e-3,
    batch_size=4,
    trainable_layers=2,
    lora_r=4,
    lora_alpha=8,
    checkpoint_every=2,
    beta=0.5,
)


@pytest.fixture
def tiny(embedded_tokenizer: Any, make_tiny_llama: Any) -> TransformersBackend:
    return TransformersBackend(make_tiny_llama(4), embedded_tokenizer, model_id="tiny")


def _pairs(n: int = 16) -> list[PreferencePair]:
    return [
        PreferencePair(
            f"s{i:02d}",
            f"Should I help my neighbour with problem {i}?",
            f"Yes, help them kindly today, case {i}.",
            f"No, leave them to it, case {i}.",
            1.0,
            "care",
        )
        for i in range(n)
    ]


def _lora_weights(folder: Path) -> dict[str, Any]:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_replayed_lower_layers_give_the_same_logits(tiny: TransformersBackend) -> None:
    ids = torch.tensor([[1, 5, 9, 13, 2, 0], [3, 4, 5, 6, 7, 8]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    replay = LowerLayerReplay(tiny.model, split=2)
    with torch.no_grad(), replay.recording():
        expected = tiny.model(input_ids=ids, attention_mask=mask).logits
    assert len(replay.states) == 2
    with torch.no_grad(), replay.replaying():
        again = tiny.model(input_ids=ids, attention_mask=mask).logits
        # the lower layers really are skipped: a sequence never recorded cannot be replayed
        with pytest.raises(BackendError, match="never recorded"):
            tiny.model(input_ids=ids[:, :3], attention_mask=mask[:, :3])
    torch.testing.assert_close(again[0, :5], expected[0, :5])
    torch.testing.assert_close(again[1], expected[1])
    with torch.no_grad(), replay.recording(), pytest.raises(BackendError, match="right-padded"):
        tiny.model(input_ids=ids, attention_mask=mask.flip(-1))
    assert all(type(b).__name__ != "_PassThrough" for b in replay.blocks)  # layers restored


def _completion_batch(rows: list[tuple[list[int], list[int]]]) -> dict[str, Any]:
    """A right-padded prompt + completion batch as TRL's collator builds it."""
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (prompt, reply) in enumerate(rows):
        n = len(prompt) + len(reply)
        ids[i, :n] = torch.tensor(prompt + reply)
        mask[i, :n] = 1
        labels[i, len(prompt) : n] = ids[i, len(prompt) : n]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_packed_prompts_compute_what_separate_rows_compute(
    tiny: TransformersBackend, make_tiny_llama: Any
) -> None:
    # two prompts of different lengths; the first has three replies, one of them twice
    # (a first-choice reply in two pairs), the second one reply
    a, b = [1, 40, 41, 42, 43], [1, 50, 51]
    rows = [(a, [7, 8, 9]), (a, [10, 11]), (b, [12, 13, 14, 15]), (a, [7, 8, 9]), (a, [16])]
    batch = _completion_batch(rows)
    packed = pack_shared_prompts(
        batch["input_ids"], batch["attention_mask"], batch["labels"], torch.float32
    )
    assert packed is not None
    # a row per prompt: prompt a once with its 3 distinct replies, then b with its reply
    assert packed.input_ids.shape == (2, 5 + 3 + 2 + 1)
    assert int(packed.rows.numel()) == int((batch["labels"][:, 1:] != -100).sum())

    outputs = {}
    for pack in (True, False):
        model = make_tiny_llama(4)
        model.load_state_dict(tiny.model.state_dict())
        install_completion_head(model, pack=pack)
        out = model(**batch, fused_lm_head=True, use_cache=False)
        out.log_probs.sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        outputs[pack] = (out.log_probs.detach(), out.entropy, grads)
    torch.testing.assert_close(outputs[True][0], outputs[False][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs[True][1], outputs[False][1], rtol=1e-5, atol=1e-5)
    assert outputs[True][2].keys() == outputs[False][2].keys() and outputs[True][2]
    for name, grad in outputs[True][2].items():
        torch.testing.assert_close(grad, outputs[False][2][name], rtol=1e-4, atol=1e-6)
    # the rows that repeat one reply get the very same log-probs
    torch.testing.assert_close(outputs[True][0][0], outputs[True][0][3])


def test_batches_that_are_not_prompt_plus_completion_are_not_packed() -> None:
    batch = _completion_batch([([1, 2, 3], [4, 5]), ([1, 2, 3], [6])])
    args = (batch["input_ids"], batch["attention_mask"])
    no_prompt = batch["labels"].clone()
    no_prompt[0] = batch["input_ids"][0].masked_fill(batch["attention_mask"][0] == 0, -100)
    assert pack_shared_prompts(*args, no_prompt, torch.float32) is None
    hole = batch["labels"].clone()
    hole[0, 4] = -100  # a completion with a gap is not one reply
    assert pack_shared_prompts(*args, hole, torch.float32) is None
    left = batch["attention_mask"].flip(-1)
    assert pack_shared_prompts(batch["input_ids"], left, batch["labels"], torch.float32) is None


def test_grouped_order_keeps_a_prompt_together_and_repeats_per_seed_and_epoch() -> None:
    keys = ["a", "b", "a", "c", "b", "a", "d"]
    sampler = PromptGroupedSampler(keys, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(len(keys))) and len(sampler) == len(keys)
    runs = [keys[first[0]]]
    for index in first[1:]:
        if keys[index] != runs[-1]:
            runs.append(keys[index])
    assert sorted(runs) == ["a", "b", "c", "d"]  # each prompt's rows form one run
    assert list(PromptGroupedSampler(keys, seed=3)) == first
    orders = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        orders.add(tuple(sampler))
    assert len(orders) > 1  # epochs are shuffled differently


def test_reference_pass_scores_each_reply_once_and_exactly(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    # first-choice pairs share their chosen reply: the pass scores it once, and every
    # pair's reference log-probs equal a plain forward of the base model
    pairs = _pairs(4)
    pairs += [replace(p, rejected=f"Maybe later, case {i}.") for i, p in enumerate(pairs)]
    trainer = build_trainer(tiny, [p.to_row() for p in pairs], FAST, tmp_path / "run")
    data = trainer.train_dataset
    # packed: each prompt once, then 4 chosen + 8 rejected replies, not 16 sequences
    kinds = [key[0] for key in trainer.replay.states]
    assert kinds.count("prompt") == 4 and kinds.count("reply") == 12
    for row in data:
        for side in ("chosen", "rejected"):
            ids = torch.tensor([row["prompt_ids"] + row[f"{side}_ids"]])
            with torch.no_grad():
                logits = tiny.model(input_ids=ids).logits[0, :-1]
            per_token = torch.log_softmax(logits.float(), -1).gather(1, ids[0, 1:, None])[:, 0]
            expected = float(per_token[len(row["prompt_ids"]) - 1 :].sum())
            assert row[f"ref_{side}_logps"] == pytest.approx(expected, abs=1e-4)


def test_a_reference_free_pass_records_the_same_states_and_stops_there(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    pairs = _pairs(4)
    full = build_trainer(tiny, [p.to_row() for p in pairs], FAST, tmp_path / "full")
    top_calls = []
    hook = decoder_layers(tiny.model)[-1].register_forward_hook(lambda *_: top_calls.append(1))
    try:
        free_settings = replace(FAST, reference_free=True)
        free = build_trainer(tiny, [p.to_row() for p in pairs], free_settings, tmp_path / "free")
    finally:
        hook.remove()
    assert not top_calls  # the layers above the split never ran
    assert free.replay.states.keys() == full.replay.states.keys()
    for key, state in full.replay.states.items():
        torch.testing.assert_close(free.replay.states[key], state)
    for row in free.train_dataset:
        assert row["ref_chosen_logps"] == 0.0 and row["ref_rejected_logps"] == 0.0
    every_layer = replace(free_settings, trainable_layers=0)  # nothing to record, no pass
    trainer = build_trainer(tiny, [p.to_row() for p in pairs], every_layer, tmp_path / "all")
    assert trainer.replay is None and trainer.train_dataset[0]["ref_chosen_logps"] == 0.0


def test_reference_free_training_moves_the_model_toward_the_chosen_replies(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    pairs = _pairs()
    before = preference_margin(tiny, pairs)
    settings = replace(FAST, reference_free=True)
    train_adapter(tiny, pairs, settings, tmp_path / "a", metadata={})
    assert preference_margin(load_adapter(tiny, tmp_path / "a"), pairs) > before + 0.05


def test_training_moves_the_model_toward_the_chosen_replies(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    pairs = _pairs()
    before = preference_margin(tiny, pairs)
    meta = train_adapter(tiny, pairs, FAST, tmp_path / "a", metadata={"token_jti_hash": "x"})
    weights = _lora_weights(tmp_path / "a")
    # PEFT starts every B matrix at zero: a non-zero B means the step changed parameters
    assert any(float(w.abs().max()) > 0 for k, w in weights.items() if "lora_B" in k)
    # only the top two layers carry the adapter
    assert {int(k.split("layers.")[1].split(".")[0]) for k in weights} == {2, 3}
    aligned = load_adapter(tiny, tmp_path / "a")
    assert preference_margin(aligned, pairs) > before + 0.05
    assert preference_margin(tiny, pairs) == pytest.approx(before)  # the base model is untouched
    assert meta["metrics"]["steps"] == 8 and meta["metrics"]["stopped"] == "completed"
    assert meta["trainable_layers"] == [2, 3]
    for field in ("base_model_sha256", "dataset_sha256", "config", "metrics", "token_jti_hash"):
        assert field in meta
    assert not run_directory(tmp_path / "a").exists()  # checkpoints cleaned up


def test_saved_adapter_loads_back_to_identical_outputs(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    train_adapter(tiny, _pairs(8), replace(FAST, epochs=1), tmp_path / "a", metadata={})
    first, second = load_adapter(tiny, tmp_path / "a"), load_adapter(tiny, tmp_path / "a")
    chat = [Message("user", "Should I help?")]
    a = first.score(chat, ["Yes, gladly.", "No."])
    b = second.score(chat, ["Yes, gladly.", "No."])
    assert [s.logprob for s in a] == [s.logprob for s in b]
    assert [s.logprob for s in a] != [s.logprob for s in tiny.score(chat, ["Yes, gladly.", "No."])]


def test_replay_trains_to_the_same_weights_as_the_full_forward(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    """The replay is an optimisation only: with it, training computes what it would without."""
    settings = replace(FAST, epochs=1, trainable_layers=2)
    train_adapter(tiny, _pairs(8), settings, tmp_path / "replay", metadata={})
    from valuetune.tune import dpo

    original = dpo.LowerLayerReplay.replaying
    dpo.LowerLayerReplay.replaying = dpo.LowerLayerReplay.recording  # type: ignore[method-assign]
    try:
        train_adapter(tiny, _pairs(8), settings, tmp_path / "full", metadata={})
    finally:
        dpo.LowerLayerReplay.replaying = original  # type: ignore[method-assign]
    a, b = _lora_weights(tmp_path / "replay"), _lora_weights(tmp_path / "full")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_packing_trains_to_the_same_weights_as_separate_rows(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    # first-choice pairs: the chosen reply of each scenario appears in two pairs
    pairs = _pairs(6)
    pairs += [replace(p, rejected=f"Maybe later, case {i}.") for i, p in enumerate(pairs)]
    settings = replace(FAST, epochs=1)
    train_adapter(tiny, pairs, settings, tmp_path / "packed", metadata={})
    plain = replace(settings, pack_prompts=False)
    train_adapter(tiny, pairs, plain, tmp_path / "plain", metadata={})
    a, b = _lora_weights(tmp_path / "packed"), _lora_weights(tmp_path / "plain")
    assert any(float(w.abs().max()) > 0 for k, w in a.items() if "lora_B" in k)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_a_cancelled_run_resumes_to_the_weights_of_an_uninterrupted_one(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    pairs = _pairs()
    train_adapter(tiny, pairs, FAST, tmp_path / "whole", metadata={})
    cancel = threading.Event()
    cancel.set()  # stops (and checkpoints) at the end of the first step
    with pytest.raises(TrainingCancelled, match="run the same command again"):
        train_adapter(tiny, pairs, FAST, tmp_path / "parts", metadata={}, cancel=cancel)
    assert not (tmp_path / "parts").exists()  # nothing presented as finished
    run_dir = run_directory(tmp_path / "parts")
    assert (run_dir / "checkpoint-1" / "trainer_state.json").is_file()
    # a checkpoint killed mid-write (no trainer state yet) is ignored
    (run_dir / "checkpoint-7").mkdir()
    meta = train_adapter(tiny, pairs, FAST, tmp_path / "parts", metadata={})
    assert meta["metrics"]["resumed_from_step"] == 1
    assert meta["metrics"]["steps"] == 8
    whole, parts = _lora_weights(tmp_path / "whole"), _lora_weights(tmp_path / "parts")
    for key in whole:
        torch.testing.assert_close(parts[key], whole[key], rtol=1e-4, atol=1e-5)


def test_a_run_directory_from_other_inputs_is_not_resumed(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TrainingCancelled):
        train_adapter(tiny, _pairs(), FAST, tmp_path / "a", metadata={}, cancel=cancel)
    meta = train_adapter(tiny, _pairs(12), FAST, tmp_path / "a", metadata={})
    assert meta["metrics"]["resumed_from_step"] == 0


def test_time_budget_stops_early_and_keeps_the_adapter(
    tiny: TransformersBackend, tmp_path: Path
) -> None:
    meta = train_adapter(
        tiny, _pairs(), replace(FAST, time_budget_s=1e-6), tmp_path / "a", metadata={}
    )
    assert meta["metrics"]["stopped"] == "time_budget"
    assert meta["metrics"]["steps"] == 1
    assert read_metadata(tmp_path / "a", "alignment/dpo")["metrics"]["steps"] == 1


def test_existing_output_is_refused(tiny: TransformersBackend, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "file").write_text("keep me")
    with pytest.raises(ArtifactError, match="already exists"):
        train_adapter(tiny, _pairs(), FAST, tmp_path / "a", metadata={})
    assert (tmp_path / "a" / "file").read_text() == "keep me"


def test_corrupted_or_foreign_adapter_gives_a_clear_error(
    tiny: TransformersBackend, embedded_tokenizer: Any, make_tiny_llama: Any, tmp_path: Path
) -> None:
    train_adapter(tiny, _pairs(8), replace(FAST, epochs=1), tmp_path / "a", metadata={})
    other = TransformersBackend(make_tiny_llama(4, seed=1), embedded_tokenizer, model_id="other")
    with pytest.raises(BackendError, match="another base model"):
        load_adapter(other, tmp_path / "a")
    weights = tmp_path / "a" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BackendError, match="damaged"):
        load_adapter(tiny, tmp_path / "a")
    (tmp_path / "b").mkdir()
    with pytest.raises(ArtifactError, match="not a finished"):
        load_adapter(tiny, tmp_path / "b")


def test_dpo_method_builds_from_a_profile(tiny: TransformersBackend, tmp_path: Path) -> None:
    axes = load_axes()
    docs = [
        {
            "id": f"t{i:03d}",
            "domain": "work",
            "prompt": f"Dilemma {i}?",
            "actions": [
                {"text": f"Help them now, case {i}.", "loadings": {"care": 0.9}},
                {"text": f"Leave them alone, case {i}.", "loadings": {"care": -0.8}},
            ],
        }
        for i in range(30)
    ]
    bank = parse_bank(docs)
    profile = ValueProfile.from_mappings({a: (1.5 if a == "care" else 0.0) for a in axes.value_ids})
    method = DPOMethod(replace(FAST, pairs=12, epochs=1))
    request = TuneRequest(tiny, profile, "jti-1", bank, "tiny", {})
    meta = method.build(request, tmp_path / "a")
    assert 1 <= meta["pairs"] <= 12
    assert meta["token_jti_hash"] != "jti-1" and len(meta["token_jti_hash"]) == 32
    aligned = method.apply(tiny, tmp_path / "a")
    assert aligned.name.endswith("+dpo")
