"""Proxy mode: valuetune resolves tokens, an upstream OpenAI-compatible server generates.

`valuetune serve --upstream URL` fronts a server such as vLLM's multi-LoRA server
(`vllm serve BASE --enable-lora --lora-modules vt-dpo-…=DIR`, as `valuetune export vllm`
prints). For each request the proxy verifies the token or resolves the alias, looks up
the holder's adapters in the catalog, and if the upstream lists one of them for the
requested base model (vLLM lists LoRA modules with their `parent`), names that module
as the model and adds the holder's boundaries; otherwise it keeps the base model and
adds the whole précis. Replies come back with the client's model name and the receipt.
Many holders' adapters are so served by one upstream, batched together.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from valuetune.server.auth import client_id
from valuetune.server.chat import (
    RECEIPT_HEADER,
    TOKEN_HEADER,
    generation_options,
    request_messages,
)
from valuetune.server.host import Holder, HostError, ModelHost, Receipt
from valuetune.server.schema import CHAT_RESPONSES, ChatCompletionRequest
from valuetune.tune.artifacts import jti_hash
from valuetune.tune.precis import with_system

router = APIRouter()


class Upstream:
    """An OpenAI-compatible server at `base_url` (ending in `/v1`), and what it serves."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        refresh_s: float = 10.0,
        timeout_s: float = 600.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
        )
        self.refresh_s = refresh_s
        self._models: dict[str, str | None] = {}
        self._fetched_at: float | None = None

    async def models(self) -> dict[str, str | None]:
        """Model id → its parent (the base model of a LoRA module; None for a base)."""
        now = time.monotonic()
        if self._fetched_at is not None and now - self._fetched_at < self.refresh_s:
            return self._models
        try:
            reply = await self.client.get("/models")
            reply.raise_for_status()
            data = reply.json()["data"]
            models = {str(m["id"]): (str(m["parent"]) if m.get("parent") else None) for m in data}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            raise HostError(
                "The upstream model server is unavailable.", 502, "upstream_unavailable"
            ) from None
        self._models, self._fetched_at = models, now
        return models

    async def bases(self) -> list[str]:
        return sorted(name for name, parent in (await self.models()).items() if parent is None)

    async def aclose(self) -> None:
        await self.client.aclose()


def route(
    host: ModelHost, holder: Holder | None, base: str, models: dict[str, str | None]
) -> tuple[str, str | None, Receipt]:
    """(the upstream model to ask, the system text to add, the receipt) for one request."""
    if holder is None:
        return base, None, Receipt("none")
    if holder.jti is not None and host.catalog is not None:
        for entry in host.catalog.for_holder(jti_hash(holder.jti)):
            listed = entry.module_name in models
            if entry.is_adapter and listed and models[entry.module_name] in (base, None):
                receipt = Receipt(entry.method, entry.module_name, entry.fit)
                return entry.module_name, holder.boundaries or None, receipt
    return base, holder.precis, Receipt("precis")


def _upstream(request: Request) -> Upstream:
    upstream: Upstream = request.app.state.upstream
    return upstream


@router.get("/v1/models", dependencies=[Depends(client_id)])
async def list_models(request: Request) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "valuetune"}
            for name in await _upstream(request).bases()
        ],
    }


@router.post("/v1/chat/completions", response_model=None, responses=CHAT_RESPONSES)
async def chat_completions(
    request: Request, body: ChatCompletionRequest, client: str = Depends(client_id)
) -> Response:
    host: ModelHost = request.app.state.host
    upstream = _upstream(request)
    base, _, suffix = body.model.partition("@")
    models = await upstream.models()
    if models.get(base, "") is not None:  # absent, or a LoRA module asked for by name
        raise HostError(
            f"The model `{base}` does not exist; available: {', '.join(await upstream.bases())}",
            404,
            "model_not_found",
            "model",
        )
    text = suffix or request.headers.get(TOKEN_HEADER)  # the per-request suffix wins
    holder = await run_in_threadpool(host.holder, text, client) if text else None
    generation_options(body)  # the same limits as local serving
    target, instruction, receipt = route(host, holder, base, models)
    messages = request_messages(body)
    if instruction:
        messages = with_system(messages, instruction)
    payload = body.model_dump(exclude_unset=True)
    payload["model"] = target
    payload["messages"] = [{"role": m.role, "content": m.content} for m in messages]
    headers = {RECEIPT_HEADER: receipt.header()}
    try:
        reply = await upstream.client.send(
            upstream.client.build_request("POST", "/chat/completions", json=payload),
            stream=True,
        )
    except httpx.HTTPError:
        raise HostError(
            "The upstream model server is unavailable.", 502, "upstream_unavailable"
        ) from None
    if reply.status_code >= 400 or not body.stream:
        try:
            raw = await reply.aread()
        finally:
            await reply.aclose()
        return _whole(raw, reply.status_code, base, receipt, headers)
    return StreamingResponse(
        _relay(reply, base, receipt), media_type="text/event-stream", headers=headers
    )


def _whole(
    raw: bytes, status: int, base: str, receipt: Receipt, headers: dict[str, str]
) -> JSONResponse:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise HostError("The upstream model server sent a malformed reply.", 502, "bad_upstream")
    if status >= 400:  # the upstream's own OpenAI error object, passed on as it is
        return JSONResponse(doc, status_code=status, headers=headers)
    doc["model"] = base
    doc["valuetune"] = {"receipt": receipt.to_dict()}
    return JSONResponse(doc, headers=headers)


async def _relay(reply: httpx.Response, base: str, receipt: Receipt) -> AsyncIterator[str]:
    """The upstream's events with the client's model name and the receipt in the first."""
    first = True
    try:
        async for line in reply.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                yield "data: [DONE]\n\n"
                break
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if isinstance(event, dict):
                if "model" in event:
                    event["model"] = base
                if first and "choices" in event:
                    event["valuetune"] = {"receipt": receipt.to_dict()}
                    first = False
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
    finally:
        await reply.aclose()  # a client that goes away closes the upstream stream too
