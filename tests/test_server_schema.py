"""Schemathesis over the server's own OpenAPI schema: no generated request is a server error.

Every operation the schema lists gets a bounded, derandomized run (CI replays the same
requests) of bodies valid and invalid under the schema; schemathesis checks each response
against the schema: no 5xx, documented status, content type, headers and body. Chat
requests reach a tiny random Llama behind the real app, token and alias services and
SQLite store.

Not checked: that every schema-valid body is accepted (`positive_data_acceptance`). Some
refusals depend on more than one field or on data the schema cannot list: an alias's
words, `top_logprobs` without `logprobs`, a prompt longer than the context.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from valuetune.llm.base import Chunk, GenerationOptions, Message  # noqa: E402
from valuetune.llm.local import TransformersBackend  # noqa: E402
from valuetune.server.app import create_app  # noqa: E402
from valuetune.server.auth import Gate  # noqa: E402
from valuetune.server.host import ModelHost  # noqa: E402
from valuetune.settings import Settings  # noqa: E402
from valuetune.store import Database  # noqa: E402
from valuetune.store.apikeys import ApiKeyStore  # noqa: E402
from valuetune.store.tokens import TokenStore  # noqa: E402
from valuetune.token.alias import AliasService  # noqa: E402
from valuetune.token.keys import KeyRing  # noqa: E402
from valuetune.token.tokens import TokenService  # noqa: E402
from valuetune.token.words import MAX_WORDS, MIN_WORDS, SEPARATOR, load_wordlist  # noqa: E402

OPERATIONS = [
    "GET /health",
    "GET /ready",
    "GET /v1/models",
    "POST /v1/aliases/resolve",
    "POST /v1/chat/completions",
]
"""Every operation the schema lists; a new endpoint must join the run here."""

EXAMPLES = 50
"""Generated requests per operation (fewer where the schema allows fewer distinct ones)."""

ANSWER_TOKENS = 4
"""Most tokens the tiny model decodes per request, so a generated max_tokens stays cheap."""

CHECKS = {"excluded_checks": [schemathesis.checks.positive_data_acceptance]}

# A generated model name is never a served one, nor a generated alias a well-formed one:
# valid bodies are sent as generated, or with the served model (bare, or with the generated
# name as its token/alias suffix) and a well-formed alias, so generation and lookup run too.
PINS = ["served", "served@", "as generated"]
ALIASES = st.lists(st.sampled_from(load_wordlist()), min_size=MIN_WORDS, max_size=MAX_WORDS)


class BriefTinyModel(TransformersBackend):
    """The tiny model, stopping after `ANSWER_TOKENS` whatever a request asked for.

    The server still validates and checks the context for the number asked for; only the
    decoding loop is shortened, as a model that meets its end-of-text token early would be.
    """

    def stream(self, messages: Sequence[Message], options: GenerationOptions) -> Iterator[Chunk]:
        brief = min(options.max_new_tokens, ANSWER_TOKENS)
        return super().stream(messages, options.model_copy(update={"max_new_tokens": brief}))


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, embedded_tokenizer: Any, make_tiny_llama: Any
) -> Iterator[Any]:
    """The app's OpenAPI schema, read from the app, whose requests go to the app."""
    root = tmp_path_factory.mktemp("schema")
    database = Database.open(f"sqlite:///{root / 'server.sqlite3'}")
    ring = KeyRing.open(root / "home")
    store = TokenStore(database)
    tokens = TokenService(ring, store)
    # every lookup reaches the alias parser: rate limits are test_server.py's to test
    aliases = AliasService(store, ring.alias_key(), limit=1_000_000, floor_seconds=0)
    tiny = BriefTinyModel(make_tiny_llama(2), embedded_tokenizer, model_id="tiny")
    host = ModelHost({"tiny": lambda: tiny}, tokens, aliases)
    host.load_all()  # /ready answers 200 from the first request: the run does not race the load
    app = create_app(Settings(home=root / "home"), host, Gate(ApiKeyStore(database), store))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    database.dispose()


def test_the_run_covers_every_operation_in_the_schema(api: Any) -> None:
    assert sorted(result.ok().label for result in api.get_all_operations()) == OPERATIONS


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_generated_request_is_a_server_error(api: Any, label: str) -> None:
    method, path = label.split(" ")
    operation = api[path][method]
    modes = [schemathesis.GenerationMode.POSITIVE]
    if operation.body:
        modes.append(schemathesis.GenerationMode.NEGATIVE)
    cases = st.one_of(*(operation.as_strategy(mode) for mode in modes))
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(case=cases, pin=st.sampled_from(PINS), alias=ALIASES)
    def send(case: Any, pin: str, alias: list[str]) -> None:
        body = case.body
        if isinstance(body, dict) and case.meta.generation.mode.is_positive and pin != PINS[-1]:
            if "model" in body:
                body["model"] = "tiny" if pin == "served" else f"tiny@{body['model']}"[:600]
            if "alias" in body:
                body["alias"] = SEPARATOR.join(alias)
        response = case.call_and_validate(**CHECKS)
        statuses[response.status_code] += 1

    send()
    assert statuses.total() > 0
    if operation.body:  # both sides of validation were reached
        assert statuses[200] > 0 and statuses[400] > 0, statuses
    else:
        assert set(statuses) == {200}, statuses


def _ask(api: Any, **extra: Any) -> Any:
    """One chat request to the tiny model, checked by schemathesis like the generated ones."""
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **extra}
    return api["/v1/chat/completions"]["POST"].Case(body=body).call_and_validate(**CHECKS)


@pytest.mark.parametrize("seed", [2**63, -(2**63) - 1, 2**64])
def test_a_seed_beyond_64_bits_is_refused_not_a_crash(api: Any, seed: int) -> None:
    # torch's generator takes [-2**63, 2**64): larger seeds raised inside the model (a 500)
    refused = _ask(api, seed=seed)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "seed"
    assert _ask(api, seed=2**63 - 1, max_tokens=2).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("field", ["temperature", "top_p"])
def test_a_vanishing_temperature_or_top_p_samples_like_greedy(
    api: Any, field: str, stream: bool
) -> None:
    # logits / 5e-324 was NaN (a 500, or a stream that ended early without an error); a
    # top_p of 5e-324 is 0 in float32, which left no token in the nucleus (a 500)
    reply = _ask(api, **{field: 5e-324}, max_tokens=3, stream=stream)
    greedy = _ask(api, temperature=0, max_tokens=3, stream=stream)
    assert reply.status_code == greedy.status_code == 200
    if stream:
        assert "error" not in reply.text and reply.text.rstrip().endswith("data: [DONE]")
    else:
        content = [r.json()["choices"][0]["message"]["content"] for r in (reply, greedy)]
        assert content[0] == content[1]
