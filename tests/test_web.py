"""The web pages through HTTP (no browser): the survey, results, my data, form safety.

The browser tests (tests/test_web_browser.py) drive the same pages in Chromium; these
check what HTTP alone can: status codes, what is stored, security headers, erasure.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jinja2")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient
from markupsafe import escape

from valuetune.server.host import ModelHost
from valuetune.token.paseto import TokenError


@pytest.fixture
def site(server_parts: Any) -> Iterator[dict[str, Any]]:
    web = server_parts.web()
    host = ModelHost({}, server_parts.tokens, server_parts.aliases)
    with TestClient(server_parts.app(host, web=web), follow_redirects=True) as client:
        yield {"client": client, "web": web, "parts": server_parts}


def field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no {name} field in the page"
    return html.unescape(found.group(1))


def credentials(results: str) -> tuple[str, str]:
    """(token, alias) as the results page shows them."""
    token = re.search(r'<textarea id="token"[^>]*>([^<]+)</textarea>', results)
    alias = re.search(r'<input id="alias" type="text" readonly value="([^"]+)"', results)
    assert token and alias, "no token or alias on the page"
    return html.unescape(token[1]), html.unescape(alias[1])


def start(client: TestClient) -> str:
    """Consent and start; returns the first question page."""
    consent = client.get("/survey")
    reply = client.post(
        "/survey/start", data={"csrf": field(consent.text, "csrf"), "consent": "yes"}
    )
    assert reply.status_code == 200 and "/survey/question" in str(reply.url)
    return reply.text


def answer_all(client: TestClient, page: str, pick: int = 0) -> tuple[str, int]:
    """Answer every question (the `pick`-th choice, every fifth skipped) until the survey
    moves on; returns the page it lands on and how many questions were shown."""
    shown = 0
    while 'name="item"' in page:
        shown += 1
        values = re.findall(r'name="answer" value="(\d+)"', page)
        form = {k: field(page, k) for k in ("csrf", "item", "stamp")}
        if shown % 5 == 0:
            form["skip"] = "1"
        else:
            form["answer"] = values[min(pick, len(values) - 1)]
        page = client.post("/survey/answer", data=form).text
        assert shown < 100, "the survey never ended"
    return page, shown


def finish(client: TestClient, page: str, placement: dict[str, str], about: dict[str, str]) -> str:
    assert "Where would you place yourself" in page
    page = client.post("/survey/placement", data={"csrf": field(page, "csrf"), **placement}).text
    assert "About you" in page
    return client.post("/survey/about", data={"csrf": field(page, "csrf"), **about}).text


def test_pages_carry_security_headers_and_work_without_a_visit(site: dict[str, Any]) -> None:
    client = site["client"]
    home = client.get("/")
    assert home.status_code == 200 and "Start the survey" in home.text
    csp = home.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert home.headers["referrer-policy"] == "no-referrer"
    assert home.headers["x-content-type-options"] == "nosniff"
    cookie = home.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert client.get("/v1/models").headers["x-frame-options"] == "DENY"  # the API too
    assert client.get("/static/style.css").status_code == 200
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "There is no such page" in missing.text
    api_miss = client.get("/v1/no-such-endpoint")  # the API's paths still answer in JSON
    assert api_miss.status_code == 404
    assert api_miss.json()["error"]["type"] == "not_found_error"
    # results, placement, my data without a survey: sent to the start, no error
    assert "/survey" in str(client.get("/results").url)
    assert "/survey" in str(client.get("/my-data.json").url)


def test_a_survey_from_consent_to_token_stores_each_answer_once(site: dict[str, Any]) -> None:
    client, web = site["client"], site["web"]
    consent = client.get("/survey")
    refused = client.post("/survey/start", data={"csrf": field(consent.text, "csrf")})
    assert refused.status_code == 400 and "tick the box" in refused.text
    assert web.survey.respondents() == []  # no consent, nothing stored

    page = start(client)
    rid = web.survey.respondents()[0].id
    # a stale page posted again (back button) is not a second answer
    first = {k: field(page, k) for k in ("csrf", "item", "stamp")}
    client.post("/survey/answer", data={**first, "answer": "1"})
    again = client.post("/survey/answer", data={**first, "answer": "3"})
    assert again.status_code == 200
    stored = web.survey.answers(rid)
    assert [(a.item_id, a.value) for a in stored] == [(first["item"], 1)]
    # no answer and no skip: the question again, with a message
    page = again.text
    blank = client.post(
        "/survey/answer", data={k: field(page, k) for k in ("csrf", "item", "stamp")}
    )
    assert blank.status_code == 400 and "choose one of the answers" in blank.text

    page, shown = answer_all(client, blank.text, pick=3)
    timed = web.survey.timed_answers(rid)
    assert len(timed) == shown + 1
    assert len({a.item_id for a in timed}) == len(timed)  # each item once
    assert any(a.value is None for a in timed)  # skips stored as skips
    assert all(a.elapsed_ms is not None and a.elapsed_ms >= 0 for a in timed)  # server-timed
    assert web.survey.respondent(rid).completed_at is not None

    results = finish(
        client,
        page,
        {"economic": "3", "social": "prefer_not"},
        {"age": "25-34", "region": "europe", "religion": "prefer_not"},
    )
    assert web.demographics.placement(rid) == (3, None)
    assert web.demographics.demographics(rid) == {
        "age": "25-34",
        "gender": None,
        "region": "europe",
        "education": None,
        "religion": None,
    }
    assert "Your value profile" in results
    token, alias = credentials(results)
    verified = web.tokens.verify(token)
    assert verified.profile().distance(web.survey.profile(rid)) < 0.1  # the token carries it
    assert web.aliases.resolve(alias, "test").found
    assert "<svg" in results and 'class="qr"' in results
    assert f"smollm2@{alias}" in results
    # the same token on a second visit (kept in the cookie, not minted again)
    again = client.get("/results")
    assert token in again.text and again.headers["cache-control"] == "no-store"


def test_cookies_are_secure_over_https(server_parts: Any) -> None:
    web = server_parts.web()
    password = web.admin.create_first()
    host = ModelHost({}, server_parts.tokens, server_parts.aliases)
    app = server_parts.app(host, web=web)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        assert "secure" in client.get("/").headers["set-cookie"].lower()
        form = client.get("/admin/login")
        data = {"csrf": field(form.text, "csrf"), "username": "admin", "password": password}
        signed_in = client.post("/admin/login", data=data)
        admin = [c for c in signed_in.headers.get_list("set-cookie") if c.startswith("vt_admin")]
        assert admin and "secure" in admin[0].lower() and "samesite=strict" in admin[0].lower()
    with TestClient(app) as client:  # plain http on loopback: no Secure flag to lose
        assert "secure" not in client.get("/").headers["set-cookie"].lower()


def test_forms_without_a_valid_csrf_token_are_refused_and_change_nothing(
    site: dict[str, Any],
) -> None:
    client, web = site["client"], site["web"]
    client.get("/survey")
    for path, data in (
        ("/survey/start", {"consent": "yes"}),
        ("/survey/start", {"consent": "yes", "csrf": "forged"}),
        ("/my-data/delete", {}),
    ):
        reply = client.post(path, data=data)
        assert reply.status_code == 403 and "expired" in reply.text
    assert web.survey.respondents() == []
    # a cookie signed by someone else is a new visitor, not theirs
    client.cookies.set("vt_visit", "eyJ2IjoiYSIsInIiOiJiIn0.AAAA")
    assert "Start the survey" in client.get("/").text


def test_my_data_downloads_then_deletion_erases_it_everywhere(
    site: dict[str, Any], tmp_path: Path
) -> None:
    client, web = site["client"], site["web"]
    page, _ = answer_all(client, start(client), pick=1)
    rid = web.survey.respondents()[0].id
    results = finish(client, page, {"economic": "8", "social": "2"}, {"education": "postgraduate"})
    token, _ = credentials(results)
    profile_json = web.survey.profile(rid).to_json()

    download = client.get("/my-data.json")
    assert download.headers["content-disposition"].startswith("attachment")
    doc = download.json()
    assert doc["respondent"] == rid
    assert len(doc["answers"]) == len(web.survey.answers(rid))
    assert doc["self_placement"] == {"economic": 8, "social": 2}
    assert doc["demographics"]["education"] == "postgraduate"
    assert doc["profile"] == json.loads(profile_json)

    confirm = client.get("/my-data/delete")
    deleted = client.post("/my-data/delete", data={"csrf": field(confirm.text, "csrf")})
    assert deleted.status_code == 200 and "Your data is deleted" in deleted.text
    assert web.survey.respondents() == []
    assert web.demographics.placement(rid) is None
    with pytest.raises(TokenError):
        web.tokens.verify(token)
    # nothing left on disk: not in the database file, not in its write-ahead log
    sqlite = Path(site["parts"].database.url.database)
    for path in (sqlite, sqlite.with_name(sqlite.name + "-wal")):
        if path.exists():
            data = path.read_bytes()
            assert rid.encode() not in data, f"respondent id left in {path.name}"
            assert profile_json[:60].encode() not in data, f"profile left in {path.name}"
            assert b"postgraduate" not in data, f"demographics left in {path.name}"
    assert "/survey" in str(client.get("/results").url)  # the browser holds nothing now


def test_retake_erases_the_previous_answers_first(site: dict[str, Any]) -> None:
    client, web = site["client"], site["web"]
    page, _ = answer_all(client, start(client))
    first = web.survey.respondents()[0].id
    results = finish(client, page, {}, {})
    client.post("/survey/retake", data={"csrf": field(results, "csrf")})
    assert web.survey.respondents() == []
    start(client)
    assert [r.id for r in web.survey.respondents()] != [first]


def test_hostile_demographic_or_placement_values_are_refused_not_stored(
    site: dict[str, Any],
) -> None:
    client, web = site["client"], site["web"]
    page, _ = answer_all(client, start(client))
    rid = web.survey.respondents()[0].id
    bad = client.post("/survey/placement", data={"csrf": field(page, "csrf"), "economic": "11"})
    assert bad.status_code == 400 and "0 to 10" in bad.text
    assert web.demographics.placement(rid) is None
    page = client.post("/survey/placement", data={"csrf": field(page, "csrf")}).text
    hostile = "<script>alert(1)</script>"
    bad = client.post("/survey/about", data={"csrf": field(page, "csrf"), "age": hostile})
    assert bad.status_code == 400
    assert hostile not in bad.text and html.escape(hostile) in bad.text  # shown escaped
    assert web.demographics.demographics(rid) is None


@pytest.fixture
def tiny_site(
    server_parts: Any, embedded_tokenizer: Any, make_tiny_llama: Any
) -> Iterator[dict[str, Any]]:
    pytest.importorskip("torch")
    from valuetune.llm.local import TransformersBackend

    tiny = TransformersBackend(make_tiny_llama(2, seed=5), embedded_tokenizer, model_id="tiny")
    host = ModelHost({"tiny": lambda: tiny}, server_parts.tokens, server_parts.aliases)
    web = server_parts.web()
    with TestClient(server_parts.app(host, web=web), follow_redirects=True) as client:
        yield {"client": client, "web": web, "tiny": tiny}


def test_the_playground_answers_with_the_base_and_the_aligned_model(
    tiny_site: dict[str, Any],
) -> None:
    from valuetune.llm.base import GenerationOptions, Message
    from valuetune.token.precis import write_precis
    from valuetune.tune.precis import PrecisBackend

    client, web, tiny = tiny_site["client"], tiny_site["web"], tiny_site["tiny"]
    empty = client.get("/playground")
    assert "take the survey" in empty.text
    hostile = "<script>alert('x')</script> <svg onload=alert(1)>"
    no_token = client.post("/playground", data={"csrf": field(empty.text, "csrf"), "prompt": "hi"})
    assert no_token.status_code == 400 and "Take the survey first" in no_token.text

    page, _ = answer_all(client, start(client), pick=4)
    finish(client, page, {}, {})
    rid = web.survey.respondents()[0].id
    form = client.get("/playground")
    reply = client.post("/playground", data={"csrf": field(form.text, "csrf"), "prompt": hostile})
    assert reply.status_code == 200
    assert hostile not in reply.text and str(escape(hostile)) in reply.text
    receipts = re.findall(r"Alignment: <strong>(\w+)</strong>", reply.text)
    assert receipts == ["none", "precis"]
    found = re.findall(r'<p class="text">(.*?)</p>', reply.text, re.S)
    texts = [html.unescape(t).strip() for t in found]
    options = GenerationOptions(max_new_tokens=96, temperature=0.0)
    prompt = [Message("user", hostile)]
    precis = write_precis(web.survey.profile(rid))
    assert texts[0] == tiny.generate(prompt, options).text.strip()
    assert texts[1] == PrecisBackend(tiny, precis).generate(prompt, options).text.strip()

    too_long = client.post(
        "/playground", data={"csrf": field(form.text, "csrf"), "prompt": "x" * 2001}
    )
    assert too_long.status_code == 400


def _sign_in(client: TestClient, password: str, code: str | None = None) -> TestClient:
    form = client.get("/admin/login")
    data = {"csrf": field(form.text, "csrf"), "username": "admin", "password": password}
    if code is not None:
        data["code"] = code
    reply = client.post("/admin/login", data=data)
    assert reply.status_code == 200 and "Dashboard" in reply.text, reply.text[:300]
    return client


def _respondent(server_parts: Any, web: Any, host: ModelHost, pick: int) -> str:
    """One person's whole survey, in their own browser session."""
    with TestClient(server_parts.app(host, web=web), follow_redirects=True) as client:
        page, _ = answer_all(client, start(client), pick=pick)
        finish(client, page, {"economic": str(pick)}, {"age": "25-34"})
        return str(client.get("/my-data.json").json()["respondent"])


