"""Real-browser fixtures: Debian's Chromium driven by Playwright, checked by axe-core.

A pytest plugin, loaded by `pytest_plugins = ["browser"]` in tests/conftest.py (tests/ is
not a package: pytest puts it on sys.path, so page tests import the helpers with
`from browser import ...`). Without /usr/bin/chromium or the `playwright` package the
browser tests skip, unless VALUETUNE_REQUIRE_BROWSER=1 (CI), where that is a failure.

Playwright never downloads a browser here: it drives the system Chromium. axe-core's
JavaScript comes from the `axe-playwright-python` wheel, so nothing is fetched at test time.

A page test::

    def test_survey(page: Page, console: ConsoleLog, screenshot: Screenshot) -> None:
        page.goto(url)  # `page` runs the test at each viewport (phone, desktop)
        assert_accessible(page)
        screenshot(page, "survey")
        console.assert_clean()
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page

CHROMIUM = Path("/usr/bin/chromium")
# Quiet on a closed network: no background connections (updates, sync, QUIC probes) to be
# refused. Playwright passes most of these itself; they are named so as not to rely on it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A test that waits longer than this for the page is broken, not slow.
PAGE_TIMEOUT_MS = 10_000
WCAG2_A_AA = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")
ARTIFACTS = "test-artifacts"


@dataclass(frozen=True)
class Viewport:
    """A screen a page is tested on: CSS pixels, pixel density and input kind."""

    name: str
    width: int
    height: int
    device_scale_factor: float = 1
    is_mobile: bool = False
    has_touch: bool = False

    def context_options(self) -> dict[str, Any]:
        """Keyword arguments for `Browser.new_context`."""
        return {
            "viewport": {"width": self.width, "height": self.height},
            "device_scale_factor": self.device_scale_factor,
            "is_mobile": self.is_mobile,
            "has_touch": self.has_touch,
        }


PHONE = Viewport("phone", 390, 844, device_scale_factor=2, is_mobile=True, has_touch=True)
DESKTOP = Viewport("desktop", 1280, 800)
VIEWPORTS = {viewport.name: viewport for viewport in (PHONE, DESKTOP)}
NewPage = Callable[[Viewport | str], "Page"]


def browser_unavailable(reason: str) -> NoReturn:
    """Skip for want of a browser; fail instead where CI demands one."""
    if os.environ.get("VALUETUNE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"VALUETUNE_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, launched once per test module.

    Module scope, not session: while Playwright's sync API is running it marks its
    asyncio loop as running in the main thread, so a session-wide browser would break
    `asyncio.run` in every test that comes after the first browser test.
    """
    if not CHROMIUM.exists():
        browser_unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("the playwright package is not installed (pip install playwright)")
    if importlib.util.find_spec("axe_playwright_python") is None:
        browser_unavailable("axe-core is missing (pip install axe-playwright-python)")
    with sync_playwright() as playwright:
        # Playwright gives each launch a fresh temporary profile (user-data dir).
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[NewPage]:
    """Open a page in a fresh browser context at a viewport (a `Viewport` or its name).

    Each page has its own context (cookies, storage), closed after the test.
    """
    contexts: list[BrowserContext] = []

    def open_page(viewport: Viewport | str = DESKTOP) -> Page:
        if isinstance(viewport, str):
            if viewport not in VIEWPORTS:
                raise ValueError(f"unknown viewport {viewport!r}: use one of {sorted(VIEWPORTS)}")
            viewport = VIEWPORTS[viewport]
        context = browser.new_context(**viewport.context_options())
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture(params=list(VIEWPORTS.values()), ids=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> Viewport:
    """Each viewport in turn: a test that takes it (or `page`) runs once per viewport."""
    chosen: Viewport = request.param
    return chosen


@pytest.fixture
def page(new_page: NewPage, viewport: Viewport) -> Page:
    """A blank page, once at each viewport."""
    return new_page(viewport)


@dataclass(frozen=True)
class PageProblem:
    """Something a page reported that a healthy page does not: a console error (CSP
    violations and failed loads arrive as these) or an uncaught exception."""

    kind: str  # "console.error" or "uncaught"
    text: str
    url: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.url or '?'}: {self.text}"


@dataclass
class ConsoleLog:
    """The problems one page has reported since `watch_console` attached to it."""

    problems: list[PageProblem] = field(default_factory=list)

    @property
    def csp_violations(self) -> list[PageProblem]:
        """Chromium reports each blocked script, style or load as a console error."""
        return [p for p in self.problems if "Content Security Policy" in p.text]

    def assert_clean(self) -> None:
        """Fail, listing every problem, if the page reported any."""
        if self.problems:
            listed = "\n".join(f"  {problem}" for problem in self.problems)
            raise AssertionError(f"the page reported {len(self.problems)} problem(s):\n{listed}")


