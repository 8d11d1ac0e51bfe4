"""Shared fixtures: a real database on each backend, and an isolated VALUETUNE_HOME.

PostgreSQL tests use the server named by VALUETUNE_TEST_POSTGRES_URL (an admin URL whose
role may CREATE DATABASE; `scripts/test.sh` starts one). Each test gets a fresh database,
dropped afterwards. Without the URL they skip, unless VALUETUNE_REQUIRE_POSTGRES=1 (CI),
where a missing server is a failure.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from valuetune.store import Database, SurveyStore
from valuetune.store.tokens import TokenStore
from valuetune.token.keys import KeyRing

pytest_plugins = ["browser"]  # tests/browser.py: Chromium, axe-core, screenshots

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the real user data dir; never inherit a database URL."""
    home = tmp_path / "home"
    monkeypatch.setenv("VALUETUNE_HOME", str(home))
    monkeypatch.delenv("VALUETUNE_DATABASE_URL", raising=False)
    return home


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    admin = os.environ.get("VALUETUNE_TEST_POSTGRES_URL")
    if not admin:
        if os.environ.get("VALUETUNE_REQUIRE_POSTGRES") == "1":
            pytest.fail("VALUETUNE_REQUIRE_POSTGRES=1 but VALUETUNE_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server (set VALUETUNE_TEST_POSTGRES_URL)")
    name = f"vt_test_{secrets.token_hex(6)}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    for attempt in range(5):
        # CREATE DATABASE copies template1 and fails if another session is briefly
        # connected to it ("source database is being accessed by other users"): retry.
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            break
        except OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.5)
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'valuetune.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database.open(db_url)
    yield db
    db.dispose()


@pytest.fixture
def store(database: Database) -> SurveyStore:
    return SurveyStore(database)


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    """An issuer's key ring in a fresh directory."""
    return KeyRing.open(tmp_path / "issuer")


@pytest.fixture
def tokens(database: Database) -> TokenStore:
    """Token bookkeeping on the test's database (each backend)."""
    return TokenStore(database)


@pytest.fixture(scope="session")
def embedded_tokenizer() -> Any:
    """The embedded model's tokenizer (with its chat template), loaded once per run."""
    transformers = pytest.importorskip("transformers")
    from valuetune.llm.embedded import embedded_gguf

    gguf = embedded_gguf()
    return transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


@pytest.fixture(scope="session")
def make_tiny_llama(embedded_tokenizer: Any) -> Callable[..., Any]:
    """Build a tiny random Llama over the embedded tokenizer: real mechanics, in milliseconds."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    def build(layers: int = 4, *, tie_embeddings: bool = False, seed: int = 0) -> Any:
        torch.manual_seed(seed)
        config = transformers.LlamaConfig(
            vocab_size=len(embedded_tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            tie_word_embeddings=tie_embeddings,
        )
        return transformers.LlamaForCausalLM(config)

    return build


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="session")
def make_adapter() -> Callable[..., Path]:
    """Write a PEFT LoRA artifact with random weights, as `valuetune tune` stores one."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    import copy

    from valuetune.tune.artifacts import (
        jti_hash,
        model_fingerprint,
        write_metadata,
        writing_artifact,
    )

    def make_adapter(
        folder: Path,
        backend: Any,
        jti: str,
        *,
        seed: int,
        kind: str = "alignment/dpo",
        layers: tuple[int, ...] = (0, 1),
        **config: Any,
    ) -> Path:
        """A PEFT LoRA adapter with random (non-zero) weights, as `valuetune tune` stores one."""
        torch.manual_seed(seed)
        lora = peft.LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=LORA_TARGETS,
            layers_to_transform=list(layers),
            init_lora_weights=False,
            **config,
        )
        model = peft.get_peft_model(copy.deepcopy(backend.model), lora)
        with writing_artifact(folder) as work:
            model.save_pretrained(str(work))
            write_metadata(
                work,
                kind,
                method=kind.split("/")[1],
                token_jti_hash=jti_hash(jti),
                base_model="tiny",
                base_model_sha256=model_fingerprint(backend),
            )
        return folder

    return make_adapter


@dataclass
class ServerParts:
    """What an API server is built from, on a real SQLite file: tests add the host."""

    home: Path
    database: Database
    store: TokenStore
    tokens: Any
    aliases: Any
    keys: Any
    gate: Any

    def app(self, host: Any, upstream: Any = None, web: Any = None) -> Any:
        from valuetune.server.app import create_app
        from valuetune.settings import Settings

        return create_app(Settings(home=self.home), host, self.gate, upstream, web)

    def web(self, **overrides: Any) -> Any:
        """The web pages' services on the same database and keys (survey kept short)."""
        from valuetune.server.web.rendering import WebServices
        from valuetune.server.web.visitor import Signer
        from valuetune.store.admin import AdminStore
        from valuetune.store.demographics import DemographicsStore
        from valuetune.store.survey import SurveyStore
        from valuetune.values.items import load_item_bank
        from valuetune.values.survey import SurveyConfig

        parts: dict[str, Any] = {
            "survey": SurveyStore(self.database),
            "demographics": DemographicsStore(self.database),
            "tokens": self.tokens,
            "token_store": self.store,
            "aliases": self.aliases,
            "admin": AdminStore(self.database),
            "signer": Signer(KeyRing.open(self.home).secret("session")),
            "bank": load_item_bank(),
            "survey_config": SurveyConfig(max_value_items=8, max_style_items=2),
        }
        return WebServices(**{**parts, **overrides})


@pytest.fixture
def server_parts(tmp_path: Path) -> Iterator[ServerParts]:
    """Tokens, aliases (no floor), API keys and a gate whose rate-limit windows never roll
    over mid-test."""
    from valuetune.server.auth import Gate
    from valuetune.store.apikeys import ApiKeyStore
    from valuetune.token.alias import AliasService
    from valuetune.token.tokens import TokenService

    database = Database.open(f"sqlite:///{tmp_path / 'server.sqlite3'}")
    ring = KeyRing.open(tmp_path / "home")
    store = TokenStore(database)
    wall = lambda: 1_000_000.0  # noqa: E731
    keys = ApiKeyStore(database)
    yield ServerParts(
        tmp_path / "home",
        database,
        store,
        TokenService(ring, store),
        AliasService(store, ring.alias_key(), floor_seconds=0, wall=wall),
        keys,
        Gate(keys, store, wall=wall),
    )
    database.dispose()
