"""Local transformers models: the embedded default or any Hugging Face model directory.

Device and dtype are chosen automatically: CUDA with bf16 (fp16 where bf16 is missing),
else CPU with bf16 only where the processor has native bf16 (AVX512-BF16 or AMX), since
emulated bf16 is slower than fp32.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from valuetune.llm.base import (
    BackendError,
    Chunk,
    ContinuationScore,
    Generation,
    GenerationOptions,
    LLMBackend,
    Message,
    TokenLogprob,
)
from valuetune.llm.embedded import cached_model_dir


def pick_device(preference: str = "auto") -> torch.device:
    if preference != "auto":
        return torch.device(preference)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, preference: str = "auto") -> torch.dtype:
    if preference != "auto":
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[
                preference
            ]
        except KeyError:
            raise BackendError(
                f"unknown dtype {preference!r}: float32, bfloat16 or float16"
            ) from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return torch.bfloat16 if native_bf16 else torch.float32


def _as_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


class TransformersBackend(LLMBackend):
    """A causal language model run in-process with transformers."""

    name = "transformers"
    supports_logprobs = True
    supports_adapters = True
    supports_steering = True

    def __init__(self, model: PreTrainedModel, tokenizer: Any, *, model_id: str) -> None:
        model.train(False)
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def from_directory(
        cls, path: str | Path, *, device: str = "auto", dtype: str = "auto", local_only: bool = True
    ) -> TransformersBackend:
        """Load a model directory (or a hub id when `local_only` is False and online)."""
        where = pick_device(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=local_only)
            model = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=pick_dtype(where, dtype), local_files_only=local_only
            )
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load a model from {path}: {exc}".splitlines()[0]) from None
        return cls(model.to(where), tokenizer, model_id=str(path))  # type: ignore[arg-type]

    @classmethod
    def embedded(
        cls, home: Path, *, device: str = "auto", dtype: str = "auto"
    ) -> TransformersBackend:
        """The embedded SmolLM2-135M-Instruct, converted and cached on first use."""
        return cls.from_directory(cached_model_dir(home), device=device, dtype=dtype)

    @functools.cached_property
    def _forward_parameters(self) -> frozenset[str]:
        return frozenset(inspect.signature(self.model.forward).parameters)

    @property
    def _cache_argument(self) -> str:
        """transformers 5 renamed `past_key_values` to `cache`; accept either version."""
        return "cache" if "cache" in self._forward_parameters else "past_key_values"

    @property
    def _last_logits_only(self) -> dict[str, int]:
        """Ask for the last position's logits only, where the model supports it: the LM
        head over a whole prompt costs as much as a few decoder layers."""
        return {"logits_to_keep": 1} if "logits_to_keep" in self._forward_parameters else {}

    @property
    def device(self) -> torch.device:
        return torch.device(next(self.model.parameters()).device)

    def chat_ids(self, messages: Sequence[Message], *, add_generation_prompt: bool) -> list[int]:
        ids = self.tokenizer.apply_chat_template(
            _as_dicts(messages), add_generation_prompt=add_generation_prompt, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def continuation_ids(
        self, messages: Sequence[Message], continuation: str
    ) -> tuple[list[int], list[int]]:
        """(prompt ids, continuation ids): the reply as the chat template renders it."""
        prompt = self.chat_ids(messages, add_generation_prompt=True)
        full = self.chat_ids(
            [*messages, Message("assistant", continuation)], add_generation_prompt=False
        )
        if full[: len(prompt)] != prompt:  # template does not extend the prompt: tokenize apart
            tail = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            return prompt, [*tail, self.tokenizer.eos_token_id]
        return prompt, full[len(prompt) :]

    @torch.inference_mode()
    def score(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        """Log-likelihoods of each continuation, sharing one pass over the common prompt.

        The prompt runs once with a KV cache; the continuations then run as one padded
        batch on top of it. Only the logits at continuation positions are normalised.
        """
        if not continuations:
            return []
        pairs = [self.continuation_ids(messages, c) for c in continuations]
        prompt = pairs[0][0]
        if any(p != prompt for p, _ in pairs):  # a template that rewrites the prompt
            return [self._score_separately(p, c) for p, c in pairs]
        conts = [c for _, c in pairs]
        width = max(len(c) for c in conts)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(conts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(conts), len(prompt) + width), dtype=torch.long)
        mask[:, : len(prompt)] = 1
        for i, cont in enumerate(conts):
            ids[i, : len(cont)] = torch.tensor(cont)
            mask[i, len(prompt) : len(prompt) + len(cont)] = 1
        head = self.model(
            input_ids=torch.tensor([prompt], device=self.device),
            use_cache=True,
            **self._last_logits_only,
        )
        cache = head.past_key_values
        cache.batch_repeat_interleave(len(conts))
        tail = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            use_cache=True,
            **{self._cache_argument: cache},
        ).logits  # (batch, width, vocab): position k predicts continuation token k+1
        first = torch.log_softmax(head.logits[0, -1].float(), dim=-1)
        out = []
        for i, cont in enumerate(conts):
            rest = torch.log_softmax(tail[i, : len(cont) - 1].float(), dim=-1)
            targets = torch.tensor(cont[1:], device=self.device)
            total = first[cont[0]].item() + rest.gather(1, targets[:, None]).sum().item()
            out.append(ContinuationScore(float(total), len(cont)))
        return out

    def _score_separately(self, prompt: list[int], cont: list[int]) -> ContinuationScore:
        ids = torch.tensor([prompt + cont], device=self.device)
        logits = self.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        targets = torch.tensor(cont, device=self.device)
        return ContinuationScore(
            float(logprobs.gather(1, targets[:, None]).sum().item()), len(cont)
        )

    @torch.inference_mode()
    def perplexity(self, texts: Sequence[str]) -> float:
        """exp of the mean token negative log-likelihood over all `texts`."""
        total, count = 0.0, 0
        for text in texts:
            ids = self.tokenizer(text, return_tensors="pt")["input_ids"].to(self.device)
            if ids.shape[1] < 2:
                continue
            logits = self.model(input_ids=ids).logits.float()
            logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
            total -= logprobs.gather(1, ids[0, 1:, None]).sum().item()
            count += ids.shape[1] - 1
        if count == 0:
            raise BackendError("perplexity needs text of at least two tokens")
        return float(torch.exp(torch.tensor(total / count)).item())

    def generate(self, messages: Sequence[Message], options: GenerationOptions) -> Generation:
        pieces = list(self.stream(messages, options))
        last = pieces[-1]
        assert last.finish_reason is not None
        return Generation(
            "".join(p.text for p in pieces),
            last.prompt_tokens,
            last.completion_tokens,
            last.finish_reason,
            tuple(lp for p in pieces for lp in p.logprobs),
        )

    def _stop_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        found = set(ids) if isinstance(ids, list) else {ids} if ids is not None else set()
        return found | {self.tokenizer.eos_token_id}

    def _logprob(self, logp: torch.Tensor, token: int, top: int) -> TokenLogprob:
        alternatives: tuple[tuple[str, float], ...] = ()
        if top:
            values, ids = logp.topk(top)
            alternatives = tuple(
                (self.tokenizer.decode([int(i)]), float(v))
                for v, i in zip(values.tolist(), ids.tolist(), strict=True)
            )
        return TokenLogprob(self.tokenizer.decode([token]), float(logp[token]), alternatives)

    @torch.inference_mode()
    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[Chunk]:
        """Decode token by token with a KV cache, releasing text as soon as it is final.

        Text that could still turn into a stop string, or ends in a partial UTF-8
        character, is held back until it cannot. Sampling uses a generator seeded from
        `options.seed`, so a seeded request repeats exactly; temperature 0 is greedy.
        """
        prompt = self.chat_ids(messages, add_generation_prompt=True)
        rng = torch.Generator(device=self.device)
        if options.seed is not None:
            rng.manual_seed(options.seed)
        else:
            rng.seed()
        stop_ids, hold = self._stop_ids(), max((len(s) for s in options.stop), default=1) - 1
        ids, cache = torch.tensor([prompt], device=self.device), None
        last_only = self._last_logits_only
        new: list[int] = []
        released, pending = 0, []
        text = ""
        finish: Literal["stop", "length"] = "length"
        for _ in range(options.max_new_tokens):
            extra: dict[str, Any] = {self._cache_argument: cache} if cache is not None else {}
            out = self.model(input_ids=ids, use_cache=True, **extra, **last_only)
            cache = out.past_key_values
            logits = out.logits[0, -1].float()
            token = _pick(logits, options, rng)
            if token in stop_ids:
                finish = "stop"
                break
            new.append(token)
            if options.logprobs:
                logp = torch.log_softmax(logits, dim=-1)
                pending.append(self._logprob(logp, token, options.top_logprobs))
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            cut = min((text.find(s) for s in options.stop if s in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
                break
            safe = len(text) - hold - (1 if text.endswith("\ufffd") else 0)
            if safe > released:
                yield Chunk(text[released:safe], tuple(pending))
                released, pending = safe, []
            ids = torch.tensor([[token]], device=self.device)
        yield Chunk(text[released:], tuple(pending), finish, len(prompt), len(new))


def _pick(logits: torch.Tensor, options: GenerationOptions, rng: torch.Generator) -> int:
    """The next token: greedy at temperature 0, else nucleus sampling."""
    if options.temperature < torch.finfo(logits.dtype).tiny:
        return int(logits.argmax())  # 0, or a temperature that is 0 in the logits' precision
    # shift before scaling: a tiny temperature then sends the other logits to -inf
    # (probability 0) instead of every logit to ±inf, whose softmax is NaN
    probs = torch.softmax((logits - logits.max()) / options.temperature, dim=-1)
    if options.top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        outside = ordered.cumsum(0) - ordered >= options.top_p  # keep the smallest nucleus
        outside[0] = False  # and always the likeliest token (a top_p that is 0 in float32)
        ordered[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, ordered)
    return int(torch.multinomial(probs, 1, generator=rng))
