"""Alias resolution timing: hits and misses, interleaved in one run.

Run:  .venv/bin/python bench/alias.py [--rounds 200]

Resolves a live alias and a never-created one alternately against a real SQLite store and
reports p50/p95 wall time of each; the service pads both to its 50 ms floor, so the two
distributions should be indistinguishable.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from valuetune.store import Database
from valuetune.store.tokens import TokenStore
from valuetune.token.alias import AliasService
from valuetune.token.keys import KeyRing
from valuetune.token.tokens import TokenService
from valuetune.token.words import new_alias
from valuetune.values.personas import load_personas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="vt-bench-alias-"))
    db = Database.open(f"sqlite:///{home / 'db.sqlite3'}")
    store, ring = TokenStore(db), KeyRing.open(home)
    minted = TokenService(ring, store).mint(load_personas()[0].profile)
    service = AliasService(store, ring.alias_key(), limit=10**9)
    for _ in range(300):  # a realistic table: many other aliases
        service.create(minted.sub, "precis", '{"short":"x"}')
    hit = service.create(minted.sub, "precis", '{"short":"the shared text"}')
    timings: dict[str, list[float]] = {"hit": [], "miss": []}
    for i in range(args.rounds):
        for kind, alias in (("hit", hit), ("miss", new_alias())):
            started = time.perf_counter()
            result = service.resolve(alias, client=f"bench-{i}")
            timings[kind].append((time.perf_counter() - started) * 1000)
            assert result.found == (kind == "hit")
    print("| | p50 ms | p95 ms | max ms | n |\n|---|---:|---:|---:|---:|")
    for kind, values in timings.items():
        values.sort()
        p95 = values[int(0.95 * (len(values) - 1))]
        print(
            f"| {kind} | {statistics.median(values):.2f} | {p95:.2f} | {values[-1]:.2f} "
            f"| {len(values)} |"
        )
    db.dispose()


if __name__ == "__main__":
    main()
