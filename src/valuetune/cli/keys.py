"""`valuetune keys`: the issuer's key ring."""

from __future__ import annotations

import typer

from valuetune.cli.common import JSON_OPTION, emit_json, state
from valuetune.errors import ValuetuneError

app = typer.Typer(help="Token keys: list and rotate.", no_args_is_help=True)


@app.command("list")
def list_keys(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List keys (ids, kinds, which are current); public keys with their PASERK."""
    entries = state(ctx).key_ring().entries()
    doc = [
        {
            "kid": e.kid,
            "footer_id": e.short_id,
            "kind": e.kind,
            "created": e.created,
            "current": e.current,
            "public_paserk": e.public_paserk,
        }
        for e in entries
    ]
    if as_json:
        emit_json(doc)
        return
    for e in entries:
        mark = "current " if e.current else "previous"
        typer.echo(f"{mark} {e.kind:6} {e.kid} (footer {e.short_id}) created {e.created}")
        if e.public_paserk:
            typer.echo(f"         public key: {e.public_paserk}")


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    kind: str = typer.Option("local", "--kind", help="local (preference tokens) or public."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Make a new current key; tokens under earlier keys keep verifying."""
    if kind not in ("local", "public"):
        raise ValuetuneError("--kind must be local or public")
    entry = state(ctx).key_ring().rotate("local" if kind == "local" else "public")
    if as_json:
        emit_json(
            {
                "kid": entry.kid,
                "footer_id": entry.short_id,
                "kind": entry.kind,
                "created": entry.created,
            }
        )
    else:
        typer.echo(f"new current {entry.kind} key {entry.kid}")


@app.command("retire")
def retire(
    ctx: typer.Context,
    kid: str = typer.Argument(
        ..., help="Key id: the full PASERK id, or the footer id (after --, if it starts with -)."
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Remove a previous key (e.g. one that leaked): its tokens are refused from now on."""
    if not yes:
        typer.confirm(f"Retire key {kid}? Every token made with it stops working.", abort=True)
    entry = state(ctx).key_ring().retire(kid)
    typer.echo(f"retired {entry.kind} key {entry.kid}")
