"""`valuetune simulate`: how fast the adaptive survey recovers simulated respondents' values."""

from __future__ import annotations

import typer
from rich.table import Table

from valuetune.cli.common import JSON_OPTION, console, emit_json


def simulate_command(
    respondents: int = typer.Option(200, "--respondents", min=1, help="Simulated respondents."),
    max_items: int = typer.Option(40, "--max-items", min=1, help="Largest item count to evaluate."),
    seed: int = typer.Option(0, "--seed", help="Random seed (results are reproducible)."),
    persona_share: float = typer.Option(
        0.5, "--persona-share", min=0.0, max=1.0, help="Share of respondents drawn around personas."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Compare adaptive, random-order and full-bank surveys on simulated respondents."""
    from valuetune.values.items import load_item_bank
    from valuetune.values.simulate import SimulationConfig, simulate

    config = SimulationConfig(
        respondents=respondents, max_items=max_items, seed=seed, persona_share=persona_share
    )
    doc = simulate(load_item_bank(), config)
    if as_json:
        emit_json(doc)
        return
    table = Table(title=f"Recovery of value profiles ({respondents} simulated respondents)")
    for col in ("items", "adaptive r", "random r", "adaptive RMSE", "random RMSE"):
        table.add_column(col, justify="right")
    for count, adaptive in doc["adaptive"].items():
        random = doc["random"][count]
        table.add_row(
            count,
            f"{adaptive['r']:.3f}",
            f"{random['r']:.3f}",
            f"{adaptive['rmse']:.3f}",
            f"{random['rmse']:.3f}",
        )
    full = doc["full"]
    n_items = doc["config"]["value_items_in_bank"]
    table.add_row(f"full ({n_items})", f"{full['r']:.3f}", "", f"{full['rmse']:.3f}", "")
    console().print(table)
