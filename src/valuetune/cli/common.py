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
    from valuetune.store import SurveyStore


@dataclass
class CliState:
    """Built once per invocation by the root callback; commands read it from the context."""

    settings: Settings
    _store: SurveyStore | None = field(default=None, init=False)

    def store(self) -> SurveyStore:
        if self._store is None:
            from valuetune.store import Database, SurveyStore

            self._store = SurveyStore(Database.open(self.settings.resolved_database_url()))
        return self._store


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