def watch_console(page: Page) -> ConsoleLog:
    """Record a page's console errors and uncaught exceptions from now on.

    Attach before `page.goto`: what the page logs while loading is not replayed. Chromium
    asks for /favicon.ico after load unless the page links an icon; a 404 there is logged.
    """
    log = ConsoleLog()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            log.problems.append(PageProblem("console.error", message.text, message.location["url"]))

    def on_page_error(error: Error) -> None:
        log.problems.append(PageProblem("uncaught", f"{error.name}: {error.message}", page.url))

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    return log


@pytest.fixture
def console(page: Page) -> ConsoleLog:
    """The console log of the `page` fixture, watched from before its first navigation."""
    return watch_console(page)


@dataclass(frozen=True)
class AxeNode:
    """One element that fails an axe rule."""

    target: str  # CSS selector; " >> " crosses into iframes and shadow roots
    html: str
    summary: str  # axe's "Fix any of the following: ..." text


@dataclass(frozen=True)
class AxeViolation:
    """One axe-core rule that the page fails, with the elements that fail it."""

    id: str
    impact: str | None
    help: str
    help_url: str
    nodes: tuple[AxeNode, ...]

    def __str__(self) -> str:
        lines = [f"{self.id} [{self.impact}] {self.help} ({self.help_url})"]
        for node in self.nodes:
            lines.append(f"    {node.target}: {node.html}")
            lines.extend(f"      {line}" for line in node.summary.splitlines() if line.strip())
        return "\n".join(lines)


def _selector(target: Any) -> str:
    parts = target if isinstance(target, list) else [target]
    return " >> ".join(" >> ".join(p) if isinstance(p, list) else str(p) for p in parts)


def axe_violations(
    page: Page, *, tags: Sequence[str] = WCAG2_A_AA, rules: Sequence[str] | None = None
) -> list[AxeViolation]:
    """Run axe-core in the page (and its frames) and return the rules it fails.

    `rules` runs only those rule ids; otherwise every rule tagged with one of `tags`
    (WCAG 2.0, 2.1 and 2.2, levels A and AA). axe is injected with `evaluate`, which the
    page's Content-Security-Policy does not govern, so strict-CSP pages can be checked.
    """
    source = resources.files("axe_playwright_python").joinpath("axe.min.js").read_text("utf-8")
    for frame in page.frames:  # axe.run asks each frame's own copy of axe for its results
        if not frame.evaluate("() => typeof window.axe === 'object'"):
            frame.evaluate(source)
    if rules:
        run_only = {"type": "rule", "values": list(rules)}
    else:
        run_only = {"type": "tag", "values": list(tags)}
    results = page.evaluate(
        "options => axe.run(document, options)",
        {"runOnly": run_only, "resultTypes": ["violations"]},
    )
    return [
        AxeViolation(
            id=violation["id"],
            impact=violation["impact"],
            help=violation["help"],
            help_url=violation["helpUrl"],
            nodes=tuple(
                AxeNode(_selector(node["target"]), node["html"], node.get("failureSummary") or "")
                for node in violation["nodes"]
            ),
        )
        for violation in results["violations"]
    ]


def assert_accessible(
    page: Page, *, tags: Sequence[str] = WCAG2_A_AA, rules: Sequence[str] | None = None
) -> None:
    """Fail, with each violation and its elements spelled out, unless axe finds none."""
    violations = axe_violations(page, tags=tags, rules=rules)
    if violations:
        listed = "\n".join(f"- {violation}" for violation in violations)
        raise AssertionError(
            f"axe-core found {len(violations)} accessibility violation(s) on {page.url}:\n{listed}"
        )


Screenshot = Callable[["Page", str], Path]
_SCREENSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@pytest.fixture
def screenshot(pytestconfig: pytest.Config) -> Screenshot:
    """`screenshot(page, name)` saves a full-page PNG as test-artifacts/screenshots/NAME.png
    at the repository root and returns its path (CI keeps the folder for people to look at)."""
    folder = pytestconfig.rootpath / ARTIFACTS / "screenshots"

    def take(page: Page, name: str) -> Path:
        if not _SCREENSHOT_NAME.fullmatch(name):
            raise ValueError(f"screenshot name {name!r}: use letters, digits, '.', '_' and '-'")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@contextmanager
def serve_asgi(app: Any, *, startup_timeout: float = 10) -> Iterator[str]:
    """Serve an ASGI app (FastAPI, Starlette) with uvicorn on a free loopback port, in a
    thread; yields its base URL, e.g. "http://127.0.0.1:41234".

    The socket is bound before uvicorn starts, so there is no race for the port.
    """
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="serve-asgi", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn stopped during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start within {startup_timeout} s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
