"""Who is calling: API keys when they are required, and each key's rate limit.

On loopback with no key created, requests need no key (a local user's own machine); once
any key exists, or the server listens beyond loopback, every API request needs an active
key as `Authorization: Bearer vt-…`. A request's client id (the key's id, else the peer
address) names its rate-limit buckets; it never contains the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import Request

from valuetune.server.host import HostError
from valuetune.store.apikeys import ApiKeyStore
from valuetune.store.tokens import TokenStore

WINDOW_SECONDS = 60


class Gate:
    def __init__(
        self,
        keys: ApiKeyStore,
        limits: TokenStore,
        *,
        keys_always: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.keys, self.limits, self.keys_always, self._wall = keys, limits, keys_always, wall

    def admit(self, authorization: str | None, peer: str) -> str:
        """The client id of an admitted request; raises HostError (401, 429) otherwise."""
        if not (self.keys_always or self.keys.any_active()):
            return f"peer:{peer}"  # a sent key is ignored: OpenAI clients always send one
        scheme, _, key = (authorization or "").partition(" ")
        record = self.keys.check(key.strip()) if scheme.lower() == "bearer" else None
        if record is None:
            raise HostError(
                "A valid API key is required: send it as 'Authorization: Bearer vt-…' "
                "(create one with `valuetune apikey create`).",
                401,
                "invalid_api_key",
            )
        if not self.limits.allow(
            f"key:{record.id}", record.per_minute, WINDOW_SECONDS, self._wall()
        ):
            raise HostError(
                f"Rate limit reached for this API key: {record.per_minute} requests a minute.",
                429,
                "rate_limit_exceeded",
            )
        return f"key:{record.id}"


def client_id(request: Request) -> str:
    """FastAPI dependency: admit the request (or refuse it) and name its client."""
    gate: Gate = request.app.state.gate
    peer = request.client.host if request.client else "unknown"
    return gate.admit(request.headers.get("authorization"), peer)
