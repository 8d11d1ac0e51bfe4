"""The administrator's dashboard: sign-in, live statistics, quality flags, exports.

Sign-in checks an argon2 password hash (and a TOTP code when enabled), rate-limited per
client. The session cookie is random, HttpOnly, SameSite=Strict and scoped to /admin;
every form also carries the session's CSRF token. Pages show aggregates only, with
demographic cells of 1-10 people suppressed; respondent rows show a short pseudonym.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from valuetune.server.web.dashboard import build_dashboard, live_figures
from valuetune.server.web.rendering import (
    checked_form,
    go,
    page,
    secure,
    services,
)
from valuetune.store.admin import AdminAuthError, SignedIn
from valuetune.store.exports import FORMATS, MEDIA_TYPES, WRITERS, export_columns, export_rows

router = APIRouter(prefix="/admin")

ADMIN_COOKIE = "vt_admin"
LOGIN_LIMIT = 10
"""Sign-in attempts per client per 5 minutes."""


def signed_in(request: Request) -> SignedIn | None:
    return services(request).admin.session(request.cookies.get(ADMIN_COOKIE))


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/login")
def login_page(request: Request) -> Response:
    if signed_in(request):
        return go(request, "/admin")
    return page(request, "admin_login.html")


@router.post("/login")
async def login(request: Request) -> Response:
    form = await checked_form(request)
    web = services(request)
    allowed = await run_in_threadpool(
        web.token_store.allow, f"admin-login:{_client(request)}", LOGIN_LIMIT, 300, time.time()
    )
    if not allowed:
        error = "Too many attempts. Wait five minutes and try again."
        return page(request, "admin_login.html", status=429, error=error)
    try:
        cookie, session = await run_in_threadpool(
            web.admin.sign_in,
            form.get("username", ""),
            form.get("password", ""),
            form.get("code") or None,
        )
    except AdminAuthError as exc:
        return page(request, "admin_login.html", status=401, error=str(exc))
    response = go(request, "/admin")
    response.set_cookie(
        ADMIN_COOKIE,
        cookie,
        max_age=int((session.expires_at - datetime.now(UTC)).total_seconds()),
        httponly=True,
        samesite="strict",
        secure=secure(request),
        path="/admin",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = signed_in(request)
    if session is not None:
        await checked_form(request, session.csrf)
        services(request).admin.sign_out(request.cookies[ADMIN_COOKIE])
    response = go(request, "/admin/login")
    response.delete_cookie(ADMIN_COOKIE, path="/admin")
    return response


@router.get("")
async def dashboard(request: Request) -> Response:
    session = signed_in(request)
    if session is None:
        return go(request, "/admin/login")
    web = services(request)
    board = await run_in_threadpool(build_dashboard, web.survey, web.demographics, web.bank)
    response = page(request, "admin.html", board=board, session=session, formats=FORMATS)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/stats.json")
async def stats(request: Request) -> Response:
    """The headline figures, for the dashboard's live refresh."""
    if signed_in(request) is None:
        return JSONResponse({"error": "sign in first"}, status_code=401)
    web = services(request)
    figures = await run_in_threadpool(live_figures, web.survey)
    return JSONResponse(figures, headers={"Cache-Control": "no-store"})


@router.post("/respondents/{respondent_id}/exclusion")
async def exclusion(request: Request, respondent_id: str) -> Response:
    session = signed_in(request)
    if session is None:
        return go(request, "/admin/login")
    form = await checked_form(request, session.csrf)
    reason: str | None = None
    if form.get("action") == "exclude":
        reason = (form.get("reason") or "excluded by an administrator").strip()
    await run_in_threadpool(services(request).survey.set_excluded, respondent_id, reason)
    return go(request, "/admin#quality")


@router.get("/export.{fmt}")
async def export(request: Request, fmt: str) -> Response:
    if signed_in(request) is None:
        return go(request, "/admin/login")
    if fmt not in FORMATS:
        return page(request, "error.html", status=404, title="Not found", message="No such export.")
    web = services(request)

    def build() -> bytes:
        rows = export_rows(web.survey, web.demographics, web.bank)
        return WRITERS[fmt](rows, export_columns(web.bank))

    body = await run_in_threadpool(build)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    headers: dict[str, Any] = {
        "Content-Disposition": f'attachment; filename="valuetune-{stamp}.{fmt}"',
        "Cache-Control": "no-store",
    }
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
