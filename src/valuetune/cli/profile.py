"""`valuetune profile`: stored respondents' profiles, clusters and deletion."""

from __future__ import annotations

import typer
from rich.table import Table

from valuetune.cli.common import JSON_OPTION, console, emit_json, emit_raw_json, state

app = typer.Typer(help="Stored respondents and their profiles.", no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    respondent: str | None = typer.Argument(None, help="Respondent id (default: the latest)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a stored profile; with --json, as canonical profile JSON."""
    from valuetune.cli.render import print_profile

    store = state(ctx).store()
    respondent_id = respondent or store.latest_respondent()
    profile = store.profile(respondent_id)
    if as_json:
        emit_raw_json(profile.to_json())
        return
    out = console()
    out.print(f"[bold]Respondent {respondent_id}[/bold]")
    print_profile(out, profile)


@app.command("list")
def list_respondents(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List stored respondents (ids, answer counts, completion)."""
    rows = state(ctx).store().respondents()
    if as_json:
        emit_json(
            [
                {
                    "id": r.id,
                    "schema": r.schema,
                    "answers": r.answers,
                    "created_at": r.created_at.isoformat(),
                    "completed_at": r.completed_at.isoformat() if r.completed_at else None,
                }
                for r in rows
            ]
        )
        return
    table = Table(title=f"{len(rows)} respondents")
    for col in ("id", "answers", "complete", "created"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.id,
            str(r.answers),
            "yes" if r.completed_at else "no",
            r.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console().print(table)


@app.command("clusters")
def clusters(
    ctx: typer.Context,
    k: int | None = typer.Option(
        None, "--k", min=1, help="Number of groups (default: chosen by silhouette)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for k-means++ initialisation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Group completed respondents by their values; name each group by its nearest persona."""
    from valuetune.errors import ValuetuneError
    from valuetune.values.clusters import cluster_profiles

    profiles = state(ctx).store().profiles()
    if len(profiles) < 2:
        raise ValuetuneError(
            f"clustering needs at least two completed profiles, found {len(profiles)}"
        )
    try:
        result = cluster_profiles(profiles, k, seed=seed)
    except ValueError as exc:
        raise ValuetuneError(str(exc)) from None
    doc = {
        "k": result.k,
        "silhouette": round(result.silhouette, 4),
        "clusters": [
            {
                "size": len(c.members),
                "members": list(c.members),
                "nearest_persona": c.nearest_persona.id,
                "persona_distance": round(c.persona_distance, 3),
                "centroid": c.centroid.to_dict(),
            }
            for c in result.clusters
        ],
    }
    if as_json:
        emit_json(doc)
        return
    table = Table(title=f"{result.k} groups (silhouette {result.silhouette:.2f})")
    for col in ("size", "nearest persona", "distance", "strongest values"):
        table.add_column(col)
    for c in result.clusters:
        strongest = ", ".join(f"{a} {v:+.1f}" for a, v in c.centroid.strongest(3))
        table.add_row(
            str(len(c.members)), c.nearest_persona.name, f"{c.persona_distance:.2f}", strongest
        )
    console().print(table)


@app.command("delete")
def delete(
    ctx: typer.Context,
    respondent: str = typer.Argument(..., help="Respondent id."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Erase a respondent: every answer and the profile."""
    if not yes:
        typer.confirm(f"Erase respondent {respondent} and all their answers?", abort=True)
    state(ctx).store().delete_respondent(respondent)
    typer.echo(f"erased respondent {respondent}")
