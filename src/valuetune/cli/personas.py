"""`valuetune personas`: the exemplar personas."""

from __future__ import annotations

import typer
from rich.table import Table

from valuetune.cli.common import JSON_OPTION, console, emit_json, emit_raw_json

app = typer.Typer(
    help="Exemplar personas spanning cultures, faiths and the political spectrum.",
    no_args_is_help=True,
)


@app.command("list")
def list_personas(as_json: bool = JSON_OPTION) -> None:
    """List the built-in personas."""
    from valuetune.values.personas import load_personas

    personas = load_personas()
    if as_json:
        emit_json([{"id": p.id, "name": p.name, "summary": p.summary} for p in personas])
        return
    table = Table(title=f"{len(personas)} personas")
    table.add_column("id")
    table.add_column("name")
    table.add_column("summary")
    for p in personas:
        table.add_row(p.id, p.name, p.summary)
    console().print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Persona id, e.g. secular-humanist."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a persona; with --json, its profile as canonical JSON (usable as a profile FILE)."""
    from valuetune.cli.render import print_profile
    from valuetune.values.personas import get_persona

    persona = get_persona(name)
    if as_json:
        emit_raw_json(persona.profile.to_json())
        return
    out = console()
    out.print(f"[bold]{persona.name}[/bold] ({persona.id})")
    out.print(persona.description)
    print_profile(out, persona.profile, personas=False)
