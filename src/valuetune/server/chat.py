"""`/v1/models` and `/v1/chat/completions`, answering in the OpenAI wire format."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from queue import SimpleQueue
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from valuetune.errors import ValuetuneError
from valuetune.llm.base import Chunk, GenerationOptions, LLMBackend, Message
from valuetune.server.auth import client_id
from valuetune.server.host import Holder, HostError, ModelHost, Receipt, ServedModel
from valuetune.server.schema import (
    CHAT_RESPONSES,
    ChatCompletionRequest,
    error_body,
    logprobs_content,
)
from valuetune.tune.precis import with_system

log = logging.getLogger(__name__)
router = APIRouter()
RECEIPT_HEADER = "X-Valuetune-Receipt"
TOKEN_HEADER = "X-Value-Token"
MAX_COMPLETION_TOKENS = 2048
"""Most tokens one request may ask for."""
CONTEXT_TOKENS = 8192
"""Prompt plus completion must fit the embedded model's context window."""


def _host(request: Request) -> ModelHost:
    host: ModelHost = request.app.state.host
    return host


@router.get("/v1/models", dependencies=[Depends(client_id)])
def list_models(request: Request) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "valuetune"}
            for name in _host(request).names()
        ],
    }


def request_messages(body: ChatCompletionRequest) -> list[Message]:
    # OpenAI's `developer` role is the system role of older models
    return [Message("system" if m.role == "developer" else m.role, m.text()) for m in body.messages]


def generation_options(body: ChatCompletionRequest) -> GenerationOptions:
    limit = body.token_limit() or 256
    if limit > MAX_COMPLETION_TOKENS:
        raise HostError(
            f"max_tokens is too large: {limit}; at most {MAX_COMPLETION_TOKENS}",
            400,
            "max_tokens_too_large",
            "max_tokens",
        )
    return GenerationOptions(
        max_new_tokens=limit,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=tuple(body.stop or ()),
        seed=body.seed,
        logprobs=body.logprobs,
        top_logprobs=body.top_logprobs or 0,
    )


def _check_context(backend: LLMBackend, messages: list[Message], limit: int) -> None:
    chat_ids = getattr(backend, "chat_ids", None)
    if chat_ids is None:
        return
    used = len(chat_ids(messages, add_generation_prompt=True))
    if used + limit > CONTEXT_TOKENS:
        raise HostError(
            f"This model's context is {CONTEXT_TOKENS} tokens; the messages take {used} and "
            f"{limit} more were asked for. Shorten the messages or lower max_tokens.",
            400,
            "context_length_exceeded",
            "messages",
        )


def _resolve(
    request: Request, body: ChatCompletionRequest, client: str
) -> tuple[ServedModel, Holder | None]:
    host = _host(request)
    served, suffix = host.split_model(body.model)
    text = suffix or request.headers.get(TOKEN_HEADER)  # the per-request suffix wins
    return served, (host.holder(text, client) if text else None)


@router.post("/v1/chat/completions", response_model=None, responses=CHAT_RESPONSES)
async def chat_completions(
    request: Request, body: ChatCompletionRequest, client: str = Depends(client_id)
) -> JSONResponse | StreamingResponse:
    host = _host(request)
    served, holder = await run_in_threadpool(_resolve, request, body, client)
    aligned = await run_in_threadpool(host.aligned, served, holder)
    backend, receipt = aligned.backend, aligned.receipt
    messages, options = request_messages(body), generation_options(body)
    seen = with_system(messages, aligned.instruction) if aligned.instruction else messages
    base = await run_in_threadpool(host.backend, served)
    await run_in_threadpool(_check_context, base, seen, options.max_new_tokens)
    ident = f"chatcmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    headers = {RECEIPT_HEADER: receipt.header()}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(served, backend, messages, options, ident, created, served.name, receipt)
        return StreamingResponse(
            _sse(events, include_usage), media_type="text/event-stream", headers=headers
        )

    def answer() -> Any:
        with served.lock:
            return backend.generate(messages, options)

    reply = await run_in_threadpool(answer)
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": reply.text, "refusal": None},
        "finish_reason": reply.finish_reason,
        "logprobs": logprobs_content(reply.logprobs) if options.logprobs else None,
    }
    doc = {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": served.name,
        "choices": [choice],
        "usage": _usage(reply.prompt_tokens, reply.completion_tokens),
        "valuetune": {"receipt": receipt.to_dict()},
    }
    return JSONResponse(doc, headers=headers)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _events(
    served: ServedModel,
    backend: LLMBackend,
    messages: list[Message],
    options: GenerationOptions,
    ident: str,
    created: int,
    model: str,
    receipt: Receipt,
) -> Iterator[dict[str, Any]]:
    """The stream's chunk objects; runs in worker threads, holding the model's lock."""

    def chunk(delta: dict[str, Any], piece: Chunk | None = None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
        if piece is not None:
            choice["finish_reason"] = piece.finish_reason
            if options.logprobs:
                choice["logprobs"] = logprobs_content(piece.logprobs)
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    with served.lock:
        first = chunk({"role": "assistant", "content": ""})
        yield {**first, "valuetune": {"receipt": receipt.to_dict()}}
        for piece in backend.stream(messages, options):
            yield chunk({"content": piece.text} if piece.text else {}, piece)
            if piece.finish_reason is not None:
                usage = _usage(piece.prompt_tokens, piece.completion_tokens)
                yield {**chunk({}), "choices": [], "usage": usage}


_END = object()
_CRASHED = object()


async def _sse(events: Iterator[dict[str, Any]], include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events from a blocking iterator that a pump thread drives.

    The pump owns the iterator (and so the model's lock) from start to end in one thread;
    when the client goes away, the response is cancelled, `cancelled` is set, and the pump
    stops after the token in progress and releases the lock.
    """
    queue: SimpleQueue[object] = SimpleQueue()
    cancelled = threading.Event()

    def pump() -> None:
        try:
            for event in events:
                if cancelled.is_set():
                    break
                queue.put(event)
        except ValuetuneError as exc:
            queue.put(exc)
        except Exception:
            # a bug or a failure inside the model: as for a 500, no details leave the server
            log.exception("a streamed answer failed")
            queue.put(_CRASHED)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            queue.put(_END)

    threading.Thread(target=pump, name="valuetune-stream", daemon=True).start()
    try:
        while (item := await run_in_threadpool(queue.get)) is not _END:
            if isinstance(item, ValuetuneError):
                body = error_body(f"The model failed while answering: {item}", "server_error")
                yield f"data: {json.dumps(body)}\n\n"
                return
            if item is _CRASHED:
                body = error_body("The server failed while answering; try again.", "server_error")
                yield f"data: {json.dumps(body)}\n\n"
                return
            assert isinstance(item, dict)
            if "usage" in item and not item["choices"] and not include_usage:
                continue
            yield f"data: {json.dumps(item, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        cancelled.set()
