"""Many people taking the web survey at once, against a real `valuetune serve`.

Run:  .venv/bin/python -u bench/web.py [--respondents 50] [--think 0] [--seed 0]
      [--database-url URL]

Starts `valuetune serve --no-embedded` (the pages, no model: the survey does not need
one) as its own process on a loopback port with a fresh data directory (SQLite unless
--database-url), then runs that many simulated respondents at once, each in its own
cookie jar: consent, every question (random answers, one in eight skipped), self-
placement, demographics, results (where the token and alias are minted). Each HTTP
request is timed (a POST and the page it redirects to are one step, as a browser shows
it). Afterwards every respondent's answers are read back from the database and compared
with what the client sent: none lost, none duplicated, none altered.

With `--think 0` (the default) everyone clicks again the moment a page arrives: the
worst case, a measure of capacity. `--think S` waits 0.5 S to 1.5 S before each answer,
closer to people reading the questions.

Reports: requests, errors, p50/p95/max page latency by kind, the whole run's wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

FIELD = re.compile(r'name="(csrf|item|stamp)" value="([^"]*)"')


def _fields(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in FIELD.findall(page)}


class Timings:
    def __init__(self) -> None:
        self.by_kind: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []

    async def step(
        self, kind: str, call: asyncio.Future[httpx.Response] | object
    ) -> httpx.Response:
        started = time.perf_counter()
        reply: httpx.Response = await call  # type: ignore[misc]
        self.by_kind[kind].append(time.perf_counter() - started)
        if reply.status_code != 200:
            self.errors.append(f"{kind}: {reply.status_code} {reply.text[:120]!r}")
        return reply


async def respondent(
    url: str, seed: int, timings: Timings, think: float = 0.0
) -> tuple[str, dict[str, int | None]]:
    """One person's survey; returns their respondent id and the answers they gave."""
    rng = random.Random(seed)
    sent: dict[str, int | None] = {}
    async with httpx.AsyncClient(base_url=url, follow_redirects=True, timeout=300) as client:
        page = (await timings.step("consent", client.get("/survey"))).text
        form = {"csrf": _fields(page)["csrf"], "consent": "yes"}
        page = (await timings.step("start", client.post("/survey/start", data=form))).text
        while 'name="item"' in page:
            if think:
                await asyncio.sleep(think * rng.uniform(0.5, 1.5))
            fields = _fields(page)
            values = re.findall(r'name="answer" value="(\d+)"', page)
            if rng.random() < 0.125:
                fields["skip"] = "1"
                sent[fields["item"]] = None
            else:
                fields["answer"] = rng.choice(values)
                sent[fields["item"]] = int(fields["answer"])
            page = (await timings.step("answer", client.post("/survey/answer", data=fields))).text
        form = {"csrf": _fields(page)["csrf"], "economic": str(rng.randint(0, 10))}
        page = (await timings.step("placement", client.post("/survey/placement", data=form))).text
        form = {"csrf": _fields(page)["csrf"], "age": rng.choice(["18-24", "35-44", ""])}
        page = (await timings.step("results", client.post("/survey/about", data=form))).text
        if "Your value token" not in page:
            timings.errors.append(f"respondent {seed}: no results page")
        data = (await timings.step("my-data", client.get("/my-data.json"))).json()
        return str(data["respondent"]), sent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(
    url: str, n: int, seed: int, think: float
) -> tuple[Timings, list[tuple[str, dict[str, int | None]]], float]:
    timings = Timings()
    started = time.perf_counter()
    people = await asyncio.gather(
        *(respondent(url, seed * 10_000 + i, timings, think) for i in range(n))
    )
    return timings, people, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--respondents", type=int, default=50)
    parser.add_argument("--think", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="vt-bench-web-"))
    env = {**os.environ, "VALUETUNE_HOME": str(home)}
    if args.database_url:
        env["VALUETUNE_DATABASE_URL"] = args.database_url
    port = _free_port()
    command = [str(Path(sys.executable).with_name("valuetune")), "serve", "--no-embedded"]
    server = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")
        timings, people, wall = asyncio.run(run(url, args.respondents, args.seed, args.think))
    finally:
        server.terminate()
        server.wait(timeout=30)

    from valuetune.settings import Settings
    from valuetune.store import Database, SurveyStore

    store = SurveyStore(
        Database.open(Settings(home=home, database_url=args.database_url).resolved_database_url())
    )
    lost = duplicated = altered = 0
    for rid, sent in people:
        stored = store.answers(rid)
        items = [a.item_id for a in stored]
        duplicated += len(items) - len(set(items))
        got = {a.item_id: a.value for a in stored}
        lost += len(set(sent) - set(got))
        altered += sum(1 for item, value in sent.items() if item in got and got[item] != value)
        if store.respondent(rid).completed_at is None:
            timings.errors.append(f"{rid[:8]} not marked complete")
    answers = sum(len(s) for _, s in people)
    requests = sum(len(v) for v in timings.by_kind.values())
    print(
        f"{args.respondents} respondents at once (think {args.think} s), {answers} answers, "
        f"{requests} page requests"
    )
    print(f"wall {wall:.1f} s; errors: {len(timings.errors)}")
    print(f"answers lost {lost}, duplicated {duplicated}, altered {altered}")
    for line in timings.errors[:5]:
        print("  ", line)
    print("| step | requests | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    everything = [t for v in timings.by_kind.values() for t in v]
    for kind, values in [*timings.by_kind.items(), ("all", everything)]:
        print(
            f"| {kind} | {len(values)} | {statistics.median(values) * 1000:.0f} | "
            f"{_percentile(values, 0.95) * 1000:.0f} | {max(values) * 1000:.0f} |"
        )


if __name__ == "__main__":
    main()
