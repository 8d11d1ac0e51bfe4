"""`valuetune alias`: memorable word aliases for what a token holder chooses to share."""

from __future__ import annotations

import typer

from valuetune.cli.common import JSON_OPTION, emit_json, read_secret_argument, state
from valuetune.errors import NotFoundError, ValuetuneError

app = typer.Typer(help="Word aliases: create, resolve, rotate, revoke.", no_args_is_help=True)

CLIENT = "cli"  # the rate-limit bucket for local resolutions


@app.command("create")
def create(
    ctx: typer.Context,
    token: str = typer.Option(..., "--token", help="Your preference token, or - for stdin."),
    share: str = typer.Option(
        "precis",
        "--share",
        help="What the alias gives out: precis (text) or token (a share token).",
    ),
    words: int = typer.Option(4, "--words", min=3, max=6, help="Words in the alias."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an alias that resolves only to what you chose to share."""
    from valuetune.token.alias import precis_content
    from valuetune.token.precis import PrecisLength, write_precis

    cli = state(ctx)
    service = cli.tokens()
    verified = service.verify(read_secret_argument(token))
    if share == "precis":
        profile = verified.profile()
        content = precis_content(
            {length.value: write_precis(profile, length) for length in PrecisLength}
        )
        alias = cli.aliases().create(verified.sub, "precis", content, words)
    elif share == "token":
        shared = service.mint_share(verified)
        alias = cli.aliases().create(verified.sub, "token", shared.token, words)
    else:
        raise ValuetuneError("--share must be precis or token")
    if as_json:
        emit_json({"alias": alias, "share": share})
    else:
        typer.echo(alias)


@app.command("resolve")
def resolve(
    ctx: typer.Context,
    alias: str = typer.Argument(..., help="The alias words (any case and separators), or -."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Resolve an alias to what its holder shares (the same answer shape for a miss)."""
    resolution = state(ctx).aliases().resolve(read_secret_argument(alias), CLIENT)
    if as_json:
        emit_json(resolution.to_dict())
        if not resolution.found:
            raise typer.Exit(1)
        return
    if not resolution.found:
        raise NotFoundError(f"alias {resolution.alias} does not resolve (unknown or revoked)")
    if resolution.share == "precis":
        import json

        assert resolution.content is not None
        typer.echo(json.loads(resolution.content)["medium"])
    else:
        typer.echo(resolution.content)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    alias: str = typer.Argument(..., help="The alias to replace, or -."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Replace an alias by a new one; the old one stops resolving."""
    new = state(ctx).aliases().rotate(read_secret_argument(alias))
    if as_json:
        emit_json({"alias": new})
    else:
        typer.echo(new)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    alias: str = typer.Argument(..., help="The alias to revoke, or -."),
) -> None:
    """Revoke an alias and delete what it shared."""
    if not state(ctx).aliases().revoke(read_secret_argument(alias)):
        raise NotFoundError("no such alias")
    typer.echo("alias revoked")
