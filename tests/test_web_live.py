"""The README's main job, for real: `valuetune serve` with the embedded defaults (SQLite,
the embedded SmolLM2-135M-Instruct) as its own process, and a new person in Chromium who
takes the survey, gets a token and chats with their personalised model.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser import NewPage, Screenshot, assert_accessible, watch_console

pytest.importorskip("torch")
httpx = pytest.importorskip("httpx")
pytest.importorskip("jinja2")

VALUETUNE = str(Path(sys.executable).with_name("valuetune"))
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_one_command_takes_a_new_person_to_a_personalised_chat(
    tmp_path: Path, new_page: NewPage, screenshot: Screenshot
) -> None:
    home, port = tmp_path / "home", _free_port()
    proc = subprocess.Popen(
        [VALUETUNE, "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "VALUETUNE_HOME": str(home)},
    )
    try:
        assert proc.stderr is not None
        said = ""
        while "open http://" not in said:  # the start-up lines, password included
            line = proc.stderr.readline()
            assert line, f"serve exited early: {said}"
            said += line
        password = re.search(r"shown only now: (\S+)", said)
        assert password, said
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300  # first start converts the embedded model
        while httpx.get(f"{url}/ready").status_code != 200:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)

        page = new_page("desktop")
        console = watch_console(page)
        page.goto(url + "/")
        page.get_by_role("link", name="Start the survey").click()
        page.get_by_label("I have read this and agree to take part.").check()
        page.get_by_role("button", name="Start the survey").click()
        while page.url.endswith("/survey/question"):
            page.get_by_role("radio").first.check()
            page.get_by_role("button", name="Next").click()
        page.get_by_role("button", name="Skip both").click()
        page.get_by_role("button", name="Skip", exact=True).click()
        assert page.url.endswith("/results")
        assert page.locator("#token").input_value().startswith("v4.local.")

        page.get_by_role("link", name="Try it in the playground").click()
        page.get_by_label("Your message").fill(
            "My brother asked to borrow a large sum of money. Should I lend it to him?"
        )
        page.get_by_role("button", name="Ask both models").click(timeout=120_000)
        page.locator("article.reply").nth(1).wait_for(timeout=120_000)
        replies = [t.strip() for t in page.locator("article.reply p.text").all_inner_texts()]
        assert len(replies) == 2 and all(replies)
        assert replies[0] != replies[1]  # the précis changes what the model says
        assert page.locator("article.reply").nth(1).get_by_text("Alignment: precis").count()
        assert_accessible(page)
        screenshot(page, "live-playground")
        console.assert_clean()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
