"""`valuetune precis`: the plain-language précis of a token or alias."""

from __future__ import annotations

import json

import typer

from valuetune.cli.common import JSON_OPTION, emit_json, read_secret_argument, state
from valuetune.errors import NotFoundError, ValuetuneError


def precis_command(
    ctx: typer.Context,
    token_or_alias: str = typer.Argument(..., help="A preference token, an alias, or -."),
    length: str = typer.Option("medium", "--length", help="short, medium or long."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the précis: guidance an assistant can take as a custom instruction."""
    from valuetune.token.precis import PrecisLength, write_precis

    value = read_secret_argument(token_or_alias)
    try:
        chosen = PrecisLength(length.lower())
    except ValueError:
        raise ValuetuneError("--length must be short, medium or long") from None
    cli = state(ctx)
    if value.startswith("v4."):
        text = write_precis(cli.tokens().verify(value).profile(), chosen)
    else:
        resolution = cli.aliases().resolve(value, "cli")
        if not resolution.found or resolution.content is None:
            raise NotFoundError(f"alias {resolution.alias} does not resolve (unknown or revoked)")
        if resolution.share == "precis":
            text = json.loads(resolution.content)[chosen.value]
        else:
            text = write_precis(cli.tokens().verify(resolution.content, "share").profile(), chosen)
    if as_json:
        emit_json({"precis": text, "length": chosen.value})
    else:
        typer.echo(text)
