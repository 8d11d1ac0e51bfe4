"""The models a server offers, and how a request's value token shapes the one that answers.

A request names a base model (`smollm2`) and may carry a value token or alias, in the
`X-Value-Token` header or as a model-name suffix (`smollm2@maple-orbit-canyon-river`).
`ModelHost.holder` turns that text into a `Holder` (verifying a token, resolving an
alias); `ModelHost.aligned` gives the backend that answers for the holder and the
receipt that says how it was aligned. Generation on one base model is serialised by
that model's lock: aligning mechanisms change what the shared weights compute, so two
requests with different tokens must not interleave inside one forward pass.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from valuetune.errors import ValuetuneError
from valuetune.llm.base import LLMBackend
from valuetune.token.alias import AliasService
from valuetune.token.paseto import TokenError, TokenProblem
from valuetune.token.precis import PrecisLength, write_precis
from valuetune.token.tokens import TokenService
from valuetune.token.words import AliasFormatError
from valuetune.tune.precis import PrecisBackend

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


@dataclass
class ServedModel:
    """A base model by name, loaded on first use and then kept."""

    name: str
    load: Callable[[], LLMBackend]
    lock: threading.Lock
    backend: LLMBackend | None = None


class ModelHost:
    def __init__(
        self,
        models: dict[str, Callable[[], LLMBackend]],
        tokens: TokenService,
        aliases: AliasService,
    ) -> None:
        self.models = {n: ServedModel(n, load, threading.Lock()) for n, load in models.items()}
        self.tokens, self.aliases = tokens, aliases
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
                served.backend = served.load()
            return served.backend

    def load_all(self) -> None:
        """Load every base model now (the server does this at start-up)."""
        try:
            for served in self.models.values():
                self.backend(served)
        except ValuetuneError as exc:
            self.load_error = str(exc)

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
        holder = self._from_token(resolution.content, purpose="share")
        return Holder(holder.precis, holder.jti, "alias")

    def _from_token(self, text: str, purpose: str = "preference") -> Holder:
        try:
            verified = self.tokens.verify(text, purpose)  # type: ignore[arg-type]
        except TokenError as exc:
            if purpose == "preference" and exc.problem is TokenProblem.WRONG_PURPOSE:
                return self._from_token(text, "share")
            raise HostError(
                f"The value token was refused: {exc.problem.value}.", 401, "invalid_value_token"
            ) from None
        if purpose == "preference":
            return Holder(write_precis(verified.profile()), verified.jti, "token")
        # a share token names the preference token it was made from: its artifacts apply
        return Holder(write_precis(verified.profile()), str(verified.claims["ref"]), "share-token")

    def aligned(self, served: ServedModel, holder: Holder | None) -> tuple[LLMBackend, Receipt]:
        """The backend that answers for `holder` on `served`, and how it is aligned."""
        base = self.backend(served)
        if holder is None:
            return base, Receipt("none")
        return PrecisBackend(base, holder.precis), Receipt("precis")
