"""The OpenAI-compatible server: a tiny random model behind the real app, tokens and store."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from valuetune.llm.base import (  # noqa: E402
    ContinuationScore,
    Generation,
    GenerationOptions,
    LLMBackend,
    Message,
)
from valuetune.llm.local import TransformersBackend  # noqa: E402
from valuetune.server.app import MAX_BODY_BYTES  # noqa: E402
from valuetune.server.auth import Gate  # noqa: E402
from valuetune.server.host import ModelHost  # noqa: E402
from valuetune.store import Database  # noqa: E402
from valuetune.store.apikeys import ApiKeyStore  # noqa: E402
from valuetune.token.alias import precis_content  # noqa: E402
from valuetune.token.precis import PrecisLength, write_precis  # noqa: E402
from valuetune.tune.precis import with_system  # noqa: E402
from valuetune.values.personas import get_persona  # noqa: E402

CHAT = [{"role": "user", "content": "My neighbour plays loud music at night. What should I do?"}]


class RecordingBackend(LLMBackend):
    """Answers with a fixed text and remembers the conversations it was given."""

    name = "recording"

    def __init__(self) -> None:
        self.seen: list[list[Message]] = []

    def generate(self, messages: Sequence[Message], options: GenerationOptions) -> Generation:
        self.seen.append(list(messages))
        if messages[-1].content == "crash":
            raise RuntimeError("CUDA out of memory (a stand-in for any failure inside a model)")
        return Generation("noted", 3, 1, "stop")

    def score(
        self, messages: Sequence[Message], continuations: Sequence[str]
    ) -> list[ContinuationScore]:
        return [ContinuationScore(0.0, 1) for _ in continuations]


@pytest.fixture
def world(
    tmp_path: Path, embedded_tokenizer: Any, make_tiny_llama: Any, server_parts: Any
) -> Iterator[dict[str, Any]]:
    parts = server_parts
    tiny = TransformersBackend(make_tiny_llama(2), embedded_tokenizer, model_id="tiny")
    recording = RecordingBackend()
    models = {"tiny": lambda: tiny, "recording": lambda: recording}
    host = ModelHost(models, parts.tokens, parts.aliases)
    app = parts.app(host)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield {
            "client": client,
            "tiny": tiny,
            "recording": recording,
            "tokens": parts.tokens,
            "aliases": parts.aliases,
            "host": host,
            "keys": parts.keys,
            "app": app,
            "db_file": tmp_path / "server.sqlite3",
        }


def _mint(world: dict[str, Any], persona: str = "national-conservative") -> tuple[str, Any]:
    profile = get_persona(persona).profile
    minted = world["tokens"].mint(profile)
    return minted.token, world["tokens"].verify(minted.token)


def _chat(client: TestClient, **body: Any) -> Any:
    headers = body.pop("headers", {})
    return client.post("/v1/chat/completions", json={"messages": CHAT, **body}, headers=headers)


def test_models_health_and_readiness(world: dict[str, Any]) -> None:
    client = world["client"]
    assert client.get("/health").json() == {"status": "ok"}
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == ["recording", "tiny"]
    world["host"].load_all()
    assert client.get("/ready").json()["status"] == "ready"


def test_a_plain_request_gets_the_base_model_and_a_receipt(world: dict[str, Any]) -> None:
    reply = _chat(world["client"], model="tiny", max_tokens=12, temperature=0)
    assert reply.status_code == 200
    doc = reply.json()
    expected = world["tiny"].generate(
        [Message("user", CHAT[0]["content"])], GenerationOptions(max_new_tokens=12)
    )
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"]["content"] == expected.text
    assert doc["usage"]["completion_tokens"] == expected.completion_tokens
    assert doc["usage"]["prompt_tokens"] == expected.prompt_tokens
    assert doc["valuetune"]["receipt"]["mechanism"] == "none"
    assert json.loads(reply.headers["X-Valuetune-Receipt"])["mechanism"] == "none"


def test_a_token_applies_the_holders_precis_with_boundaries(world: dict[str, Any]) -> None:
    token, verified = _mint(world)
    reply = _chat(world["client"], model="recording", headers={"X-Value-Token": token})
    assert reply.status_code == 200
    assert reply.json()["valuetune"]["receipt"]["mechanism"] == "precis"
    system = world["recording"].seen[-1][0]
    assert system.role == "system"
    assert system.content == write_precis(verified.profile())
    boundaries = get_persona("national-conservative").profile.boundaries
    assert boundaries  # the persona has boundaries, and each one's instruction reaches the model
    axes = verified.profile().axes
    for boundary in axes.boundaries:
        if boundary.id in boundaries:
            assert boundary.instruction in system.content


def test_token_in_the_model_name_and_an_alias_give_the_same_alignment(
    world: dict[str, Any],
) -> None:
    token, verified = _mint(world, "progressive-activist")
    by_header = _chat(
        world["client"], model="tiny", max_tokens=8, temperature=0, headers={"X-Value-Token": token}
    ).json()
    by_suffix = _chat(world["client"], model=f"tiny@{token}", max_tokens=8, temperature=0).json()
    texts = {n.value: write_precis(verified.profile(), n) for n in PrecisLength}
    alias = world["aliases"].create(verified.sub, "precis", precis_content(texts))
    by_alias = _chat(world["client"], model=f"tiny@{alias}", max_tokens=8, temperature=0).json()
    shared = world["tokens"].mint_share(verified).token
    alias2 = world["aliases"].create(verified.sub, "token", shared)
    by_share = _chat(
        world["client"],
        model="tiny",
        max_tokens=8,
        temperature=0,
        headers={"X-Value-Token": alias2.replace("-", " ")},
    ).json()
    expected = (
        world["tiny"]
        .generate(
            with_system([Message("user", CHAT[0]["content"])], write_precis(verified.profile())),
            GenerationOptions(max_new_tokens=8),
        )
        .text
    )
    for doc in (by_header, by_suffix, by_alias, by_share):
        assert doc["choices"][0]["message"]["content"] == expected
        assert doc["valuetune"]["receipt"]["mechanism"] == "precis"
        assert doc["model"] == "tiny"


def test_streaming_adds_up_to_the_plain_reply(world: dict[str, Any]) -> None:
    body = {
        "model": "tiny",
        "max_tokens": 16,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with world["client"].stream(
        "POST", "/v1/chat/completions", json={"messages": CHAT, **body}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[0]["valuetune"]["receipt"]["mechanism"] == "none"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    logprobs = [
        lp
        for e in events
        if e["choices"] and e["choices"][0].get("logprobs")
        for lp in e["choices"][0]["logprobs"]["content"]
    ]
    plain = _chat(
        world["client"], model="tiny", max_tokens=16, temperature=0, logprobs=True, top_logprobs=2
    ).json()
    assert text == plain["choices"][0]["message"]["content"]
    assert [lp["token"] for lp in logprobs] == [
        lp["token"] for lp in plain["choices"][0]["logprobs"]["content"]
    ]
    finishing = [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
    assert len(finishing) == 1
    assert events[-1]["usage"] == plain["usage"] and events[-1]["choices"] == []


@pytest.mark.parametrize(
    ("body", "status", "code_or_param"),
    [
        ({"model": "nope", "messages": CHAT}, 404, "model_not_found"),
        ({"model": "tiny", "messages": CHAT, "max_tokens": 100_000}, 400, "max_tokens_too_large"),
        ({"model": "tiny", "messages": CHAT, "temprature": 0.5}, 400, "temprature"),
        ({"model": "tiny", "messages": []}, 400, "messages"),
        ({"model": "tiny", "messages": CHAT, "n": 2}, 400, "n"),
        ({"model": "tiny", "messages": CHAT, "top_logprobs": 3}, 400, None),
        ({"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400, None),
        ({"model": "tiny@maple-orbit-canyon-river", "messages": CHAT}, 401, "invalid_value_token"),
    ],
)
def test_bad_requests_get_openai_error_objects(
    world: dict[str, Any], body: dict[str, Any], status: int, code_or_param: str | None
) -> None:
    reply = world["client"].post("/v1/chat/completions", json=body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["message"] and error["type"]
    if code_or_param:
        assert code_or_param in (error["code"], error["param"]) or code_or_param in str(
            error["param"]
        )
    assert "maple" not in json.dumps(reply.json())  # an alias is never echoed
    assert _chat(world["client"], model="tiny", max_tokens=2).status_code == 200  # still up


def test_malformed_oversized_and_refused_tokens(world: dict[str, Any]) -> None:
    client = world["client"]
    broken = client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]["message"]
    huge = client.post(
        "/v1/chat/completions",
        content=b" " * (MAX_BODY_BYTES + 1),
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    token, verified = _mint(world)
    world["tokens"].registry.revoke(verified.jti)
    revoked = _chat(client, model="tiny", headers={"X-Value-Token": token})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
    assert token not in revoked.text
    forged = _chat(client, model="tiny", headers={"X-Value-Token": token[:-4] + "AAAA"})
    assert forged.status_code == 401
    long_prompt = [{"role": "user", "content": "word " * 9000}]
    too_long = client.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": long_prompt, "max_tokens": 10}
    )
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    _other, _ = _mint(world, "progressive-activist")
    nearly = [{"role": "user", "content": "word " * 8100}]  # fits alone, not with the précis
    assert (
        client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": nearly, "max_tokens": 10}
        ).status_code
        == 200
    )
    with_precis = client.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": nearly, "max_tokens": 10},
        headers={"X-Value-Token": _other},
    )
    assert with_precis.status_code == 400
    crash = client.post(
        "/v1/chat/completions",
        json={"model": "recording", "messages": [{"role": "user", "content": "crash"}]},
    )
    assert crash.status_code == 500 and crash.json()["error"]["type"] == "server_error"
    assert "memory" not in crash.text
    assert _chat(client, model="recording").status_code == 200


def test_a_stream_that_crashes_ends_with_an_error_event(world: dict[str, Any]) -> None:
    crash = [{"role": "user", "content": "crash"}]
    body = {"model": "recording", "stream": True, "messages": crash}
    reply = world["client"].post("/v1/chat/completions", json=body)
    assert reply.status_code == 200  # the first event had left before the model failed
    lines = [line.removeprefix("data: ") for line in reply.text.splitlines() if line]
    assert json.loads(lines[-1])["error"]["type"] == "server_error"  # not a silent [DONE]
    assert "memory" not in reply.text and "[DONE]" not in lines


def test_requests_with_different_tokens_interleave_without_leaking(
    world: dict[str, Any],
) -> None:
    client = world["client"]
    holders = [_mint(world, p) for p in ("progressive-activist", "national-conservative")]
    expected = {}
    for token, verified in [*holders, (None, None)]:
        messages = [Message("user", CHAT[0]["content"])]
        if verified is not None:
            messages = with_system(messages, write_precis(verified.profile()))
        expected[token] = world["tiny"].generate(messages, GenerationOptions(max_new_tokens=10))
    results: list[tuple[str | None, str]] = []
    failures: list[BaseException] = []

    def ask(token: str | None, stream: bool) -> None:
        try:
            headers = {"X-Value-Token": token} if token else {}
            body = {"model": "tiny", "messages": CHAT, "max_tokens": 10, "temperature": 0}
            if stream:
                with client.stream(
                    "POST", "/v1/chat/completions", headers=headers, json={**body, "stream": True}
                ) as response:
                    events = [
                        json.loads(line[6:])
                        for line in response.iter_lines()
                        if line.startswith("data: {")
                    ]
                text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
            else:
                reply = client.post("/v1/chat/completions", headers=headers, json=body)
                text = reply.json()["choices"][0]["message"]["content"]
            results.append((token, text))
        except BaseException as exc:
            failures.append(exc)

    tokens = [holders[0][0], holders[1][0], None] * 4
    threads = [threading.Thread(target=ask, args=(t, i % 2 == 0)) for i, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(results) == len(tokens)
    assert len({e.text for e in expected.values()}) == 3  # the three alignments differ
    for token, text in results:
        assert text == expected[token].text


def test_alias_resolver_answers_hits_and_misses_alike_and_limits_each_client(
    world: dict[str, Any],
) -> None:
    client = world["client"]
    _token, verified = _mint(world)
    texts = {n.value: write_precis(verified.profile(), n) for n in PrecisLength}
    alias = world["aliases"].create(verified.sub, "precis", precis_content(texts))
    hit = client.post("/v1/aliases/resolve", json={"alias": alias.upper().replace("-", " ")})
    miss = client.post("/v1/aliases/resolve", json={"alias": "maple-orbit-canyon-river"})
    assert hit.status_code == miss.status_code == 200
    assert set(hit.json()) == set(miss.json()) == {"found", "share", "content"}
    assert hit.json()["found"] is True and json.loads(hit.json()["content"]) == texts
    assert miss.json() == {"found": False, "share": None, "content": None}
    garbage = client.post("/v1/aliases/resolve", json={"alias": "<script>zzzqx</script>"})
    assert garbage.status_code == 400 and "zzzqx" not in garbage.text
    assert _chat(client, model="tiny@zzzqx-words").status_code == 401
    limit = world["aliases"].limit
    answers = [client.post("/v1/aliases/resolve", json={"alias": alias}) for _ in range(limit)]
    assert answers[-1].status_code == 429
    assert answers[-1].json()["error"]["code"] == "rate_limit_exceeded"


def test_api_keys_once_one_exists_with_a_rate_limit_per_key(world: dict[str, Any]) -> None:
    client, keys = world["client"], world["keys"]
    loose = _chat(client, model="tiny", max_tokens=2, headers={"Authorization": "Bearer x"})
    assert loose.status_code == 200  # loopback, no key created: none needed
    record, key = keys.create("tests", per_minute=3)
    assert key.startswith("vt-") and key not in repr(record)
    missing = _chat(client, model="tiny", max_tokens=2)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models").status_code == 401
    assert client.get("/health").status_code == 200  # liveness needs no key
    wrong = _chat(client, model="tiny", max_tokens=2, headers={"Authorization": f"Bearer {key}x"})
    assert wrong.status_code == 401
    good = {"Authorization": f"Bearer {key}"}
    assert _chat(client, model="tiny", max_tokens=2, headers=good).status_code == 200
    assert client.get("/v1/models", headers=good).status_code == 200
    limited = _chat(client, model="tiny", max_tokens=2, headers=good)
    assert limited.status_code == 200
    limited = _chat(client, model="tiny", max_tokens=2, headers=good)
    assert limited.status_code == 429 and limited.json()["error"]["type"] == "rate_limit_error"
    other_record, other = keys.create("second")
    assert (
        _chat(
            client, model="tiny", max_tokens=2, headers={"Authorization": f"Bearer {other}"}
        ).status_code
        == 200
    )
    keys.revoke(other_record.id)
    assert (
        _chat(
            client, model="tiny", max_tokens=2, headers={"Authorization": f"Bearer {other}"}
        ).status_code
        == 401
    )
    assert key.encode() not in world["db_file"].read_bytes()  # stored as a digest only


def test_beyond_loopback_every_request_needs_a_key(world: dict[str, Any]) -> None:
    world["app"].state.gate = Gate(
        world["keys"], world["tokens"].registry, keys_always=True, wall=lambda: 1_000_000.0
    )
    assert _chat(world["client"], model="tiny", max_tokens=2).status_code == 401
    _record, key = world["keys"].create("remote")
    reply = _chat(
        world["client"], model="tiny", max_tokens=2, headers={"Authorization": f"Bearer {key}"}
    )
    assert reply.status_code == 200


def test_apikey_cli_and_serve_refuses_to_go_beyond_loopback_without_a_key(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from valuetune.cli.main import app

    runner = CliRunner()
    home = ["--home", str(tmp_path / "cli-home")]
    refused = runner.invoke(app, [*home, "serve", "--host", "0.0.0.0"])
    assert refused.exit_code != 0 and "apikey create" in refused.output
    created = runner.invoke(app, [*home, "apikey", "create", "--name", "laptop", "--json"])
    assert created.exit_code == 0, created.output
    doc = json.loads(created.stdout)
    listed = runner.invoke(app, [*home, "apikey", "list", "--json"])
    assert [k["id"] for k in json.loads(listed.stdout)] == [doc["id"]]
    assert doc["key"] not in listed.stdout
    revoked = runner.invoke(app, [*home, "apikey", "revoke", doc["id"], "--json"])
    assert json.loads(revoked.stdout)["revoked_at"] is not None
    unknown = runner.invoke(app, [*home, "apikey", "revoke", "nope"])
    assert unknown.exit_code != 0 and "no API key" in unknown.output


def test_api_key_store_on_each_database(database: Database) -> None:
    keys = ApiKeyStore(database)
    assert not keys.any_active()
    record, key = keys.create("ci", per_minute=5)
    assert keys.any_active()
    assert keys.check(key) == record
    assert keys.check(key[:-1]) is None and keys.check("not-a-key") is None
    keys.revoke(record.id)
    assert keys.check(key) is None and not keys.any_active()
