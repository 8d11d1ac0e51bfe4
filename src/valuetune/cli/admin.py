"""`valuetune admin password|totp`: the web dashboard's administrator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from valuetune.cli.common import state

if TYPE_CHECKING:
    from valuetune.store.admin import AdminStore

app = typer.Typer(help="The web dashboard's administrator.", no_args_is_help=True)
USERNAME = typer.Option("admin", "--username", help="The administrator's name.")


def _admins(ctx: typer.Context) -> AdminStore:
    from valuetune.store.admin import AdminStore

    return AdminStore(state(ctx).database())


@app.command("password")
def password(ctx: typer.Context, username: str = USERNAME) -> None:
    """Set the administrator's password (asked twice, never echoed); ends their sessions."""
    chosen = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    _admins(ctx).set_password(username, chosen)
    typer.echo(f"password set for {username}; their open sessions are signed out", err=True)


@app.command("totp")
def totp(
    ctx: typer.Context,
    enable: bool = typer.Option(..., "--enable/--disable", help="Require a TOTP code or not."),
    username: str = USERNAME,
) -> None:
    """Require a one-time code from an authenticator app at sign-in (or stop requiring it)."""
    secret = _admins(ctx).set_totp(username, enable)
    if secret is None:
        typer.echo(f"TOTP is off for {username}", err=True)
        return
    typer.echo(secret)
    typer.echo(
        f"Add this secret to an authenticator app (or open otpauth://totp/valuetune:{username}"
        f"?secret={secret}&issuer=valuetune). It is shown only now.",
        err=True,
    )
