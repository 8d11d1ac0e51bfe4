"""`valuetune apikey create|list|revoke`: keys for the API server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from valuetune.cli.common import JSON_OPTION, emit_json, state

if TYPE_CHECKING:
    from valuetune.store.apikeys import ApiKeyStore

app = typer.Typer(help="API keys for `valuetune serve`.", no_args_is_help=True)


def _keys(ctx: typer.Context) -> ApiKeyStore:
    from valuetune.store.apikeys import ApiKeyStore

    return ApiKeyStore(state(ctx).database())


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="What the key is for (shown in lists)."),
    per_minute: int = typer.Option(60, "--per-minute", min=1, help="Requests a minute."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a key. It is printed once and stored only as a digest: keep it now."""
    record, key = _keys(ctx).create(name, per_minute)
    if as_json:
        emit_json({**record.to_dict(), "key": key})
        return
    typer.echo(key)
    typer.echo(
        f"API key {record.id} ({record.name}, {record.per_minute}/min). It will not be shown "
        "again. Once any key exists, every request to `valuetune serve` needs one.",
        err=True,
    )


@app.command("list")
def list_keys(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """The keys: id, name, rate limit, when created and revoked (never the key)."""
    keys = _keys(ctx).list()
    if as_json:
        emit_json([k.to_dict() for k in keys])
        return
    if not keys:
        typer.echo("no API keys: on loopback, requests need none")
    for k in keys:
        status = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        typer.echo(
            f"{k.id}  {k.name}  {k.per_minute}/min  created {k.created_at:%Y-%m-%d}  {status}"
        )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., help="The key's id (from `apikey list`)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    record = _keys(ctx).revoke(key_id)
    if as_json:
        emit_json(record.to_dict())
    else:
        typer.echo(f"revoked API key {record.id} ({record.name})")
