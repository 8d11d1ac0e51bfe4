"""The official `openai` client against a live `valuetune serve` process on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from valuetune.llm.local import TransformersBackend  # noqa: E402
from valuetune.settings import Settings  # noqa: E402
from valuetune.store import Database  # noqa: E402
from valuetune.store.tokens import TokenStore  # noqa: E402
from valuetune.token.keys import KeyRing  # noqa: E402
from valuetune.token.tokens import TokenService  # noqa: E402
from valuetune.values.personas import get_persona  # noqa: E402

VALUETUNE = str(Path(sys.executable).with_name("valuetune"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served(
    tmp_path: Path, embedded_tokenizer: Any, make_tiny_llama: Any, make_adapter: Any
) -> Iterator[dict[str, Any]]:
    model_dir = tmp_path / "tiny-model"
    make_tiny_llama(2).save_pretrained(model_dir)
    embedded_tokenizer.save_pretrained(model_dir)
    home = tmp_path / "home"
    settings = Settings(home=home)
    database = Database.open(settings.resolved_database_url())
    tokens = TokenService(KeyRing.open(home), TokenStore(database))
    token = tokens.mint(get_persona("secular-humanist").profile).token
    adapted = tokens.mint(get_persona("devout-catholic-family").profile).token
    tiny = TransformersBackend.from_directory(model_dir)  # where `valuetune tune` writes:
    make_adapter(home / "artifacts" / "mine" / "dpo", tiny, tokens.verify(adapted).jti, seed=1)
    port = _free_port()
    proc = subprocess.Popen(
        [
            VALUETUNE,
            "--home",
            str(home),
            "serve",
            "--port",
            str(port),
            "--no-embedded",
            "--model",
            f"tiny={model_dir}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "VALUETUNE_HOME": str(home)},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(f"{base}/ready").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.2)
    try:
        yield {"base": base, "token": token, "adapted": adapted, "proc": proc}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        database.dispose()
        assert token not in err and adapted not in err  # tokens never reach the logs


def test_official_client_chat_streaming_and_logprobs(served: dict[str, Any]) -> None:
    client = openai.OpenAI(
        base_url=f"{served['base']}/v1",
        api_key="not-needed-on-loopback",
        default_headers={"X-Value-Token": served["token"]},
    )
    assert [m.id for m in client.models.list()] == ["tiny"]
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Should I lend money to a friend?"}],
        max_tokens=12,
        temperature=0,
        seed=3,
        logprobs=True,
        top_logprobs=2,
    )
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert choice.logprobs is not None and choice.logprobs.content
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
    assert reply.usage is not None and reply.usage.completion_tokens == len(choice.logprobs.content)
    assert reply.model_extra is not None
    assert reply.model_extra["valuetune"]["receipt"]["mechanism"] == "precis"

    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Should I lend money to a friend?"}],
        max_tokens=12,
        temperature=0,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == choice.message.content

    adapted = client.chat.completions.create(
        model=f"tiny@{served['adapted']}",  # the suffix wins over the default header
        messages=[{"role": "user", "content": "Should I lend money to a friend?"}],
        max_tokens=12,
        temperature=0,
        stream=True,
    )
    first = next(iter(adapted))
    assert first.model_extra is not None
    assert first.model_extra["valuetune"]["receipt"]["mechanism"] == "dpo"
    adapted.close()

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    bad = openai.OpenAI(
        base_url=f"{served['base']}/v1",
        api_key="x",
        default_headers={"X-Value-Token": "v4.local.AAAA"},
    )
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])


def test_a_client_that_disconnects_mid_stream_leaves_the_server_serving(
    served: dict[str, Any],
) -> None:
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 400,
        "stream": True,
    }
    with httpx.stream("POST", f"{served['base']}/v1/chat/completions", json=body) as response:
        for _ in zip(range(3), response.iter_lines(), strict=False):
            pass  # read a little, then hang up
    reply = httpx.post(
        f"{served['base']}/v1/chat/completions",
        json={**body, "stream": False, "max_tokens": 4},
        timeout=60,
    )
    assert reply.status_code == 200
    assert served["proc"].poll() is None
