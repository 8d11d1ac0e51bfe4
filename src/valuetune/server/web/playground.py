"""The playground: one message, answered by the plain base model and by the model aligned
to the visitor's token, side by side, each with its alignment receipt.

Both replies are greedy, so the difference between them is the alignment alone. The
prompt is never stored or logged; it is shown back escaped, like all user text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from valuetune.llm.base import GenerationOptions, Message
from valuetune.server.host import Holder, HostError, ModelHost, Receipt, ServedModel
from valuetune.server.web.rendering import checked_form, page, services, visitor

router = APIRouter()

MAX_PROMPT = 2000
"""Characters accepted in a playground message."""
MAX_REPLY_TOKENS = 96
"""Each side's reply length: two replies from the embedded model on a laptop CPU take
about 15 s at this length."""
EXAMPLES = (
    "My brother asked to borrow a large sum of money. Should I lend it to him?",
    "Is it wrong to skip a family gathering to rest after a hard week?",
    "What should I think about before taking a job at a company whose product I dislike?",
)


@dataclass(frozen=True)
class Reply:
    title: str
    text: str
    receipt: Receipt


def _served(host: ModelHost | None) -> ServedModel | None:
    if host is None or not host.names():
        return None
    return host.models[host.names()[0]]


def _answer(host: ModelHost, served: ServedModel, holder: Holder | None, prompt: str) -> Reply:
    aligned = host.aligned(served, holder)
    options = GenerationOptions(max_new_tokens=MAX_REPLY_TOKENS, temperature=0.0)
    with served.lock:
        reply = aligned.backend.generate([Message("user", prompt)], options)
    title = "Your model" if holder else "Base model"
    return Reply(title, reply.text.strip(), aligned.receipt)


def _page(request: Request, status: int = 200, **context: Any) -> Response:
    served = _served(services(request).host)
    return page(
        request,
        "playground.html",
        status=status,
        model=served.name if served else None,
        examples=EXAMPLES,
        max_prompt=MAX_PROMPT,
        **context,
    )


@router.get("/playground")
def playground(request: Request) -> Response:
    return _page(request, prompt="", replies=[])


@router.post("/playground")
async def ask(request: Request) -> Response:
    form = await checked_form(request)
    prompt = form.get("prompt", "").strip()
    pasted = form.get("token", "").strip()
    web = services(request)
    served = _served(web.host)
    if served is None or web.host is None:
        return _page(request, 503, prompt=prompt, replies=[], error="No model is loaded here.")
    if not prompt or len(prompt) > MAX_PROMPT:
        error = f"Write a message of 1 to {MAX_PROMPT} characters."
        return _page(request, 400, prompt=prompt[:MAX_PROMPT], replies=[], error=error)
    who = visitor(request)
    text = pasted or who.token
    if not text:
        error = "Take the survey first, or paste a value token or alias."
        return _page(request, 400, prompt=prompt, replies=[], error=error)
    host = web.host
    try:
        holder = await run_in_threadpool(host.holder, text, f"web:{who.visit}")
    except HostError as exc:
        return _page(request, 400, prompt=prompt, replies=[], error=str(exc))
    base = await run_in_threadpool(_answer, host, served, None, prompt)
    mine = await run_in_threadpool(_answer, host, served, holder, prompt)
    return _page(request, prompt=prompt, replies=[base, mine], pasted=bool(pasted))
