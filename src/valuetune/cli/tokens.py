"""`valuetune token`: mint, verify, show and revoke preference tokens."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from valuetune.cli.common import JSON_OPTION, emit_json, read_secret_argument, state
from valuetune.errors import ValuetuneError

if TYPE_CHECKING:
    from valuetune.token.tokens import MintedToken, VerifiedToken

app = typer.Typer(help="Preference tokens: signed, private, revocable.", no_args_is_help=True)

TOKEN_ARG = typer.Argument(..., help="The token, or - to read it from stdin.")


def _minted_doc(minted: MintedToken) -> dict[str, Any]:
    return {
        "token": minted.token,
        "jti": minted.jti,
        "sub": minted.sub,
        "kid": minted.kid,
        "issued_at": minted.issued_at.isoformat(),
        "expires_at": minted.expires_at.isoformat(),
        "length": len(minted.token),
    }


def _verified_doc(verified: VerifiedToken) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "jti": verified.jti,
        "sub": verified.sub,
        "kid": verified.kid,
        "purpose": verified.purpose,
        "issued_at": verified.issued_at.isoformat(),
        "expires_at": verified.expires_at.isoformat(),
    }
    if verified.purpose == "reference":
        doc["ref"] = verified.claims.get("ref")
    else:
        doc["profile"] = verified.profile().to_dict()
    return doc


def _read_profile_file(path: str) -> Any:
    from valuetune.values.profile import ValueProfile

    try:
        text = typer.get_text_stream("stdin").read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise ValuetuneError(f"cannot read profile file {path}: {exc.strerror}") from None
    return ValueProfile.from_json(text)


@app.command("mint")
def mint(
    ctx: typer.Context,
    profile: str | None = typer.Option(
        None,
        "--profile",
        help="Canonical profile JSON file (as `personas show NAME --json` prints), or -.",
    ),
    respondent: str | None = typer.Option(None, "--respondent", help="A stored respondent's id."),
    ttl_days: int = typer.Option(365, "--ttl-days", min=1, max=3650, help="Lifetime in days."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Mint a preference token (v4.local: only this issuer can read or change it)."""
    if (profile is None) == (respondent is None):
        raise ValuetuneError("give exactly one of --profile FILE or --respondent ID")
    cli = state(ctx)
    if respondent is not None:
        value_profile = cli.store().profile(respondent)
        sub = cli.token_store().subject_for_respondent(respondent)
    else:
        assert profile is not None
        value_profile, sub = _read_profile_file(profile), None
    minted = cli.tokens().mint(value_profile, sub=sub, ttl=timedelta(days=ttl_days))
    if as_json:
        emit_json(_minted_doc(minted))
    else:
        typer.echo(minted.token)


@app.command("verify")
def verify(
    ctx: typer.Context,
    token: str = TOKEN_ARG,
    purpose: str = typer.Option("preference", "--purpose", help="preference, share or reference."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Verify a token and print what it carries; exit 3 with the reason if it is refused."""
    from valuetune.cli.common import console
    from valuetune.cli.render import print_profile
    from valuetune.token.tokens import PURPOSES

    if purpose not in PURPOSES:
        raise ValuetuneError(f"--purpose must be one of {', '.join(PURPOSES)}")
    verified = state(ctx).tokens().verify(read_secret_argument(token), purpose)
    if as_json:
        emit_json(_verified_doc(verified))
        return
    out = console()
    out.print(
        f"valid {verified.purpose} token {verified.jti}, expires {verified.expires_at:%Y-%m-%d}"
    )
    if verified.purpose != "reference":
        print_profile(out, verified.profile())


def _jti_of(ctx: typer.Context, token_or_jti: str) -> str:
    """A jti from a jti, or from a token this issuer can authenticate (any purpose).

    A revoked or expired token still names its jti: showing or revoking it must work.
    """
    if not token_or_jti.startswith("v4."):
        return token_or_jti
    return state(ctx).tokens().identify(token_or_jti).jti


@app.command("show")
def show(
    ctx: typer.Context,
    token_or_jti: str = typer.Argument(..., help="A token, a token's jti, or - for stdin."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show what was issued (purpose, key, dates, status) without printing any values."""
    from datetime import UTC, datetime

    issued = state(ctx).token_store().issued(_jti_of(ctx, read_secret_argument(token_or_jti)))
    status = "active"
    if issued.subject_erased:
        status = "erased"
    elif issued.revoked_at is not None:
        status = "revoked"
    elif issued.expires_at <= datetime.now(UTC):
        status = "expired"
    doc = {
        "jti": issued.jti,
        "sub": issued.sub,
        "purpose": issued.purpose,
        "kid": issued.kid,
        "issued_at": issued.issued_at.isoformat(),
        "expires_at": issued.expires_at.isoformat(),
        "revoked_at": issued.revoked_at.isoformat() if issued.revoked_at else None,
        "status": status,
    }
    if as_json:
        emit_json(doc)
    else:
        for key, val in doc.items():
            typer.echo(f"{key}: {val}")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_or_jti: str = typer.Argument(..., help="A token, a token's jti, or - for stdin."),
    everything: bool = typer.Option(
        False, "--all", help="Revoke every token of this token's holder issued until now."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a token by the jti inside it (or all its holder's tokens); refused from now on."""
    store = state(ctx).token_store()
    issued = store.revoke(_jti_of(ctx, read_secret_argument(token_or_jti)))
    if everything:
        store.revoke_subject(issued.sub)
    if as_json:
        revoked_at = issued.revoked_at.isoformat() if issued.revoked_at else None
        emit_json({"jti": issued.jti, "revoked_at": revoked_at, "all_of_subject": everything})
    else:
        typer.echo(
            f"revoked {issued.jti}"
            + (" and every earlier token of its holder" if everything else "")
        )


@app.command("reference")
def reference(ctx: typer.Context, token: str = TOKEN_ARG, as_json: bool = JSON_OPTION) -> None:
    """Mint a v4.public reference token: verifiable offline by anyone, carries no values."""
    service = state(ctx).tokens()
    minted = service.mint_reference(service.verify(read_secret_argument(token)))
    if as_json:
        emit_json(_minted_doc(minted))
    else:
        typer.echo(minted.token)
