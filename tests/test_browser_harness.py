"""The real-browser harness (tests/browser.py) on small pages served on loopback: axe finds
what it should and passes what it should, screenshots are real PNGs, and the console log
catches CSP violations and uncaught exceptions."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from browser import (
    ConsoleLog,
    NewPage,
    Screenshot,
    Viewport,
    assert_accessible,
    axe_violations,
    browser_unavailable,
    serve_asgi,
    watch_console,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
</head>
<body>
<main>
<h1>{title}</h1>
"""
TAIL = "</main>\n</body>\n</html>\n"
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
GOOD = (
    HEAD.format(title="Sign up")
    + """<form method="post" action="/signup">
<label for="email">Email address</label>
<input id="email" name="email" type="email" autocomplete="email" required>
<img src="{PIXEL}" alt="valuetune logo" width="32" height="32">
<button type="submit">Continue</button>
</form>
""".replace("{PIXEL}", PIXEL)
    + TAIL
)
BAD = (
    HEAD.format(title="Broken")
    + f"""<p style="color: #c8c8c8; background: #ffffff">Faint text nobody can read.</p>
<input id="nameless" type="text">
<img id="unexplained" src="{PIXEL}" width="32" height="32">
"""
    + TAIL
)
# The inline script must be blocked by the header; the same-origin one must still run.
CSP = (
    HEAD.format(title="Strict")
    + """<p>Scripts from this origin only.</p>
<script>window.inlineRan = true;</script>
<script src="/self.js"></script>
"""
    + TAIL
)
THROWS = HEAD.format(title="Throws") + "<script>throw new Error('boom');</script>\n" + TAIL
# What a session cookie on the web pages will look like.
SECURE_COOKIE = "a=1; Secure; HttpOnly; SameSite=Strict"


def _html(body: str, **headers: str) -> Callable[[Request], Response]:
    def endpoint(request: Request) -> Response:
        return HTMLResponse(body, headers=headers)

    return endpoint


def _cookie_header(request: Request) -> Response:
    return PlainTextResponse(request.headers.get("cookie", ""))


def _self_js(request: Request) -> Response:
    return Response("window.selfRan = true;", media_type="text/javascript")


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/good", _html(GOOD)),
            Route("/bad", _html(BAD)),
            Route("/csp", _html(CSP, **{"Content-Security-Policy": "script-src 'self'"})),
            Route("/self.js", _self_js),
            Route("/throws", _html(THROWS)),
            Route("/set-cookie", _html(GOOD, **{"Set-Cookie": SECURE_COOKIE})),
            Route("/cookie", _cookie_header),
        ]
    )
    with serve_asgi(app) as base:
        yield base


def test_accessible_page_passes_axe_at_each_viewport(
    page: Page, console: ConsoleLog, site: str
) -> None:
    page.goto(f"{site}/good")
    assert axe_violations(page) == []
    assert_accessible(page)
    console.assert_clean()


def test_axe_finds_each_planted_violation(new_page: NewPage, site: str) -> None:
    page = new_page("desktop")
    page.goto(f"{site}/bad")
    found = {violation.id: violation for violation in axe_violations(page)}
    assert set(found) == {"label", "color-contrast", "image-alt"}
    assert [node.target for node in found["label"].nodes] == ["#nameless"]
    assert [node.target for node in found["image-alt"].nodes] == ["#unexplained"]
    assert found["image-alt"].impact == "critical"
    # `rules` narrows the run to the named rules.
    assert [v.id for v in axe_violations(page, rules=["image-alt"])] == ["image-alt"]


def test_assert_accessible_names_rules_and_elements(new_page: NewPage, site: str) -> None:
    page = new_page("phone")
    page.goto(f"{site}/bad")
    with pytest.raises(AssertionError) as failure:
        assert_accessible(page)
    message = str(failure.value)
    assert "3 accessibility violation(s)" in message
    for expected in ("label [critical]", "color-contrast [serious]", "#nameless", "#unexplained"):
        assert expected in message
    assert "dequeuniversity.com/rules/axe/" in message  # each rule links its explanation


def test_screenshot_is_a_full_page_png_at_device_pixels(
    page: Page, viewport: Viewport, site: str, screenshot: Screenshot
) -> None:
    page.goto(f"{site}/good")
    path = screenshot(page, f"harness-good-{viewport.name}")
    assert path.parent.parts[-2:] == ("test-artifacts", "screenshots")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == viewport.width * viewport.device_scale_factor
    assert height >= viewport.height * viewport.device_scale_factor
    with pytest.raises(ValueError, match="screenshot name"):
        screenshot(page, "../escape")


def test_console_log_records_csp_violation(new_page: NewPage, site: str) -> None:
    page = new_page("desktop")
    console = watch_console(page)
    page.goto(f"{site}/csp")
    assert page.evaluate("() => window.selfRan") is True
    assert page.evaluate("() => window.inlineRan") is None  # blocked
    assert len(console.csp_violations) == 1
    assert "script-src 'self'" in console.csp_violations[0].text
    with pytest.raises(AssertionError, match="Content Security Policy"):
        console.assert_clean()
    assert_accessible(page)  # axe still runs under a CSP that forbids inline scripts


def test_console_log_records_uncaught_exception(new_page: NewPage, site: str) -> None:
    page = new_page("desktop")
    console = watch_console(page)
    page.goto(f"{site}/throws")
    assert [(p.kind, p.text) for p in console.problems] == [("uncaught", "Error: boom")]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_secure_cookie_returns_over_plain_http_on_loopback(
    new_page: NewPage, site: str, host: str
) -> None:
    """Chromium counts loopback as a secure context, so pages tested over http:// on
    loopback keep a `Secure` session cookie."""
    page = new_page("desktop")
    origin = site.replace("127.0.0.1", host)
    page.goto(f"{origin}/set-cookie")
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["secure"], cookie["httpOnly"]) == ("a", True, True)
    page.goto(f"{origin}/cookie")
    assert page.text_content("body") == "a=1"


def test_missing_browser_skips_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VALUETUNE_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        browser_unavailable("no Chromium")
    monkeypatch.setenv("VALUETUNE_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="VALUETUNE_REQUIRE_BROWSER=1 but no Chromium"):
        browser_unavailable("no Chromium")
