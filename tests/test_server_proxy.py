"""Proxy mode against an in-process fake upstream that records what it receives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from valuetune.server.host import ModelHost  # noqa: E402
from valuetune.server.proxy import Upstream  # noqa: E402
from valuetune.token.precis import boundary_instructions, write_precis  # noqa: E402
from valuetune.tune.artifacts import jti_hash, write_metadata, writing_artifact  # noqa: E402
from valuetune.tune.catalog import ArtifactCatalog, scan  # noqa: E402
from valuetune.values.personas import get_persona  # noqa: E402

PROMPT = "Should I tell my friend the truth about her cooking?"


def fake_upstream(listed: list[dict[str, Any]]) -> tuple[FastAPI, list[dict[str, Any]]]:
    """A vLLM-like server: lists `listed`, answers with the model it was asked for."""
    seen: list[dict[str, Any]] = []
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": listed}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Any:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        if body["messages"][-1]["content"] == "too long":
            error = {"message": "maximum context length exceeded", "type": "BadRequestError"}
            return JSONResponse({"error": {**error, "param": None, "code": 400}}, 400)
        text = f"answer from {body['model']}"
        if not body.get("stream"):
            return {
                "id": "cmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
            }

        def events() -> Iterator[str]:
            for i, piece in enumerate(text.split(" ")):
                delta = {"content": piece if i == 0 else " " + piece}
                chunk = {
                    "id": "cmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app, seen


def _artifact(root: Path, jti: str, method: str, base_sha: str = "b" * 64) -> str:
    """Catalog metadata for an adapter (the proxy never reads its weights); its module name."""
    with writing_artifact(root / jti[:8] / method) as work:
        write_metadata(
            work,
            f"alignment/{method}",
            method=method,
            token_jti_hash=jti_hash(jti),
            base_model_sha256=base_sha,
        )
    (entry,) = [e for e in scan([root]) if e.path.name == method and e.path.parent.name == jti[:8]]
    return entry.module_name


@pytest.fixture
def world(tmp_path: Path, server_parts: Any) -> Iterator[dict[str, Any]]:
    tokens = server_parts.tokens
    root = tmp_path / "artifacts"
    conservative = tokens.mint(get_persona("national-conservative").profile)
    progressive = tokens.mint(get_persona("progressive-activist").profile)
    listed_module = _artifact(root, tokens.verify(conservative.token).jti, "dpo")
    unlisted = _artifact(root, tokens.verify(progressive.token).jti, "dpo")
    listed = [
        {"id": "smollm2", "object": "model", "parent": None},
        {"id": listed_module, "object": "model", "parent": "smollm2"},
    ]
    fake, seen = fake_upstream(listed)
    upstream = Upstream(
        "http://upstream.test/v1", "sk-upstream", transport=httpx.ASGITransport(app=fake)
    )
    catalog = ArtifactCatalog([root], refresh_s=0)
    host = ModelHost({}, tokens, server_parts.aliases, catalog)
    with TestClient(server_parts.app(host, upstream), raise_server_exceptions=False) as client:
        yield {
            "client": client,
            "seen": seen,
            "tokens": tokens,
            "conservative": conservative.token,
            "progressive": progressive.token,
            "module": listed_module,
            "unlisted": unlisted,
            "parts": server_parts,
        }


def _ask(
    world: dict[str, Any],
    model: str = "smollm2",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], **extra}
    return world["client"].post("/v1/chat/completions", json=body, headers=headers or {})


def test_a_listed_adapter_is_named_upstream_with_the_boundaries(world: dict[str, Any]) -> None:
    reply = _ask(world, headers={"X-Value-Token": world["conservative"]}, temperature=0.3)
    assert reply.status_code == 200, reply.text
    doc = reply.json()
    sent = world["seen"][-1]
    assert sent["body"]["model"] == world["module"]
    assert sent["body"]["temperature"] == 0.3  # the client's settings pass through
    assert sent["auth"] == "Bearer sk-upstream"
    profile = world["tokens"].verify(world["conservative"]).profile()
    assert sent["body"]["messages"] == [
        {"role": "system", "content": boundary_instructions(profile)},
        {"role": "user", "content": PROMPT},
    ]
    assert doc["model"] == "smollm2"  # the client sees its own model name
    assert doc["choices"][0]["message"]["content"] == f"answer from {world['module']}"
    receipt = {"mechanism": "dpo", "artifact": world["module"], "fit": None}
    assert doc["valuetune"]["receipt"] == receipt
    assert json.loads(reply.headers["X-Valuetune-Receipt"]) == receipt
    assert world["conservative"] not in json.dumps(sent)  # the token never leaves


def test_without_a_listed_adapter_the_base_model_gets_the_precis(world: dict[str, Any]) -> None:
    doc = _ask(world, model=f"smollm2@{world['progressive']}").json()
    sent = world["seen"][-1]["body"]
    assert sent["model"] == "smollm2"  # the adapter exists here but the upstream lacks it
    precis = write_precis(world["tokens"].verify(world["progressive"]).profile())
    assert sent["messages"][0] == {"role": "system", "content": precis}
    assert doc["valuetune"]["receipt"]["mechanism"] == "precis"
    plain = _ask(world).json()
    assert world["seen"][-1]["body"]["messages"] == [{"role": "user", "content": PROMPT}]
    assert plain["valuetune"]["receipt"]["mechanism"] == "none"


def test_streaming_is_relayed_with_the_receipt(world: dict[str, Any]) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
    }
    headers = {"X-Value-Token": world["conservative"]}
    with world["client"].stream(
        "POST", "/v1/chat/completions", json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(e["model"] == "smollm2" for e in events)
    assert events[0]["valuetune"]["receipt"]["artifact"] == world["module"]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert text == f"answer from {world['module']}"


def test_the_official_client_works_through_the_proxy(world: dict[str, Any]) -> None:
    client = openai.OpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=world["client"]
    )
    reply = client.chat.completions.create(
        model=f"smollm2@{world['conservative']}",
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert reply.choices[0].message.content == f"answer from {world['module']}"
    chunks = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "answer from smollm2"
    assert [m.id for m in client.models.list()] == ["smollm2"]  # modules stay private


def test_errors_upstream_and_of_the_upstream_are_openai_errors(
    world: dict[str, Any], tmp_path: Path
) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "too long"}]}
    passed = world["client"].post("/v1/chat/completions", json=body)
    assert passed.status_code == 400
    assert passed.json()["error"]["message"] == "maximum context length exceeded"
    unknown = _ask(world, model="gpt-9")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    by_module = _ask(world, model=world["module"])  # modules are reached only by token
    assert by_module.status_code == 404
    bad = _ask(world, headers={"X-Value-Token": "v4.local.not-a-token"})
    assert bad.status_code == 401
    assert len(world["seen"]) == 1  # refused requests never reach the upstream

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    parts = world["parts"]
    host = ModelHost({}, parts.tokens, parts.aliases)
    down = Upstream("http://down.test/v1", transport=httpx.MockTransport(refuse))
    with TestClient(parts.app(host, down), raise_server_exceptions=False) as client:
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 502
        assert reply.json()["error"]["code"] == "upstream_unavailable"
        assert client.get("/ready").status_code == 503
        assert client.get("/health").status_code == 200


def test_serve_refuses_bad_proxy_and_artifact_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from valuetune.cli.main import app

    runner = CliRunner()
    cases = [
        (["serve", "--upstream", "ftp://example/v1"], "http(s) URL"),
        (["serve", "--upstream", "http://x/v1", "--model", f"a={tmp_path}"], "exclude each other"),
        (["serve", "--artifacts", str(tmp_path / "missing")], "no such directory"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and message in result.stderr, result.output
        assert "Traceback" not in result.stderr