def test_admin_sign_in_is_hashed_limited_and_ends_on_sign_out(
    server_parts: Any,
) -> None:
    from valuetune.store.admin import totp_code

    web = server_parts.web()
    password = web.admin.create_first()
    assert password and web.admin.create_first() is None  # once only, no default
    host = ModelHost({}, server_parts.tokens, server_parts.aliases)
    with TestClient(server_parts.app(host, web=web), follow_redirects=True) as client:
        assert client.get("/admin").url.path == "/admin/login"
        assert client.get("/admin/stats.json").status_code == 401
        assert client.get("/admin/export.csv").url.path == "/admin/login"
        form = client.get("/admin/login")
        for guess in ("admin", "password123456", password + "x"):
            bad = client.post(
                "/admin/login",
                data={"csrf": field(form.text, "csrf"), "username": "admin", "password": guess},
            )
            assert bad.status_code == 401 and "Wrong name, password or code" in bad.text
        unknown = client.post(
            "/admin/login",
            data={"csrf": field(form.text, "csrf"), "username": "root", "password": password},
        )
        assert unknown.status_code == 401  # the same answer for an unknown name
        stored = web.admin.db.engine.connect().exec_driver_sql(
            "SELECT password_hash FROM admin_users"
        )
        assert next(iter(stored))[0].startswith("$argon2id$")

        _sign_in(client, password)
        cookie = client.cookies.get("vt_admin", path="/admin")
        assert cookie and web.admin.session(cookie) is not None
        assert client.get("/admin/stats.json").json()["respondents"] == 0
        dashboard = client.get("/admin")
        signed = dashboard.headers.get_list("set-cookie")
        assert not any("vt_admin" in c for c in signed)  # the session cookie is not re-sent
        # sign-out needs the session's CSRF token, then the cookie is worthless
        assert client.post("/admin/logout", data={"csrf": "forged"}).status_code == 403
        client.post("/admin/logout", data={"csrf": field(dashboard.text, "csrf")})
        assert web.admin.session(cookie) is None

        # TOTP: the password alone is no longer enough
        secret = web.admin.set_totp("admin", True)
        form = client.get("/admin/login")
        no_code = client.post(
            "/admin/login",
            data={"csrf": field(form.text, "csrf"), "username": "admin", "password": password},
        )
        assert no_code.status_code == 401
        import time

        _sign_in(client, password, totp_code(secret, time.time()))

    # 10 attempts per client per 5 minutes
    with TestClient(server_parts.app(host, web=web), follow_redirects=True) as client:
        form = client.get("/admin/login")
        codes = [
            client.post(
                "/admin/login",
                data={"csrf": field(form.text, "csrf"), "username": "admin", "password": "x"},
            ).status_code
            for _ in range(12)
        ]
        assert codes.count(429) >= 1 and 429 in codes[-2:]


