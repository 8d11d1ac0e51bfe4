"""`create_web(services)`: the pages, mounted by the API server's app factory at `/`.

Server-rendered with Jinja2 (autoescaping on), no build step; every page works without
JavaScript (the one script adds copy buttons and live figures). Errors are pages, not
JSON, and never show a traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException as StarletteHTTPException

from valuetune.errors import ValuetuneError
from valuetune.server.schema import error_body
from valuetune.server.web import admin, playground, results, survey
from valuetune.server.web.rendering import (
    STATIC,
    TEMPLATES,
    FormRejectedError,
    WebServices,
    page,
)

log = logging.getLogger(__name__)

API_PREFIX = "/v1/"
"""Paths the API owns: a miss there is answered as the API would, in JSON."""


def create_web(web: WebServices) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = web
    # autoescape everything: user text (playground prompts, hostile input) is never markup
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    app.state.templates = Jinja2Templates(env=env)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.include_router(survey.router)
    app.include_router(results.router)
    app.include_router(playground.router)
    app.include_router(admin.router)

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        return page(request, "home.html")

    @app.exception_handler(FormRejectedError)
    async def rejected(request: Request, _exc: FormRejectedError) -> Response:
        message = (
            "This form has expired or did not come from this site. Go back, reload and try again."
        )
        return page(request, "error.html", status=403, title="Form expired", message=message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(API_PREFIX):  # an API client: an OpenAI error object
            kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
            message = f"There is no {request.method} {request.url.path} in this API."
            return JSONResponse(error_body(message, kind), status_code=exc.status_code)
        if exc.status_code == 404:
            return page(
                request,
                "error.html",
                status=404,
                title="Not found",
                message="There is no such page.",
            )
        return page(
            request, "error.html", status=exc.status_code, title="Error", message=str(exc.detail)
        )

    @app.exception_handler(ValuetuneError)
    async def refused(request: Request, exc: ValuetuneError) -> Response:
        log.warning("page refused: %s", type(exc).__name__)
        return page(request, "error.html", status=400, title="That did not work", message=str(exc))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.error("page failed: %s", type(exc).__name__)
        message = "Something went wrong on our side. Your answers so far are saved; try again."
        return page(request, "error.html", status=500, title="Server error", message=message)

    return app
