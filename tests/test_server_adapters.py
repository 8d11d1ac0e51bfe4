"""Serving artifacts per token: catalog lookup, LoRA switching, receipts, no leaks."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from valuetune.llm.base import GenerationOptions, Message  # noqa: E402
from valuetune.llm.local import TransformersBackend  # noqa: E402
from valuetune.server.host import ModelHost  # noqa: E402
from valuetune.server.lora import AdapterCache, WeightSwitch, adapter_modules, read_lora  # noqa: E402
from valuetune.token.precis import boundary_instructions, write_precis  # noqa: E402
from valuetune.tune.artifacts import (  # noqa: E402
    ArtifactError,
    jti_hash,
    model_fingerprint,
    write_fit,
)
from valuetune.tune.catalog import ArtifactCatalog, scan  # noqa: E402
from valuetune.tune.precis import with_system  # noqa: E402
from valuetune.values.personas import get_persona  # noqa: E402

PROMPT = "My neighbour plays loud music at night. What should I do?"
CHAT = [{"role": "user", "content": PROMPT}]


def peft_merged(backend: TransformersBackend, folder: Path) -> TransformersBackend:
    """The reference: PEFT's own merge of the adapter into a copy of the model."""
    merged = peft.PeftModel.from_pretrained(copy.deepcopy(backend.model), str(folder))
    return TransformersBackend(
        merged.merge_and_unload(), backend.tokenizer, model_id=backend.model_id
    )


@pytest.fixture
def tiny(embedded_tokenizer: Any, make_tiny_llama: Any) -> TransformersBackend:
    return TransformersBackend(make_tiny_llama(2, seed=3), embedded_tokenizer, model_id="tiny")


@pytest.fixture
def world(tmp_path: Path, tiny: TransformersBackend, server_parts: Any) -> Iterator[dict[str, Any]]:
    root = tmp_path / "artifacts"
    catalog = ArtifactCatalog([root], refresh_s=0)
    tokens = server_parts.tokens
    host = ModelHost({"tiny": lambda: tiny}, tokens, server_parts.aliases, catalog, cache_size=4)
    with TestClient(server_parts.app(host), raise_server_exceptions=False) as client:
        yield {"client": client, "tokens": tokens, "host": host, "root": root, "tiny": tiny}


def _mint(world: dict[str, Any], persona: str) -> tuple[str, Any]:
    minted = world["tokens"].mint(get_persona(persona).profile)
    return minted.token, world["tokens"].verify(minted.token)


