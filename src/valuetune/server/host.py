"""The models a server offers, and how a request's value token shapes the one that answers.

A request names a base model (`smollm2`) and may carry a value token or alias, in the
`X-Value-Token` header or as a model-name suffix (`smollm2@maple-orbit-canyon-river`).
`ModelHost.holder` turns that text into a `Holder` (verifying a token, resolving an
alias); `ModelHost.aligned` picks the best artifact the catalog holds for the holder
and that base model (personal adapter, then soup adapter, then steering vectors, then
the précis alone) and gives the backend that answers with it and the receipt that says
so. Generation on one base model is serialised by that model's lock: adapters are merged
into the shared weights and steering hooks into its layers, so two requests with
different tokens must not interleave inside one forward pass; every aligned backend
first puts the weights in its own state (`WeightSwitch`), so nothing carries over.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from valuetune.errors import ValuetuneError
from valuetune.llm.base import LLMBackend
from valuetune.llm.local import TransformersBackend
from valuetune.server.lora import (
    AdapterCache,
    LoraWeights,
    SwitchedBackend,
    WeightSwitch,
    adapter_modules,
    read_lora,
)
from valuetune.token.alias import AliasService
from valuetune.token.paseto import TokenError, TokenProblem
from valuetune.token.precis import PrecisLength, boundary_instructions, write_precis
from valuetune.token.tokens import TokenService, VerifiedToken
from valuetune.token.words import AliasFormatError
from valuetune.tune.artifacts import jti_hash, model_fingerprint
from valuetune.tune.catalog import ArtifactCatalog, CatalogEntry
from valuetune.tune.precis import PrecisBackend

log = logging.getLogger(__name__)

TOKEN_PREFIX = "v4."
"""Value tokens are PASETO v4; anything else in the token slot is read as an alias."""


class HostError(ValuetuneError):
    """A request the host cannot serve: `status` and `code` become the API error."""

    def __init__(self, message: str, status: int, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


@dataclass(frozen=True)
class Holder:
    """Who a request speaks for: the précis to apply, and the token's id when known."""

    precis: str
    jti: str | None
    via: str  # "token", "share-token" or "alias"
    boundaries: str = ""
    """The précis's boundary part: still told to a model aligned by an artifact."""


