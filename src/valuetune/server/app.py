"""`create_app(settings)`: the HTTP server, with its state on `app.state` (no globals).

Errors of every kind leave as OpenAI error objects (`{"error": {message, type, param,
code}}`) with the status OpenAI would use, and never echo a token, alias or prompt.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from valuetune.errors import ValuetuneError
from valuetune.server.aliases import router as alias_router
from valuetune.server.auth import Gate
from valuetune.server.chat import router as chat_router
from valuetune.server.host import HostError, ModelHost
from valuetune.server.proxy import Upstream
from valuetune.server.proxy import router as proxy_router
from valuetune.server.schema import ERROR_RESPONSES, error_body
from valuetune.settings import Settings
from valuetune.token.alias import RateLimitedError
from valuetune.token.words import MAX_WORDS, MIN_WORDS, AliasFormatError

SECURITY_HEADERS = {
    # pages load scripts, styles and images from this origin only, and no one frames them
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
if TYPE_CHECKING:
    from valuetune.server.web.rendering import WebServices

MAX_BODY_BYTES = 1_000_000
"""Largest request body accepted (a prompt of about 250,000 words)."""
READINESS_503: dict[str, Any] = {
    "description": "Not ready: models still loading, or loading failed (`error` says why).",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"enum": ["loading", "failed"]},
                    "models": {"type": "array", "items": {"type": "string"}},
                    "error": {"type": "string"},
                },
            }
        }
    },
}


def _error(status: int, message: str, kind: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(message, kind, **extra), status_code=status)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = ".".join(where) or None
    reason = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None
    return (f"Invalid value for {field}: {reason}" if field else reason), field


def create_app(
    settings: Settings,
    host: ModelHost,
    gate: Gate,
    upstream: Upstream | None = None,
    web: WebServices | None = None,
) -> FastAPI:
    """The API server for `host`'s models; `gate` admits requests (API keys, limits).

    With `upstream`, chat completions are generated there (proxy mode) and `host` only
    verifies tokens, resolves aliases and finds each holder's artifacts. With `web`, the
    web pages are served at `/` beside the API."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # load the models in the background: /health answers at once, /ready once loaded
        threading.Thread(target=host.load_all, name="valuetune-load", daemon=True).start()
        yield
        if upstream is not None:
            await upstream.aclose()

    app = FastAPI(
        title="valuetune",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        responses=ERROR_RESPONSES,  # in the schema too: errors are OpenAI error objects
    )
    app.state.settings, app.state.host, app.state.gate = settings, host, gate
    app.state.upstream = upstream
    app.include_router(chat_router if upstream is None else proxy_router)
    app.include_router(alias_router)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return _error(
                413,
                f"The request body exceeds {MAX_BODY_BYTES} bytes.",
                "invalid_request_error",
                code="request_too_large",
            )
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = _validation_message(exc)
        return _error(400, message, "invalid_request_error", param=field)

    @app.exception_handler(HostError)
    async def refused(_request: Request, exc: HostError) -> JSONResponse:
        kind = {401: "authentication_error", 429: "rate_limit_error"}.get(
            exc.status, "invalid_request_error" if exc.status < 500 else "server_error"
        )
        return _error(exc.status, str(exc), kind, code=exc.code, param=exc.param)

    @app.exception_handler(RateLimitedError)
    async def limited(_request: Request, exc: RateLimitedError) -> JSONResponse:
        return _error(429, str(exc), "rate_limit_error", code="rate_limit_exceeded")

    @app.exception_handler(AliasFormatError)
    async def not_an_alias(_request: Request, _exc: AliasFormatError) -> JSONResponse:
        message = (
            f"Not an alias: an alias is {MIN_WORDS} to {MAX_WORDS} words from the alias wordlist."
        )
        return _error(400, message, "invalid_request_error", code="invalid_alias", param="alias")

    @app.exception_handler(ValuetuneError)
    async def failed(_request: Request, exc: ValuetuneError) -> JSONResponse:
        return _error(500, f"The model could not answer: {exc}", "server_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def crashed(_request: Request, _exc: Exception) -> JSONResponse:
        # a bug or a failure inside the model (out of memory): no details leave the server
        return _error(500, "The server failed while answering; try again.", "server_error")

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", response_model=None, responses={503: READINESS_503})
    async def ready() -> dict[str, Any] | JSONResponse:
        """Readiness: every served base model is loaded (or the upstream answers)."""
        if upstream is not None:
            try:
                return {"status": "ready", "models": await upstream.bases()}
            except HostError as exc:
                return JSONResponse({"status": "failed", "error": str(exc)}, status_code=503)
        if host.ready():
            return {"status": "ready", "models": host.names()}
        doc = {"status": "failed" if host.load_error else "loading", "models": host.names()}
        if host.load_error:
            doc["error"] = host.load_error
        return JSONResponse(doc, status_code=503)

    if web is not None:
        from valuetune.server.web.app import create_web

        web.host = host
        app.mount("/", create_web(web))  # last: the API's routes match first
    return app
