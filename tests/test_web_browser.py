"""The web platform in a real browser (Debian's Chromium via Playwright), at a phone and
a desktop viewport: a new person takes the survey end to end, gets a token and alias,
chats in the playground, downloads and deletes their data; the administrator signs in
and sees them counted. Every main page passes axe-core's WCAG 2 A/AA checks with no
console error or CSP violation, and screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from browser import (
    NewPage,
    Screenshot,
    Viewport,
    assert_accessible,
    serve_asgi,
    watch_console,
)

pytest.importorskip("jinja2")
pytest.importorskip("torch")

from valuetune.server.host import ModelHost

HOSTILE = (
    '<script>document.title="owned"</script><svg onload="alert(1)"><img src=x onerror=alert(2)>'
)


@pytest.fixture
def site(
    server_parts: Any, embedded_tokenizer: Any, make_tiny_llama: Any
) -> Iterator[dict[str, Any]]:
    from valuetune.llm.local import TransformersBackend

    tiny = TransformersBackend(make_tiny_llama(2, seed=5), embedded_tokenizer, model_id="tiny")
    host = ModelHost({"tiny": lambda: tiny}, server_parts.tokens, server_parts.aliases)
    web = server_parts.web()
    password = web.admin.create_first()
    with serve_asgi(server_parts.app(host, web=web)) as url:
        yield {"url": url, "web": web, "password": password}


def _answer_questions(page: Any, url: str) -> int:
    """Answer until the survey moves on: mostly by clicking, one by keyboard, some skipped."""
    shown = 0
    while page.url.endswith("/survey/question"):
        shown += 1
        radios = page.get_by_role("radio")
        if shown == 2:  # keyboard only: focus the first answer, move with arrows, Enter
            radios.first.focus()
            page.keyboard.press("ArrowDown")
            with page.expect_navigation():
                page.keyboard.press("Enter")
        elif shown % 6 == 0:
            page.get_by_role("button", name="Skip this question").click()
        else:
            radios.nth(min(shown % 3, radios.count() - 1)).check()
            page.get_by_role("button", name="Next").click()
        page.wait_for_load_state()
        assert shown < 100
    return shown


def test_a_new_person_goes_from_survey_to_token_to_chat_and_can_delete_it_all(
    site: dict[str, Any], new_page: NewPage, viewport: Viewport, screenshot: Screenshot
) -> None:
    url, web, vp = site["url"], site["web"], viewport.name
    page = new_page(viewport)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    console = watch_console(page)

    page.goto(url + "/")
    assert_accessible(page)
    screenshot(page, f"home-{vp}")
    page.get_by_role("link", name="Start the survey").click()
    assert_accessible(page)
    screenshot(page, f"consent-{vp}")
    page.get_by_label("I have read this and agree to take part.").check()
    page.get_by_role("button", name="Start the survey").click()

    assert page.url.endswith("/survey/question")
    assert_accessible(page)
    screenshot(page, f"question-{vp}")
    assert "Question 1 of about" in page.content()
    shown = _answer_questions(page, url)
    rid = web.survey.respondents()[0].id
    assert len(web.survey.answers(rid)) == shown  # every answer stored, once

    assert page.url.endswith("/survey/placement")
    assert_accessible(page)
    screenshot(page, f"placement-{vp}")
    page.locator('input[name="economic"][value="4"]').check()
    page.get_by_role("button", name="Next").click()
    assert_accessible(page)
    screenshot(page, f"about-{vp}")
    page.get_by_label("Your age").select_option("35-44")
    page.get_by_label("Your religion, if any").select_option(label="Prefer not to say")
    page.get_by_role("button", name="See my results").click()

    assert page.url.endswith("/results")
    assert_accessible(page)
    screenshot(page, f"results-{vp}")
    token = page.locator("#token").input_value()
    alias = page.locator("#alias").input_value()
    assert token.startswith("v4.local.") and web.tokens.verify(token)
    assert re.fullmatch(r"[a-z]+(-[a-z]+){3}", alias)
    assert page.locator("svg.qr").is_visible()
    assert page.get_by_role("img", name=re.compile(r"^Care: ")).count() == 1
    page.get_by_role("button", name="Copy alias").click()
    assert page.evaluate("navigator.clipboard.readText()") == alias
    assert web.demographics.demographics(rid)["age"] == "35-44"

    page.get_by_role("link", name="Try it in the playground").click()
    page.get_by_label("Your message").fill(HOSTILE)
    page.get_by_role("button", name="Ask both models").click()
    replies = page.locator("article.reply")
    assert replies.count() == 2
    assert replies.nth(0).get_by_text("Alignment: none").count() == 1
    assert replies.nth(1).get_by_text("Alignment: precis").count() == 1
    assert page.get_by_label("Your message").input_value() == HOSTILE  # shown as text
    assert page.title() != "owned"
    assert page.locator("main script, main svg[onload], main img").count() == 0
    assert_accessible(page)
    screenshot(page, f"playground-{vp}")

    with page.expect_download() as download:
        page.goto(url + "/results")
        page.get_by_role("link", name="Download my data (JSON)").click()
    doc = json.loads(download.value.path().read_text())
    assert doc["respondent"] == rid and len(doc["answers"]) == shown
    assert doc["self_placement"] == {"economic": 4, "social": None}

    admin = new_page(viewport)
    admin_console = watch_console(admin)
    admin.goto(url + "/admin")
    assert admin.url.endswith("/admin/login")
    assert_accessible(admin)
    admin.get_by_label("Password").fill("wrong password!")
    admin.get_by_role("button", name="Sign in").click()
    assert "Wrong name, password or code" in admin.content()
    assert [p.text for p in admin_console.problems] == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]  # the refused sign-in, and nothing else
    admin_console.problems.clear()
    admin.get_by_label("Password").fill(site["password"])
    admin.get_by_role("button", name="Sign in").click()
    assert admin.url.endswith("/admin")
    assert admin.locator('[data-live="completed"]').inner_text() == "1"
    assert_accessible(admin)
    screenshot(admin, f"admin-{vp}")

    page.get_by_role("link", name="Delete my data").first.click()
    assert_accessible(page)
    page.get_by_role("button", name="Delete everything now").click()
    assert "Your data is deleted" in page.content()
    assert web.survey.respondents() == []
    # the dashboard's live figures follow without a reload
    from playwright.sync_api import expect

    expect(admin.locator('[data-live="completed"]')).to_have_text("0", timeout=15_000)
    console.assert_clean()
    admin_console.assert_clean()


def test_without_javascript_the_survey_still_works_and_long_text_stays_on_screen(
    site: dict[str, Any], browser: Any, screenshot: Screenshot
) -> None:
    """Every step is a plain form; the copy buttons (JavaScript) stay hidden, the token is
    selectable text. A very long unbroken message wraps instead of widening the page."""
    from browser import PHONE

    context = browser.new_context(**PHONE.context_options(), java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site["url"] + "/survey")
        page.get_by_label("I have read this and agree to take part.").check()
        page.get_by_role("button", name="Start the survey").click()
        shown = _answer_questions(page, site["url"])
        page.get_by_role("button", name="Skip both").click()
        page.get_by_role("button", name="Skip", exact=True).click()
        assert page.url.endswith("/results")
        assert page.locator("#token").input_value().startswith("v4.local.")
        assert page.get_by_role("button", name="Copy token").count() == 0  # hidden
        rid = site["web"].survey.respondents()[0].id
        assert len(site["web"].survey.answers(rid)) == shown

        page.goto(site["url"] + "/playground")
        long = "W" * 1990
        page.get_by_label("Your message").fill(long)
        page.get_by_role("button", name="Ask both models").click()
        assert page.locator("article.reply").count() == 2
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page scrolls sideways: {width}"
        screenshot(page, "playground-long-text-phone-no-js")
    finally:
        context.close()


def _take_survey_over_http(url: str, pick: int) -> None:
    """One respondent through the real server without a browser (quicker for numbers)."""
    import html as markup

    import httpx

    fields = re.compile(r'name="(csrf|item|stamp)" value="([^"]*)"')
    with httpx.Client(base_url=url, follow_redirects=True, timeout=60) as client:
        page = client.get("/survey").text
        token = dict(fields.findall(page))["csrf"]
        page = client.post("/survey/start", data={"csrf": token, "consent": "yes"}).text
        while 'name="item"' in page:
            form = {k: markup.unescape(v) for k, v in fields.findall(page)}
            values = re.findall(r'name="answer" value="(\d+)"', page)
            form["answer"] = values[(pick + len(form["item"])) % len(values)]
            page = client.post("/survey/answer", data=form).text
        page = client.post("/survey/placement", data={"csrf": token}).text
        client.post("/survey/about", data={"csrf": token, "age": "25-34"})


def test_the_dashboard_with_a_cohort_is_accessible_and_exclusion_updates_it(
    site: dict[str, Any], new_page: NewPage, screenshot: Screenshot
) -> None:
    for pick in range(6):
        _take_survey_over_http(site["url"], pick)
    admin = new_page("desktop")
    console = watch_console(admin)
    admin.goto(site["url"] + "/admin/login")
    admin.get_by_label("Password").fill(site["password"])
    admin.get_by_role("button", name="Sign in").click()
    assert admin.locator('[data-live="completed"]').inner_text() == "6"
    assert admin.get_by_role("img", name=re.compile(r"^Map of 6 respondents")).count() == 1
    assert admin.get_by_role("table", name="Groups of respondents").count() == 1
    assert_accessible(admin)
    screenshot(admin, "admin-cohort-desktop")
    admin.get_by_role("button", name=re.compile(r"^Exclude")).first.click()
    assert admin.locator('[data-live="excluded"]').inner_text() == "1"
    assert admin.locator('[data-live="completed"]').inner_text() == "5"
    with admin.expect_download() as download:
        admin.get_by_role("link", name="CSV").click()
    rows = download.value.path().read_text().splitlines()
    assert len(rows) == 1 + 5  # a header and the five included respondents
    console.assert_clean()
