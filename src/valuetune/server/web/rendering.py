"""What every page needs: the services, the visitor, templates, and form checks."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from valuetune.server.host import ModelHost
from valuetune.server.web.visitor import COOKIE, MAX_AGE, Signer, Visitor
from valuetune.store.admin import AdminStore
from valuetune.store.demographics import DemographicsStore
from valuetune.store.survey import SurveyStore
from valuetune.store.tokens import TokenStore
from valuetune.token.alias import AliasService
from valuetune.token.tokens import TokenService
from valuetune.values.items import ItemBank
from valuetune.values.survey import SurveyConfig

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


class FormRejectedError(Exception):
    """A form without a valid CSRF token (expired page, or another site posting)."""


@dataclass
class WebServices:
    """Everything the pages use, built by the composition root (`valuetune serve`)."""

    survey: SurveyStore
    demographics: DemographicsStore
    tokens: TokenService
    token_store: TokenStore
    aliases: AliasService
    admin: AdminStore
    signer: Signer
    bank: ItemBank
    survey_config: SurveyConfig = field(default_factory=SurveyConfig)
    secure_cookies: bool = False
    """Mark cookies Secure even when a request arrives over plain HTTP (behind a proxy that
    ends TLS); requests made over HTTPS always get Secure cookies."""
    api_base: str = "http://127.0.0.1:8000/v1"
    """Shown to the token holder: where an OpenAI client should point."""
    host: ModelHost | None = None
    """The models the playground talks to (set by the API server's app factory)."""


def services(request: Request) -> WebServices:
    found: WebServices = request.app.state.web
    return found


def templates(request: Request) -> Jinja2Templates:
    found: Jinja2Templates = request.app.state.templates
    return found


def visitor(request: Request) -> Visitor:
    """The visitor from the cookie; a new one when there is none or it was altered."""
    cached = getattr(request.state, "visitor", None)
    if isinstance(cached, Visitor):
        return cached
    found = services(request).signer.load(request.cookies.get(COOKIE))
    who = found or services(request).signer.new_visitor()
    request.state.visitor = who
    return who


def secure(request: Request) -> bool:
    """Whether cookies must be Secure: configured so, or the request came over HTTPS."""
    return services(request).secure_cookies or request.url.scheme == "https"


def remember(request: Request, response: Response, who: Visitor) -> Response:
    """Put `who` in the response's cookie (every page refreshes it)."""
    request.state.visitor = who
    response.set_cookie(
        COOKIE,
        services(request).signer.dump(who),
        max_age=MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=secure(request),
        path="/",
    )
    return response


def page(
    request: Request, name: str, status: int = 200, who: Visitor | None = None, **context: Any
) -> HTMLResponse:
    """Render template `name` for the visitor, with their CSRF token at hand."""
    who = who or visitor(request)
    context.setdefault("csrf", services(request).signer.csrf(who))
    context.setdefault("visitor", who)
    response = templates(request).TemplateResponse(request, name, context, status_code=status)
    remember(request, response, who)
    return response


def go(request: Request, path: str, who: Visitor | None = None) -> RedirectResponse:
    """See other: after a POST, the browser GETs `path` (no resubmission on reload)."""
    response = RedirectResponse(path, status_code=303)
    if who is not None:
        remember(request, response, who)
    return response


async def checked_form(request: Request, csrf: str | None = None) -> dict[str, str]:
    """The posted form's fields, once its CSRF token is verified: against `csrf` (an admin
    session's) when given, else against the one derived from the visitor's cookie."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    sent = fields.get("csrf")
    if csrf is not None:
        accepted = sent is not None and hmac.compare_digest(sent, csrf)
    else:
        accepted = services(request).signer.csrf_ok(visitor(request), sent)
    if not accepted:
        raise FormRejectedError
    return fields
