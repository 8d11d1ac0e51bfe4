"""`valuetune db`: where the data lives and which schema revision it is at."""

from __future__ import annotations

import typer

from valuetune.cli.common import JSON_OPTION, emit_json, state

app = typer.Typer(help="Database status and migrations.", no_args_is_help=True)


@app.command("status")
def status(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show the database in use, its schema revision, and how many respondents it holds."""
    store = state(ctx).store()
    doc = {
        "database": store.db.display_url,
        "backend": store.db.url.get_backend_name(),
        "revision": store.db.revision(),
        "head": store.db.head(),
        "respondents": len(store.respondents()),
    }
    if as_json:
        emit_json(doc)
    else:
        for key, value in doc.items():
            typer.echo(f"{key}: {value}")


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations (every command does this on open; this only reports it)."""
    store = state(ctx).store()
    typer.echo(f"{store.db.display_url} is at revision {store.db.revision()}")
