"""The `dpo` recipe's speed levers on a CPU, each exact (tested against the plain path).

- `LowerLayerReplay`: with LoRA only on the top layers, the hidden state entering the
  first trained layer is a fixed function of the tokens; record it once, replay it at
  every step, and run forward and backward through the top layers only.
- `install_completion_head`: project only completion positions through the LM head.
- `reference_logps`: the reference pass scores each distinct prompt + reply once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from types import MethodType
from typing import Any

import torch

from valuetune.llm.base import BackendError
from valuetune.tune.steer import decoder_layers, decoder_layers_parent


class LowerLayerReplay:
    """Record the hidden state entering decoder layer `split`, then replay it.

    While recording, a pre-hook on the layers' parent module (it receives `input_ids` and
    `attention_mask`) notes each row's real tokens, and a pre-hook on layer `split` stores
    its input per distinct token sequence. While replaying, the layers below `split` are
    swapped for pass-throughs and layer `split` receives the stored states: the model
    computes exactly what it computed before, as long as the layers below are frozen.
    """

    def __init__(self, model: Any, split: int, layers_path: str | None = None):
        if hasattr(model, "get_base_model"):  # a PEFT wrapper: look inside it
            model = model.get_base_model()
        self.model, self.split = model, split
        self.blocks = decoder_layers(model, layers_path)
        self.parent = decoder_layers_parent(model, layers_path)
        self.states: dict[tuple[int, ...], torch.Tensor] = {}
        self._rows: list[tuple[int, ...]] = []

    def _note_rows(self, _m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if ids is None:
            raise BackendError("layer replay needs input_ids, not inputs_embeds")
        lengths = mask.sum(-1).tolist() if mask is not None else [ids.shape[1]] * ids.shape[0]
        if mask is not None and not bool((mask[:, 1:] <= mask[:, :-1]).all()):
            raise BackendError("layer replay needs right-padded batches")
        self._rows = [tuple(row[: int(n)].tolist()) for row, n in zip(ids, lengths, strict=True)]

    def _store(self, _m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        assert hidden is not None
        for i, row in enumerate(self._rows):
            self.states.setdefault(row, hidden[i, : len(row)].detach().clone())

    def _load(self, _m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        assert hidden is not None
        replayed = torch.zeros_like(hidden)
        for i, row in enumerate(self._rows):
            if row not in self.states:
                raise BackendError("layer replay met a sequence it never recorded")
            replayed[i, : len(row)] = self.states[row]
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": replayed}
        return (replayed, *args[1:]), kwargs

    @contextmanager
    def recording(self) -> Iterator[None]:
        handles = [
            self.parent.register_forward_pre_hook(self._note_rows, with_kwargs=True),
            self.blocks[self.split].register_forward_pre_hook(self._store, with_kwargs=True),
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def replaying(self) -> Iterator[None]:
        below = [self.blocks[i] for i in range(self.split)]
        handles = [
            self.parent.register_forward_pre_hook(self._note_rows, with_kwargs=True),
            self.blocks[self.split].register_forward_pre_hook(self._load, with_kwargs=True),
        ]
        for i in range(self.split):
            self.blocks[i] = _PassThrough()
        try:
            yield
        finally:
            for i, block in enumerate(below):
                self.blocks[i] = block
            for handle in handles:
                handle.remove()


class _PassThrough(torch.nn.Module):
    """Stands in for a frozen decoder layer whose output is replayed further up."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


def install_completion_head(model: Any) -> None:
    """Score only completion positions, in one matmul, when `fused_lm_head=True`.

    TRL's fused head falls back, on devices without Triton, to scoring every position
    (prompt and padding included) in vocabulary tiles and computing four statistics per
    tile. On a CPU that head costs more than the trained layers. This one projects only
    the positions whose label is not -100, takes log-softmax there, and computes the
    statistics TRL logs (entropy, mean logit, top-1) without gradients.
    """
    from trl.trainer.utils import FusedCausalLMOutput

    inner: Any = model.get_base_model() if hasattr(model, "get_base_model") else model
    original = inner.forward

    def forward(
        self: Any, *args: Any, fused_lm_head: bool = False, labels: Any = None, **kwargs: Any
    ) -> Any:
        if not fused_lm_head:
            return original(*args, labels=labels, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        mask = targets != -100  # (batch, seq-1): positions predicting a completion token
        logits = self.get_output_embeddings()(hidden[mask]).float()  # (n, vocab)
        logp_all = torch.log_softmax(logits, dim=-1)
        picked = logp_all.gather(1, targets[mask][:, None]).squeeze(1)
        log_probs = hidden.new_zeros(mask.shape, dtype=picked.dtype).masked_scatter(mask, picked)
        with torch.no_grad():
            p = logp_all.exp()
            stats = {
                "entropy": -(p * logp_all).sum(-1),
                "mean_logits": logits.mean(-1),
                "is_top1": (logits.argmax(-1) == targets[mask]).float(),
            }
            full = {
                k: hidden.new_zeros(mask.shape, dtype=v.dtype).masked_scatter(mask, v)
                for k, v in stats.items()
            }
        return FusedCausalLMOutput(
            loss=-picked.sum() / mask.sum().clamp(min=1),
            log_probs=log_probs,
            entropy=full["entropy"],
            log_sum_sq_probs=None,
            mean_logits=full["mean_logits"],
            is_top1=full["is_top1"].bool(),
            label_mask=mask,
            aux_loss=None,
        )

    inner.forward = MethodType(forward, inner)


SIDES = ("chosen", "rejected")


@dataclass(frozen=True)
class ReplySequence:
    """One prompt + reply as the trainer sees it: token ids and where the reply starts."""

    ids: tuple[int, ...]
    prompt_length: int

    @classmethod
    def of(cls, prompt: Sequence[int], reply: Sequence[int], limit: int | None) -> ReplySequence:
        ids = (*prompt, *reply)
        return cls(ids[:limit] if limit else ids, len(prompt))

    def __len__(self) -> int:
        return len(self.ids)


def reference_logps(
    model: Any,
    sequences: Sequence[ReplySequence],
    *,
    batch: int,
    pad_id: int,
    device: torch.device,
    context: Any,
    autocast: Any,
) -> dict[ReplySequence, float]:
    """Summed log-probs of each sequence's reply under the base model, each sequence once.

    A reply that appears in several pairs (the first-choice reply does) is scored once,
    and sequences go in length order so batches carry little padding. A fresh adapter is
    zero, so with it disabled the model is the reference. `context` wraps the pass (the
    layer replay records here).
    """
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    disabled = model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()
    out: dict[ReplySequence, float] = {}
    starts = tqdm(range(0, len(sequences), batch), desc="Reference pass", unit="batch")
    with context, disabled, autocast, torch.no_grad():
        for start in starts:
            chunk = sequences[start : start + batch]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            labels = torch.full_like(ids, -100)
            for i, seq in enumerate(chunk):
                ids[i, : len(seq)] = torch.tensor(seq.ids)
                mask[i, : len(seq)] = 1
                labels[i, seq.prompt_length : len(seq)] = ids[i, seq.prompt_length : len(seq)]
            result = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                labels=labels.to(device),
                fused_lm_head=True,
                use_cache=False,
            )
            for seq, value in zip(chunk, result.log_probs.sum(dim=1).float().tolist(), strict=True):
                out[seq] = value
    return out
