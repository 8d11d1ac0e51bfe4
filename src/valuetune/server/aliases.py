"""`POST /v1/aliases/resolve`: what an alias's holder chose to share, for third parties.

Hits and misses have the same fields and take the same time (the alias service pads every
lookup to a floor), and each client may resolve a limited number per minute, so the
endpoint cannot be used to enumerate aliases.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from valuetune.server.auth import client_id
from valuetune.server.host import ModelHost

router = APIRouter()


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(min_length=1, max_length=200)


@router.post("/v1/aliases/resolve")
async def resolve_alias(
    request: Request, body: ResolveRequest, client: str = Depends(client_id)
) -> dict[str, Any]:
    host: ModelHost = request.app.state.host
    resolution = await run_in_threadpool(host.aliases.resolve, body.alias, client)
    return {"found": resolution.found, "share": resolution.share, "content": resolution.content}
