"""Root of the `valuetune` CLI: settings, error handling, and the command groups."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from valuetune import __version__
from valuetune.cli import (
    admin,
    alias,
    apikey,
    db,
    export,
    keys,
    personas,
    precis,
    profile,
    serve,
    simulate,
    survey,
    tokens,
    tune,
)
from valuetune.cli.common import CliState
from valuetune.errors import ValuetuneError
from valuetune.settings import Settings


class ValuetuneGroup(TyperGroup):
    """Turns `ValuetuneError` into a one-line message on stderr and a non-zero exit."""

    def invoke(self, ctx: Any) -> Any:  # typer types it with its vendored click Context
        try:
            return super().invoke(ctx)
        except ValuetuneError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=ValuetuneGroup,
    name="valuetune",
    help="Personal value alignment: measure what you value, then align models to it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"valuetune {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Data directory (default: the user data dir; env VALUETUNE_HOME)."
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="Database URL (default: SQLite under home; env VALUETUNE_DATABASE_URL).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    overrides: dict[str, Any] = {}
    if home is not None:
        overrides["home"] = home
    if database_url is not None:
        overrides["database_url"] = database_url
    ctx.obj = CliState(Settings(**overrides))


app.command("survey")(survey.survey)
app.command("simulate")(simulate.simulate_command)
app.add_typer(personas.app, name="personas")
app.add_typer(profile.app, name="profile")
app.add_typer(db.app, name="db")
app.add_typer(tokens.app, name="token")
app.add_typer(keys.app, name="keys")
app.add_typer(alias.app, name="alias")
app.command("precis")(precis.precis_command)
app.add_typer(tune.data_app, name="data")
app.command("tune")(tune.tune_command)
app.command("eval")(tune.eval_command)
app.command("compare")(tune.compare_command)
app.add_typer(tune.soup_app, name="soup")
app.command("serve")(serve.serve_command)
app.add_typer(apikey.app, name="apikey")
app.add_typer(export.app, name="export")
app.add_typer(admin.app, name="admin")


def run() -> None:
    """Console-script entry point: no traceback reaches a user unless they ask for it."""
    try:
        app()
    except Exception as exc:  # anything not a ValuetuneError is a bug in valuetune
        if os.environ.get("VALUETUNE_DEBUG"):
            raise
        print(
            f"valuetune: unexpected error: {exc!r}. This is a bug; "
            "rerun with VALUETUNE_DEBUG=1 for a traceback and report it.",
            file=sys.stderr,
        )
        sys.exit(70)
