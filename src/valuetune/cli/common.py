"""What every command group shares: settings in the Typer context, JSON output, the store."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from valuetune.settings import Settings

if TYPE_CHECKING:
    from valuetune.store import Database, SurveyStore
    from valuetune.store.tokens import TokenStore
    from valuetune.token.alias import AliasService
    from valuetune.token.keys import KeyRing
    from valuetune.token.tokens import TokenService


@dataclass
class CliState:
    """Built once per invocation by the root callback; commands read it from the context."""

    settings: Settings
    _db: Database | None = field(default=None, init=False)
    _ring: KeyRing | None = field(default=None, init=False)

    def database(self) -> Database:
        if self._db is None:
            from valuetune.store import Database

            self._db = Database.open(self.settings.resolved_database_url())
        return self._db

    def store(self) -> SurveyStore:
        from valuetune.store import SurveyStore

        return SurveyStore(self.database())

    def token_store(self) -> TokenStore:
        from valuetune.store.tokens import TokenStore

        return TokenStore(self.database())

    def key_ring(self) -> KeyRing:
        if self._ring is None:
            from valuetune.token.keys import KeyRing

            self._ring = KeyRing.open(self.settings.home)
        return self._ring

    def tokens(self) -> TokenService:
        from valuetune.token.tokens import TokenService

        return TokenService(self.key_ring(), self.token_store())

    def aliases(self) -> AliasService:
        from valuetune.token.alias import AliasService

        return AliasService(self.token_store(), self.key_ring().alias_key())


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState), "root callback did not run"
    return obj


def emit_json(doc: Any) -> None:
    """Print one JSON document to stdout (the `--json` contract)."""
    sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")


def emit_raw_json(text: str) -> None:
    """Print an already-canonical JSON document unchanged."""
    sys.stdout.write(text + "\n")


def console(*, to_stderr: bool = False) -> Console:
    return Console(stderr=to_stderr, highlight=False, soft_wrap=False)


JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document to stdout.")


def read_secret_argument(value: str) -> str:
    """A token or alias given on the command line, or `-` to read it from stdin.

    Reading from stdin keeps tokens out of shell history and process listings.
    """
    text = sys.stdin.readline() if value == "-" else value
    return text.strip()