def _ask(world: dict[str, Any], token: str | None, **extra: Any) -> dict[str, Any]:
    headers = {"X-Value-Token": token} if token else {}
    body = {"model": "tiny", "messages": CHAT, "max_tokens": 8, "temperature": 0, **extra}
    reply = world["client"].post("/v1/chat/completions", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    doc: dict[str, Any] = reply.json()
    assert json.loads(reply.headers["X-Valuetune-Receipt"]) == doc["valuetune"]["receipt"]
    return doc


def _expected(backend: TransformersBackend, system: str | None) -> tuple[str, list[float]]:
    messages = [Message("user", PROMPT)]
    if system:
        messages = with_system(messages, system)
    reply = backend.generate(messages, GenerationOptions(max_new_tokens=8, logprobs=True))
    return reply.text, [t.logprob for t in reply.logprobs or []]


def _got(doc: dict[str, Any]) -> tuple[str, list[float]]:
    choice = doc["choices"][0]
    return choice["message"]["content"], [t["logprob"] for t in choice["logprobs"]["content"]]


def _close(a: tuple[str, list[float]], b: tuple[str, list[float]]) -> bool:
    return (
        a[0] == b[0]
        and len(a[1]) == len(b[1])
        and all(abs(x - y) < 1e-4 for x, y in zip(a[1], b[1], strict=True))
    )


def test_merging_matches_peft_and_switching_back_restores_every_bit(
    tiny: TransformersBackend,
    tmp_path: Path,
    make_adapter: Any,
) -> None:
    first = make_adapter(tmp_path / "a", tiny, "j1", seed=1)
    second = make_adapter(
        tmp_path / "b",
        tiny,
        "j2",
        seed=2,
        layers=(1,),
        use_rslora=True,
        alpha_pattern={"v_proj": 2},
    )
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    base_scores = tiny.score([Message("user", PROMPT)], ["Talk to them.", "Call the police."])
    switch = WeightSwitch(tiny.model)
    for folder, ident in ((first, "a"), (second, "b"), (first, "a")):
        switch.activate(read_lora(folder, tiny.model, ident))
        ours = tiny.score([Message("user", PROMPT)], ["Talk to them.", "Call the police."])
        pristine = TransformersBackend(_pristine(tiny.model, before), tiny.tokenizer, model_id="t")
        theirs = peft_merged(pristine, folder).score(
            [Message("user", PROMPT)], ["Talk to them.", "Call the police."]
        )
        for x, y in zip(ours, theirs, strict=True):
            assert x.logprob == pytest.approx(y.logprob, abs=1e-5)
        assert [s.logprob for s in ours] != [s.logprob for s in base_scores]
    switch.activate(None)
    after = tiny.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit for bit
    assert switch.switches == 4


def test_start_up_copies_the_base_weights_adapters_will_touch(
    world: dict[str, Any], make_adapter: Any
) -> None:
    """The pristine copies are taken by `load_all` (in the server's start-up thread), so
    a holder's first request only reads and merges its adapter."""
    tiny, host = world["tiny"], world["host"]
    for thread in threading.enumerate():  # the app's own start-up ran on an empty catalog
        if thread.name == "valuetune-load":
            thread.join()
    token, verified = _mint(world, "progressive-activist")
    make_adapter(world["root"] / "one", tiny, verified.jti, seed=1, layers=(1,))
    two = make_adapter(world["root"] / "two", tiny, "someone-else", seed=2, layers=(0,))
    (world["root"] / "broken").mkdir()
    (world["root"] / "broken" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    served = host.models["tiny"]
    assert served.switch.kept == frozenset()

    host.load_all()

    touched = adapter_modules(world["root"] / "one") | adapter_modules(two)
    assert touched and all(".layers.1." in n for n in adapter_modules(world["root"] / "one"))
    assert served.switch.kept == touched
    after = tiny.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # copying changed nothing
    assert host.keep_pristine(served) == 0  # once only

    doc = _ask(world, token, logprobs=True)
    assert doc["valuetune"]["receipt"]["mechanism"] == "dpo"
    assert served.switch.kept == touched  # the request made no copy of its own
    assert adapter_modules(world["root"] / "broken") == set()
    served.switch.activate(None)
    after = tiny.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _pristine(model: Any, state: dict[str, Any]) -> Any:
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone


def test_damaged_or_unservable_adapters_are_refused_clearly(
    tiny: TransformersBackend,
    tmp_path: Path,
    make_tiny_llama: Any,
    make_adapter: Any,
) -> None:
    good = make_adapter(tmp_path / "a", tiny, "j", seed=1)
    (good / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError, match="damaged"):
        read_lora(good, tiny.model, "a")
    dora = make_adapter(tmp_path / "d", tiny, "j", seed=1, use_dora=True)
    with pytest.raises(ArtifactError, match="DoRA"):
        read_lora(dora, tiny.model, "d")
    wide = TransformersBackend(make_tiny_llama(2), tiny.tokenizer, model_id="other")
    wide.model.model.layers[0].self_attn.q_proj = torch.nn.Linear(32, 64, bias=False)
    other = make_adapter(tmp_path / "o", wide, "j", seed=1)
    with pytest.raises(ArtifactError, match="does not fit"):
        read_lora(other, tiny.model, "o")


def test_catalog_finds_finished_artifacts_best_first_and_notices_new_ones(
    tiny: TransformersBackend,
    tmp_path: Path,
    make_adapter: Any,
) -> None:
    root = tmp_path / "artifacts"
    make_adapter(root / "x" / "soup", tiny, "j", seed=1, kind="alignment/soup")
    (root / ".x.partial-1").mkdir(parents=True)  # a killed build's leftovers
    (root / "broken").mkdir()
    (root / "broken" / "valuetune-artifact.json").write_text("{not json")
    now = [0.0]
    catalog = ArtifactCatalog([root, tmp_path / "missing"], refresh_s=5, clock=lambda: now[0])
    base = model_fingerprint(tiny)
    assert [e.method for e in catalog.for_holder(jti_hash("j"))] == ["soup"]
    assert catalog.best(jti_hash("other"), base) is None
    assert catalog.best(jti_hash("j"), "another-base") is None
    make_adapter(root / "x" / "dpo", tiny, "j", seed=2)
    assert catalog.best(jti_hash("j"), base).method == "soup"  # type: ignore[union-attr]
    now[0] = 6.0
    best = catalog.best(jti_hash("j"), base)
    assert best is not None and best.method == "dpo" and best.fit is None
    write_fit(best.path, {"fit": 0.71})
    assert scan([root])[0].fit == 0.71
    assert len({e.module_name for e in scan([root])}) == 2


def test_each_token_gets_its_own_adapter_with_boundaries_and_a_receipt(
    world: dict[str, Any],
    make_adapter: Any,
) -> None:
    tiny: TransformersBackend = world["tiny"]
    token, verified = _mint(world, "national-conservative")
    folder = make_adapter(world["root"] / "h1" / "dpo", tiny, verified.jti, seed=1)
    write_fit(folder, {"fit": 0.64})
    boundaries = boundary_instructions(verified.profile())
    assert boundaries  # this persona has boundaries: the adapted model is still told them
    other, _ = _mint(world, "progressive-activist")  # no artifact: the précis alone
    other_precis = write_precis(world["tokens"].verify(other).profile())
    # references first: serving leaves the last adapter merged into the shared weights
    adapted, by_precis, plain = (
        _expected(peft_merged(tiny, folder), boundaries),
        _expected(tiny, other_precis),
        _expected(tiny, None),
    )

    doc = _ask(world, token, logprobs=True)
    receipt = doc["valuetune"]["receipt"]
    assert receipt["mechanism"] == "dpo" and receipt["fit"] == 0.64
    assert receipt["artifact"].startswith("vt-dpo-")
    assert _close(_got(doc), adapted)
    aligned = world["host"].aligned(world["host"].models["tiny"], world["host"].holder(token, "t"))
    assert aligned.instruction == boundaries

    doc = _ask(world, other, logprobs=True)
    assert doc["valuetune"]["receipt"] == {"mechanism": "precis", "artifact": None, "fit": None}
    assert _close(_got(doc), by_precis)
    assert _close(_got(_ask(world, None, logprobs=True)), plain)
    assert _close(_got(_ask(world, token, logprobs=True)), adapted)


def test_a_damaged_adapter_falls_back_to_the_next_best_and_the_server_stays_up(
    world: dict[str, Any],
    make_adapter: Any,
) -> None:
    tiny: TransformersBackend = world["tiny"]
    token, verified = _mint(world, "national-conservative")
    folder = make_adapter(world["root"] / "h1" / "dpo", tiny, verified.jti, seed=1)
    (folder / "adapter_model.safetensors").write_bytes(b"garbage")
    for _ in range(2):
        assert _ask(world, token)["valuetune"]["receipt"]["mechanism"] == "precis"
    assert world["host"].cache.loads == 1  # the failure is remembered, not re-read
    make_adapter(world["root"] / "h1" / "soup", tiny, verified.jti, seed=2, kind="alignment/soup")
    assert _ask(world, token)["valuetune"]["receipt"]["mechanism"] == "soup"  # the next best


def test_steering_vectors_serve_when_there_is_no_adapter(
    world: dict[str, Any],
    tmp_path: Path,
    make_adapter: Any,
) -> None:
    from valuetune.tune.methods import TuneRequest
    from valuetune.tune.scenarios import load_scenario_bank
    from valuetune.tune.steer import SteerConfig, SteerMethod

    token, verified = _mint(world, "progressive-activist")
    request = TuneRequest(
        world["tiny"], verified.profile(), verified.jti, load_scenario_bank(), "tiny", {}
    )
    config = SteerConfig(strengths=(0.3,), calibration_scenarios=4, pairs_per_axis=2)
    SteerMethod(config).build(request, world["root"] / "h2" / "steer")
    doc = _ask(world, token)
    assert doc["valuetune"]["receipt"]["mechanism"] == "steer"
    make_adapter(world["root"] / "h2" / "soup", world["tiny"], verified.jti, seed=4,
                 kind="alignment/soup")  # fmt: skip
    assert _ask(world, token)["valuetune"]["receipt"]["mechanism"] == "soup"


def test_interleaved_requests_for_different_tokens_never_leak(
    world: dict[str, Any], make_adapter: Any
) -> None:
    """Three holders (two adapters, one précis) and plain requests, 24 at once, through
    an adapter cache too small for all: each reply equals that holder's reference."""
    tiny: TransformersBackend = world["tiny"]
    world["host"].cache = AdapterCache(1)
    holders: list[tuple[str | None, tuple[str, list[float]]]] = []
    for persona, seed in (("national-conservative", 1), ("progressive-activist", 2)):
        token, verified = _mint(world, persona)
        folder = make_adapter(world["root"] / persona / "dpo", tiny, verified.jti, seed=seed)
        boundaries = boundary_instructions(verified.profile()) or None
        holders.append((token, _expected(peft_merged(tiny, folder), boundaries)))
    token, verified = _mint(world, "secular-humanist")
    holders.append((token, _expected(tiny, write_precis(verified.profile()))))
    holders.append((None, _expected(tiny, None)))
    assert len({h[1][0] + str(h[1][1]) for h in holders}) == 4  # four different answers

    results: list[tuple[int, tuple[str, list[float]]]] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            token, _ = holders[i % 4]
            stream = i % 3 == 0
            if stream:
                results.append((i % 4, _streamed(world, token)))
            else:
                results.append((i % 4, _got(_ask(world, token, logprobs=True))))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == 24
    for index, got in results:
        assert _close(got, holders[index][1]), index
    assert world["host"].cache.loads >= 2  # adapters were evicted and loaded again
    world["host"].models["tiny"].switch.activate(None)


def _streamed(world: dict[str, Any], token: str | None) -> tuple[str, list[float]]:
    headers = {"X-Value-Token": token} if token else {}
    body = {
        "model": "tiny",
        "messages": CHAT,
        "max_tokens": 8,
        "temperature": 0,
        "logprobs": True,
        "stream": True,
    }
    with world["client"].stream(
        "POST", "/v1/chat/completions", json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line and line != "data: [DONE]"]
    events = [json.loads(line.removeprefix("data: ")) for line in lines]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    logprobs = [
        t["logprob"]
        for e in events
        if e["choices"] and e["choices"][0].get("logprobs")
        for t in e["choices"][0]["logprobs"]["content"]
    ]
    return text, logprobs
