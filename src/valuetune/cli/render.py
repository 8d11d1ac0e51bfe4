"""Rich renderings of profiles for the terminal (shared by survey, profile and personas)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from valuetune.values.personas import nearest_personas
from valuetune.values.profile import ValueProfile


def _bar(value: float, width: int = 10) -> str:
    """A centred bar: left of | leans to the low pole, right to the high pole."""
    filled = min(width, round(abs(value) / 2.5 * width))
    left = " " * (width - filled) + "█" * filled if value < 0 else " " * width
    right = "█" * filled + " " * (width - filled) if value > 0 else " " * width
    return f"{left}|{right}"


def profile_tables(profile: ValueProfile) -> list[Table]:
    axes = profile.axes
    values = Table(title="Values (latent scale: 0 = population centre, ±1 = one SD)", expand=False)
    for col in ("axis", "low pole", "", "high pole", "estimate"):
        values.add_column(col, justify="right" if col == "estimate" else "left")
    order = sorted(range(len(axes.value_axes)), key=lambda i: -abs(profile.values[i]))
    for i in order:
        axis = axes.value_axes[i]
        est, se = profile.values[i], profile.values_se[i]
        values.add_row(axis.name, axis.low, _bar(est), axis.high, f"{est:+.2f} ± {se:.2f}")
    style = Table(title="Style preferences", expand=False)
    for col in ("dimension", "low pole", "", "high pole", "estimate"):
        style.add_column(col, justify="right" if col == "estimate" else "left")
    for dim, est, se in zip(axes.style, profile.style, profile.style_se, strict=True):
        style.add_row(dim.name, dim.low, _bar(est), dim.high, f"{est:+.2f} ± {se:.2f}")
    return [values, style]


def print_profile(console: Console, profile: ValueProfile, *, personas: bool = True) -> None:
    for table in profile_tables(profile):
        console.print(table)
    axes = profile.axes
    if profile.boundaries:
        console.print("[bold]Boundaries[/bold] (an assistant should):")
        for boundary_id in sorted(profile.boundaries):
            console.print(f"  • {axes.boundary(boundary_id).instruction}")
    else:
        console.print("[bold]Boundaries:[/bold] none chosen")
    if personas:
        console.print("[bold]Nearest personas:[/bold]")
        for persona, distance in nearest_personas(profile, 3):
            console.print(
                f"  • {persona.name} ({persona.id}), distance {distance:.2f}: {persona.summary}"
            )
