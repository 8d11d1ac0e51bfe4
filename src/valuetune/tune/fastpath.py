"""The `dpo` recipe's speed levers on a CPU, each exact (tested against the plain path).

- `LowerLayerReplay`: with LoRA only on the top layers, the hidden state entering the
  first trained layer is a fixed function of the tokens; record it once, replay it at
  every step, and run forward and backward through the top layers only.
- `install_completion_head`: project only completion positions through the LM head, and
  run the rows that share a prompt as one packed row (`pack_shared_prompts`): the prompt
  once, each distinct reply after it, attending to the prompt and itself only.
- `reference_logps`: the reference pass scores each distinct prompt + reply once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from types import MethodType
from typing import Any

import torch

from valuetune.llm.base import BackendError
from valuetune.tune.steer import StopForward, decoder_layers, decoder_layers_parent

PACKED_SEGMENTS = "_valuetune_packed_segments"
"""Attribute set on the model while a packed batch runs: the `Segment`s of its rows."""


@dataclass(frozen=True)
class Segment:
    """Positions `start:end` of batch row `row`, whose hidden states depend on `key` only.

    An unpacked row is one segment keyed by its tokens. In a packed row the prompt is a
    segment keyed by the prompt, and each reply one keyed by prompt and reply: what a
    position sees through the attention mask is all its state can depend on.
    """

    row: int
    start: int
    end: int
    key: tuple[Any, ...]


class LowerLayerReplay:
    """Record the hidden state entering decoder layer `split`, then replay it.

    While recording, a pre-hook on the layers' parent module (it receives `input_ids` and
    `attention_mask`) notes each row's segments (a packed batch names its own), and a
    pre-hook on layer `split` stores its input per distinct segment. While replaying, the
    layers below `split` are swapped for pass-throughs and layer `split` receives the
    stored states: the model computes exactly what it computed before, as long as the
    layers below are frozen.
    """

    def __init__(self, model: Any, split: int, layers_path: str | None = None):
        if hasattr(model, "get_base_model"):  # a PEFT wrapper: look inside it
            model = model.get_base_model()
        self.model, self.split = model, split
        self.blocks = decoder_layers(model, layers_path)
        self.parent = decoder_layers_parent(model, layers_path)
        self.states: dict[tuple[Any, ...], torch.Tensor] = {}
        self._segments: list[Segment] = []
        self._stop = False

    def _note_rows(self, _m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        packed = getattr(self.model, PACKED_SEGMENTS, None)
        if packed is not None:  # a packed batch says itself which positions hold what
            self._segments = packed
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        if ids is None:
            raise BackendError("layer replay needs input_ids, not inputs_embeds")
        lengths = mask.sum(-1).tolist() if mask is not None else [ids.shape[1]] * ids.shape[0]
        if mask is not None and not bool((mask[:, 1:] <= mask[:, :-1]).all()):
            raise BackendError("layer replay needs right-padded batches")
        self._segments = [
            Segment(i, 0, int(n), tuple(row[: int(n)].tolist()))
            for i, (row, n) in enumerate(zip(ids, lengths, strict=True))
        ]

    def _store(self, _m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        assert hidden is not None
        for seg in self._segments:
            self.states.setdefault(seg.key, hidden[seg.row, seg.start : seg.end].detach().clone())
        if self._stop:
            raise StopForward

    def _load(self, _m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        assert hidden is not None
        replayed = torch.zeros_like(hidden)
        for seg in self._segments:
            if seg.key not in self.states:
                raise BackendError("layer replay met a sequence it never recorded")
            replayed[seg.row, seg.start : seg.end] = self.states[seg.key]
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": replayed}
        return (replayed, *args[1:]), kwargs

    @contextmanager
    def recording(self, *, stop: bool = False) -> Iterator[None]:
        """Record while inside; with `stop`, each forward pass ends once recorded (raising
        `StopForward` to its caller), so the layers from `split` up never run."""
        self._stop = stop
        handles = [
            self.parent.register_forward_pre_hook(self._note_rows, with_kwargs=True),
            self.blocks[self.split].register_forward_pre_hook(self._store, with_kwargs=True),
        ]
        try:
            yield
        finally:
            self._stop = False
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


@dataclass(frozen=True)
class PackedBatch:
    """Rows that share a prompt, packed into one row each (see `pack_shared_prompts`)."""

    input_ids: torch.Tensor  # (groups, width)
    position_ids: torch.Tensor  # (groups, width)
    attention_mask: torch.Tensor  # (groups, 1, width, width), additive
    segments: list[Segment]
    rows: torch.Tensor  # (n,) packed row of each completion target, in the batch's order
    cols: torch.Tensor  # (n,) packed position that predicts it


def pack_shared_prompts(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    dtype: torch.dtype,
) -> PackedBatch | None:
    """Pack a batch of prompt + completion rows so each distinct prompt is computed once.

    A DPO batch holds every pair twice (chosen and rejected) with the same prompt, and
    first-choice pairs of one scenario share their chosen reply. Rows with the same prompt
    become one packed row: the prompt, then each distinct reply, with position ids
    restarting after the prompt and a mask that lets a reply see the prompt and itself
    only, so every position computes what it computes in its own row. (Putting several
    prompts' groups in one row saves no work here: a group is 100-250 tokens, and the
    padding saved is lost to attention over masked positions.) Returns None when
    the batch is not right-padded prompt + completion rows (labels -100 on the prompt,
    the token ids on the completion).
    """
    ids, lengths = input_ids.tolist(), attention_mask.sum(-1).tolist()
    rows: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    groups: dict[tuple[int, ...], dict[tuple[int, ...], None]] = {}
    for i, (row, n) in enumerate(zip(ids, lengths, strict=True)):
        row_labels = labels[i].tolist()
        first = next((k for k, v in enumerate(row_labels[:n]) if v != -100), n)
        if (
            first == 0
            or int(attention_mask[i, :n].sum()) != n
            or row_labels[first:n] != row[first:n]
            or any(v != -100 for v in row_labels[n:])
        ):
            return None
        prompt, reply = tuple(row[:first]), tuple(row[first:n])
        groups.setdefault(prompt, {})[reply] = None
        rows.append((prompt, reply))
    width = max(len(prompt) + sum(map(len, replies)) for prompt, replies in groups.items())
    packed = torch.zeros((len(groups), width), dtype=torch.long)
    positions = torch.zeros_like(packed)
    allowed = torch.eye(width, dtype=torch.bool).repeat(len(groups), 1, 1)  # padding: itself
    starts: dict[tuple[tuple[int, ...], tuple[int, ...]], tuple[int, int]] = {}
    segments: list[Segment] = []
    for row, (prompt, replies) in enumerate(groups.items()):
        parts: list[tuple[tuple[int, ...], tuple[Any, ...], int]] = [
            (prompt, ("prompt", prompt), 0)
        ]
        parts += [(reply, ("reply", prompt, reply), len(prompt)) for reply in replies]
        at = 0
        for tokens, key, offset in parts:
            end = at + len(tokens)
            segments.append(Segment(row, at, end, key))
            packed[row, at:end] = torch.tensor(tokens, dtype=torch.long)
            positions[row, at:end] = torch.arange(offset, offset + len(tokens))
            allowed[row, at:end, at:end] = torch.ones(len(tokens), len(tokens)).tril().bool()
            if key[0] == "reply":  # a reply sees its prompt and itself
                allowed[row, at:end, : len(prompt)] = True
                starts[prompt, tokens] = (row, at)
            at = end
    take_rows: list[int] = []
    take_cols: list[int] = []
    for prompt, reply in rows:  # the batch's completion targets, row by row, in order
        row, at = starts[prompt, reply]
        for j in range(len(reply)):  # token j is predicted by the position before it
            take_rows.append(row)
            take_cols.append(len(prompt) - 1 if j == 0 else at + j - 1)
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    device = input_ids.device
    return PackedBatch(
        packed.to(device),
        positions.to(device),
        mask[:, None].to(device),
        segments,
        torch.tensor(take_rows, dtype=torch.long, device=device),
        torch.tensor(take_cols, dtype=torch.long, device=device),
    )


def install_completion_head(model: Any, *, pack: bool = True) -> None:
    """Score only completion positions, in one matmul, when `fused_lm_head=True`.

    TRL's fused head falls back, on devices without Triton, to scoring every position
    (prompt and padding included) in vocabulary tiles and computing four statistics per
    tile. On a CPU that head costs more than the trained layers. This one projects only
    the positions whose label is not -100, takes log-softmax there, and computes the
    statistics TRL logs (entropy, mean logit, top-1) without gradients. With `pack`, rows
    that share a prompt run as one packed row (`pack_shared_prompts`).
    """
    from trl.trainer.utils import FusedCausalLMOutput

    inner: Any = model.get_base_model() if hasattr(model, "get_base_model") else model
    original = inner.forward
    dtype = inner.get_input_embeddings().weight.dtype

    def forward(
        self: Any, *args: Any, fused_lm_head: bool = False, labels: Any = None, **kwargs: Any
    ) -> Any:
        if not fused_lm_head:
            return original(*args, labels=labels, **kwargs)
        kwargs["use_cache"] = False
        targets = labels[:, 1:]
        mask = targets != -100  # (batch, seq-1): positions predicting a completion token
        packed = None
        plain = {"input_ids", "attention_mask", "use_cache"}  # PEFT passes the rest as None
        if pack and not args and all(v is None for k, v in kwargs.items() if k not in plain):
            packed = pack_shared_prompts(
                kwargs["input_ids"], kwargs["attention_mask"], labels, dtype
            )
        if packed is None:
            hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1][mask]
        else:
            setattr(self, PACKED_SEGMENTS, packed.segments)
            try:
                states = self.base_model(
                    input_ids=packed.input_ids,
                    position_ids=packed.position_ids,
                    attention_mask=packed.attention_mask,
                    use_cache=False,
                ).last_hidden_state
            finally:
                delattr(self, PACKED_SEGMENTS)
            hidden = states[packed.rows, packed.cols]
        logits = self.get_output_embeddings()(hidden).float()  # (n, vocab)
        logp_all = torch.log_softmax(logits, dim=-1)
        picked = logp_all.gather(1, targets[mask][:, None]).squeeze(1)
        log_probs = logits.new_zeros(mask.shape).masked_scatter(mask, picked)
        with torch.no_grad():
            p = logp_all.exp()
            stats = {
                "entropy": -(p * logp_all).sum(-1),
                "mean_logits": logits.mean(-1),
                "is_top1": (logits.argmax(-1) == targets[mask]).float(),
            }
            full = {k: v.new_zeros(mask.shape).masked_scatter(mask, v) for k, v in stats.items()}
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


class PromptGroupedSampler(torch.utils.data.Sampler[int]):
    """A shuffled order that keeps the rows of one prompt together.

    Pairs of one scenario then tend to share a batch, so packing computes their prompt
    and their shared chosen reply once. The order depends only on the seed and the epoch
    (set by the Trainer before each epoch), so a resumed run sees the same batches.
    """

    def __init__(self, keys: Sequence[str], seed: int) -> None:
        self.groups: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            self.groups.setdefault(key, []).append(index)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups.values())

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        groups = list(self.groups.values())
        for g in torch.randperm(len(groups), generator=generator).tolist():
            yield from groups[g]


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

    @property
    def prompt(self) -> tuple[int, ...]:
        return self.ids[: self.prompt_length]

    @property
    def reply(self) -> tuple[int, ...]:
        return self.ids[self.prompt_length :]


def reference_logps(
    model: Any,
    sequences: Sequence[ReplySequence],
    *,
    batch: int,
    pad_id: int,
    device: torch.device,
    context: Any,
    autocast: Any,
    score: bool = True,
) -> dict[ReplySequence, float]:
    """Summed log-probs of each sequence's reply under the base model, each sequence once.

    A reply that appears in several pairs (the first-choice reply does) is scored once,
    in the caller's order (batches of one prompt pack it once). A fresh adapter is zero,
    so with it disabled the model is the reference. `context` wraps the pass (the layer
    replay records here). Without `score` the pass only feeds `context` (a recording that
    stops the forward early) and every value is 0.0: a reference-free loss.
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
            with suppress(StopForward):
                result = model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    labels=labels.to(device),
                    fused_lm_head=True,
                    use_cache=False,
                )
            values = result.log_probs.sum(dim=1).float().tolist() if score else [0.0] * len(chunk)
            out.update(zip(chunk, values, strict=True))
    return out