def test_totp_matches_the_rfc_6238_test_vector() -> None:
    import base64

    from valuetune.store.admin import totp_code, totp_matches

    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp_code(secret, 59) == "287082"  # RFC 6238, SHA-1, T=59 (94287082, 6 digits)
    assert totp_code(secret, 1111111109) == "081804"
    assert totp_matches(secret, "081804", 1111111109 + 29)
    assert not totp_matches(secret, "081804", 1111111109 + 95)


def test_the_dashboard_counts_flags_excludes_and_exports_de_identified_rows(
    server_parts: Any,
) -> None:
    import io

    import pyarrow.parquet as pq

    web = server_parts.web()
    password = web.admin.create_first()
    host = ModelHost({}, server_parts.tokens, server_parts.aliases)
    people = [_respondent(server_parts, web, host, pick) for pick in (0, 2, 4)]
    with TestClient(server_parts.app(host, web=web), follow_redirects=True) as client:
        start(client)  # a fourth who never finishes
        _sign_in(client, password)
        figures = client.get("/admin/stats.json").json()
        assert figures == {
            "respondents": 4,
            "completed": 3,
            "completion_rate": "75%",
            "median_minutes": figures["median_minutes"],
            "excluded": 0,
        }
        board = client.get("/admin")
        assert board.headers["cache-control"] == "no-store"
        assert "speeder" in board.text  # a test client answers far faster than a person
        coverage = board.text.split("Coverage by group")[1].split("Quality flags")[0]
        shown = re.findall(r"<td>[^<]*</td><td>([^<]*)</td>", coverage)
        assert shown and all(n == "fewer than 11" for n in shown)  # 3 people: nothing shown
        assert 'aria-label="Map of 3 respondents' in board.text

        csv_rows = client.get("/admin/export.csv").text.splitlines()
        assert len(csv_rows) == 4 and csv_rows[0].startswith("pseudonym,started_on,minutes")
        lines = [json.loads(x) for x in client.get("/admin/export.jsonl").text.splitlines()]
        table = pq.read_table(io.BytesIO(client.get("/admin/export.parquet").content))
        assert len(lines) == table.num_rows == 3
        assert sorted(r["placement_economic"] for r in lines) == [0, 2, 4]
        for export in (client.get("/admin/export.csv").text, json.dumps(lines)):
            assert not any(rid in export for rid in people)  # no respondent ids
            assert "25-34" not in export  # no demographics
        assert {r["pseudonym"] for r in lines}.isdisjoint(
            json.loads(x)["pseudonym"] for x in client.get("/admin/export.jsonl").text.splitlines()
        )  # a fresh pseudonym per export: files cannot be linked

        # exclusion needs the session's CSRF token, then leaves every figure and export
        target = f"/admin/respondents/{people[0]}/exclusion"
        assert client.post(target, data={"action": "exclude", "csrf": "x"}).status_code == 403
        client.post(target, data={"action": "exclude", "csrf": field(board.text, "csrf")})
        assert web.survey.respondent(people[0]).excluded
        figures = client.get("/admin/stats.json").json()
        assert (figures["respondents"], figures["completed"], figures["excluded"]) == (3, 2, 1)
        assert len(client.get("/admin/export.jsonl").text.splitlines()) == 2
        client.post(target, data={"action": "include", "csrf": field(board.text, "csrf")})
        assert client.get("/admin/stats.json").json()["excluded"] == 0
        assert client.get("/admin/export.xml").status_code == 404


def test_answering_more_questions_narrows_the_estimate_and_replaces_the_token(
    site: dict[str, Any],
) -> None:
    client, web = site["client"], site["web"]
    page, first_round = answer_all(client, start(client), pick=3)
    results = finish(client, page, {}, {})
    rid = web.survey.respondents()[0].id
    before = web.survey.profile(rid)
    old_token, old_alias = credentials(results)

    page = client.post("/survey/more", data={"csrf": field(results, "csrf")}).text
    assert 'name="item"' in page  # more questions
    results, second_round = answer_all(client, page, pick=3)
    assert "Your value profile" in results  # straight back to the results
    after = web.survey.profile(rid)
    assert len(web.survey.answers(rid)) == first_round + second_round
    assert sum(after.values_se) < sum(before.values_se)  # narrower intervals
    token, alias = credentials(results)
    assert token != old_token and alias != old_alias
    assert web.tokens.verify(token).profile().distance(after) < 0.1
    with pytest.raises(TokenError):
        web.tokens.verify(old_token)
    assert not web.aliases.resolve(old_alias, "test").found
