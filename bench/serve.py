"""Serving throughput and latency, and what a token costs, on the embedded model.

Run:  .venv/bin/python -u bench/serve.py [--clients 1 4 16] [--requests 2] [--max-tokens 48]
      [--home DIR] [--cold-adapters 8] [--trainable-layers 16]

A real `valuetune serve` app (uvicorn on a loopback port, in this process) serves the
embedded model with a catalog holding personal adapters of the production shape (the
`dpo` defaults: LoRA rank 16 on q/k/v/o/gate/up/down of the top 16 layers; random
weights — speed does not depend on what an adapter learned). Clients send chat
completions over HTTP; every mode asks for the same number of tokens (`max_tokens`,
no stop string) and the holders' tokens carry no boundaries, so all modes read the same
prompt and only the alignment machinery differs:

- `base`: no token, the plain base model;
- `adapter`: every request carries the same token, whose adapter stays merged (warm);
- `mixed`: requests alternate between two tokens with different adapters (a switch,
  restore + merge, before nearly every request).

For each number of concurrent clients, the modes run interleaved in rounds (base,
adapter, mixed, base, ...) so that machine noise hits them alike; reported per mode:
completion tokens/s over the whole round, request latency p50/p95. The overhead is the
adapter mode's time per completion token over the base mode's, from the same rounds.
Then the cold path, as a server meets it: the start-up thread copies the base weights the
adapters on disk touch (once, in the background; timed on its own), then each adapter
never seen before is read, checked and merged (what the first request of a holder
pays), p50 and max over `--cold-adapters`.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MODES = ("base", "adapter", "mixed")


def _adapter(folder: Path, backend: Any, jti: str, seed: int, depth: int | None) -> Path:
    import peft
    import torch

    from valuetune.tune.artifacts import (
        jti_hash,
        model_fingerprint,
        write_metadata,
        writing_artifact,
    )
    from valuetune.tune.dpo import DPOSettings

    settings = DPOSettings()
    layers = backend.model.config.num_hidden_layers
    depth = depth or settings.trainable_layers
    torch.manual_seed(seed)
    config = peft.LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        target_modules=list(settings.lora_targets),
        layers_to_transform=list(range(layers - depth, layers)),
        init_lora_weights=False,
    )
    model = peft.get_peft_model(copy.deepcopy(backend.model), config)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.mul_(1e-3)  # a trained adapter's size, not random init's
    with writing_artifact(folder) as work:
        model.save_pretrained(str(work))
        write_metadata(
            work,
            "alignment/dpo",
            method="dpo",
            token_jti_hash=jti_hash(jti),
            base_model="embedded",
            base_model_sha256=model_fingerprint(backend),
        )
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _client(
    http: Any, url: str, tokens: list[str | None], c: int, n: int, max_tokens: int, out: list[Any]
) -> None:
    for i in range(n):
        token = tokens[(c + i) % len(tokens)]  # alternates per request where there are two
        headers = {"X-Value-Token": token} if token else {}
        body = {
            "model": "smollm2",
            "messages": [{"role": "user", "content": f"Give me advice on saving money, #{i}."}],
            "max_tokens": max_tokens,
            "temperature": 0.7,
            "seed": i,
        }
        started = time.perf_counter()
        reply = await http.post(url, json=body, headers=headers)
        reply.raise_for_status()
        doc = reply.json()
        out.append((time.perf_counter() - started, doc["usage"]["completion_tokens"]))


async def _round(url: str, tokens: list[str | None], clients: int, n: int, mt: int) -> Any:
    import httpx

    out: list[Any] = []
    async with httpx.AsyncClient(timeout=600) as http:
        started = time.perf_counter()
        await asyncio.gather(*(_client(http, url, tokens, c, n, mt, out) for c in range(clients)))
        wall = time.perf_counter() - started
    return wall, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients", type=int, nargs="*", default=[1, 4, 16], help="none: cold loads only"
    )
    parser.add_argument("--requests", type=int, default=2, help="per client per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--cold-adapters", type=int, default=8)
    parser.add_argument(
        "--trainable-layers", type=int, default=None, help="adapter depth (default: dpo's)"
    )
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "vt-bench-home")
    args = parser.parse_args()

    import torch
    import uvicorn

    from valuetune.llm.local import TransformersBackend
    from valuetune.server.app import create_app
    from valuetune.server.auth import Gate
    from valuetune.server.host import ModelHost
    from valuetune.server.lora import WeightSwitch, adapter_modules, read_lora
    from valuetune.settings import Settings
    from valuetune.store import Database
    from valuetune.store.apikeys import ApiKeyStore
    from valuetune.store.tokens import TokenStore
    from valuetune.token.alias import AliasService
    from valuetune.token.keys import KeyRing
    from valuetune.token.tokens import TokenService
    from valuetune.tune.catalog import ArtifactCatalog
    from valuetune.values.personas import get_persona

    work = Path(tempfile.mkdtemp(prefix="vt-bench-serve-"))
    backend = TransformersBackend.embedded(args.home)
    database = Database.open(f"sqlite:///{work / 'bench.sqlite3'}")
    ring = KeyRing.open(work / "home")
    store = TokenStore(database)
    tokens = TokenService(ring, store)
    minted: list[str] = []
    for i, persona in enumerate(("national-conservative", "progressive-activist")):
        profile = dataclasses.replace(get_persona(persona).profile, boundaries=frozenset())
        token = tokens.mint(profile).token
        jti = tokens.verify(token).jti
        _adapter(work / "artifacts" / persona, backend, jti, i, args.trainable_layers)
        minted.append(token)
    host = ModelHost(
        {"smollm2": lambda: backend},
        tokens,
        AliasService(store, ring.alias_key()),
        ArtifactCatalog([work / "artifacts"], refresh_s=3600),
    )
    host.load_all()
    app = create_app(Settings(home=work / "home"), host, Gate(ApiKeyStore(database), store))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    plan: dict[str, list[str | None]] = {
        "base": [None],
        "adapter": [minted[0]],
        "mixed": [minted[0], minted[1]],
    }
    print(f"torch threads {torch.get_num_threads()}; {args.max_tokens} tokens per request\n")
    if args.clients:
        asyncio.run(_round(url, [minted[0], minted[1], None], 3, 3, 4))  # warm everything once
        print("| clients | mode | tokens/s | p50 s | p95 s | requests |")
        print("|---:|---|---:|---:|---:|---:|")
    overheads = []
    for clients in args.clients:
        walls = dict.fromkeys(MODES, 0.0)
        done: dict[str, list[Any]] = {m: [] for m in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                wall, out = asyncio.run(
                    _round(url, plan[mode], clients, args.requests, args.max_tokens)
                )
                walls[mode] += wall
                done[mode] += out
        per_token = {}
        for mode in MODES:
            latencies = sorted(t for t, _ in done[mode])
            completion = sum(n for _, n in done[mode])
            per_token[mode] = walls[mode] / completion
            p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
            print(
                f"| {clients} | {mode} | {completion / walls[mode]:.1f} | "
                f"{statistics.median(latencies):.2f} | {p95:.2f} | {len(latencies)} |"
            )
        base = per_token["base"]
        overheads.append(
            (clients, per_token["adapter"] / base - 1.0, per_token["mixed"] / base - 1.0)
        )
    print()
    for clients, warm, mixed in overheads:
        print(f"{clients} clients: warm adapter {warm:+.1%}, alternating adapters {mixed:+.1%}")
    server.should_exit = True

    # as a server starts: the adapters are on disk, the start-up thread copies the base
    # weights they touch, then each holder's first request reads and merges its adapter
    folders = [
        _adapter(work / "cold" / str(i), backend, f"cold-{i}", 100 + i, args.trainable_layers)
        for i in range(args.cold_adapters)
    ]
    switch = WeightSwitch(backend.model)
    started = time.perf_counter()
    kept = switch.keep_pristine(set().union(*map(adapter_modules, folders)), threading.Lock())
    startup = time.perf_counter() - started
    cold = []
    for i, folder in enumerate(folders):
        started = time.perf_counter()
        switch.activate(read_lora(folder, backend.model, f"cold-{i}"))
        cold.append(time.perf_counter() - started)
    switch.activate(None)
    in_order = " ".join(f"{t * 1000:.0f}" for t in cold)
    cold.sort()
    print(
        f"\nstart-up copy of {kept} modules' base weights (background): {startup * 1000:.0f} ms"
        f"\ncold adapter (read, check, merge) over {len(cold)}: "
        f"p50 {statistics.median(cold) * 1000:.0f} ms, max {cold[-1] * 1000:.0f} ms "
        f"(in order: {in_order} ms)"
    )
    database.dispose()


if __name__ == "__main__":
    main()