@dataclass(frozen=True)
class Receipt:
    """How a reply was aligned: mechanism, artifact id and its persona fit when known."""

    mechanism: str  # "none", "precis", "steer", "soup" or "dpo"
    artifact: str | None = None
    fit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "artifact": self.artifact, "fit": self.fit}

    def header(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class Aligned:
    """What answers a request: the backend, its receipt, and the system text it adds."""

    backend: LLMBackend
    receipt: Receipt
    instruction: str | None


@dataclass
class ServedModel:
    """A base model by name, loaded on first use and then kept."""

    name: str
    load: Callable[[], LLMBackend]
    lock: threading.Lock
    backend: LLMBackend | None = None
    fingerprint: str | None = None
    """The base model's sha256 (local transformers models): what adapters must match."""
    switch: WeightSwitch | None = None


class ModelHost:
    def __init__(
        self,
        models: dict[str, Callable[[], LLMBackend]],
        tokens: TokenService,
        aliases: AliasService,
        catalog: ArtifactCatalog | None = None,
        cache_size: int = 16,
    ) -> None:
        self.models = {n: ServedModel(n, load, threading.Lock()) for n, load in models.items()}
        self.tokens, self.aliases, self.catalog = tokens, aliases, catalog
        self.cache: AdapterCache[LoraWeights | LLMBackend | str] = AdapterCache(cache_size)
        self._loading = threading.Lock()
        self.load_error: str | None = None

    def names(self) -> list[str]:
        return sorted(self.models)

    def split_model(self, model: str) -> tuple[ServedModel, str | None]:
        """(the base model, the token or alias after `@`, if any)."""
        name, _, suffix = model.partition("@")
        if name not in self.models:
            raise HostError(
                f"The model `{name}` does not exist; available: {', '.join(self.names())}",
                404,
                "model_not_found",
                "model",
            )
        return self.models[name], (suffix or None)

    def backend(self, served: ServedModel) -> LLMBackend:
        with self._loading:
            if served.backend is None:
                backend = served.load()
                if isinstance(backend, TransformersBackend):
                    served.fingerprint = model_fingerprint(backend)
                    served.switch = WeightSwitch(backend.model)
                served.backend = backend
            return served.backend

    def load_all(self) -> None:
        """Load every base model now, then copy the base weights the adapters on disk will
        touch (the server does this at start-up, in a background thread)."""
        try:
            for served in self.models.values():
                self.backend(served)
        except ValuetuneError as exc:
            self.load_error = str(exc)
            return
        for served in self.models.values():
            self.keep_pristine(served)

    def keep_pristine(self, served: ServedModel) -> int:
        """Take the pristine copies of the modules `served`'s catalogued adapters touch,
        so no holder's first request pays for them. Returns how many modules were new."""
        if self.catalog is None or served.switch is None or served.fingerprint is None:
            return 0
        names: set[str] = set()
        for entry in self.catalog.entries():
            if entry.is_adapter and entry.base_sha256 == served.fingerprint:
                names |= adapter_modules(entry.path)
        return served.switch.keep_pristine(names, served.lock)

    def ready(self) -> bool:
        return all(m.backend is not None for m in self.models.values())

    def holder(self, text: str, client: str) -> Holder:
        """Verify a token or resolve an alias; refuse anything else without saying which."""
        text = text.strip()
        if text.startswith(TOKEN_PREFIX):
            return self._from_token(text)
        try:
            resolution = self.aliases.resolve(text, client)
        except AliasFormatError:
            resolution = None
        if resolution is None or not resolution.found or resolution.content is None:
            raise HostError("The value token or alias is not valid.", 401, "invalid_value_token")
        if resolution.share == "precis":
            texts = json.loads(resolution.content)
            return Holder(texts[PrecisLength.MEDIUM.value], None, "alias")
        return replace(self._from_token(resolution.content, purpose="share"), via="alias")

    def _from_token(self, text: str, purpose: str = "preference") -> Holder:
        try:
            verified = self.tokens.verify(text, purpose)  # type: ignore[arg-type]
        except TokenError as exc:
            if purpose == "preference" and exc.problem is TokenProblem.WRONG_PURPOSE:
                return self._from_token(text, "share")
            raise HostError(
                f"The value token was refused: {exc.problem.value}.", 401, "invalid_value_token"
            ) from None
        # a share token names the preference token it was made from: its artifacts apply
        jti = verified.jti if purpose == "preference" else str(verified.claims["ref"])
        return _holder(verified, jti, "token" if purpose == "preference" else "share-token")

    def aligned(self, served: ServedModel, holder: Holder | None) -> Aligned:
        """The backend that answers for `holder` on `served`, and how it is aligned."""
        base = self.backend(served)
        switch = served.switch
        plain = base if switch is None else SwitchedBackend(base, switch, None)
        if holder is None:
            return Aligned(plain, Receipt("none"), None)
        for entry in self._artifacts(served, holder):
            applied = self._apply(entry, base, switch) if switch else None
            if applied is None:
                continue  # damaged: the next best one
            receipt = Receipt(entry.method, entry.module_name, entry.fit)
            if holder.boundaries:
                return Aligned(
                    PrecisBackend(applied, holder.boundaries), receipt, holder.boundaries
                )
            return Aligned(applied, receipt, None)
        return Aligned(PrecisBackend(plain, holder.precis), Receipt("precis"), holder.precis)

    def _artifacts(self, served: ServedModel, holder: Holder) -> list[CatalogEntry]:
        if self.catalog is None or holder.jti is None or served.fingerprint is None:
            return []
        return self.catalog.for_holder(jti_hash(holder.jti), served.fingerprint)

    def _apply(
        self, entry: CatalogEntry, base: LLMBackend, switch: WeightSwitch
    ) -> LLMBackend | None:
        """`base` aligned by `entry` (loaded once, then from the cache); None if damaged."""
        assert isinstance(base, TransformersBackend)

        def load() -> LoraWeights | LLMBackend | str:
            try:
                if entry.is_adapter:
                    return read_lora(entry.path, base.model, entry.module_name)
                from valuetune.tune.steer import SteerMethod

                return SteerMethod().apply(base, entry.path)
            except ValuetuneError as exc:
                log.warning("artifact %s cannot be applied: %s", entry.module_name, exc)
                return str(exc)  # remembered, so a damaged artifact is not re-read each time

        loaded = self.cache.get(entry.module_name, load)
        if isinstance(loaded, str):
            return None
        if isinstance(loaded, LoraWeights):
            return SwitchedBackend(base, switch, loaded)
        return SwitchedBackend(loaded, switch, None)


def _holder(verified: VerifiedToken, jti: str, via: str) -> Holder:
    profile = verified.profile()
    return Holder(write_precis(profile), jti, via, boundary_instructions(profile))
