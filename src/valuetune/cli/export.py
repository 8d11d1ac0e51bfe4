"""`valuetune export vllm`: a token holder's adapters in the layout vLLM serves."""

from __future__ import annotations

from pathlib import Path

import typer

from valuetune.cli.common import JSON_OPTION, emit_json, read_secret_argument, state
from valuetune.cli.serve import EMBEDDED_NAME
from valuetune.errors import ValuetuneError

app = typer.Typer(help="Hand artifacts to other serving systems.", no_args_is_help=True)


@app.command("vllm")
def vllm(
    ctx: typer.Context,
    token: str = typer.Option(..., "--token", help="A preference token, or - for stdin."),
    out: Path = typer.Option(..., "--out", help="Directory for the adapters (created)."),
    model: str = typer.Option(
        "embedded", "--model", help="`embedded` or the local model directory they were made for."
    ),
    name: str = typer.Option(
        EMBEDDED_NAME, "--served-model-name", help="The base model's name on the vLLM server."
    ),
    artifacts: list[Path] | None = typer.Option(
        None, "--artifacts", help="Another directory of artifacts to search (repeatable)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Export the holder's LoRA adapters for `vllm serve --enable-lora` and print the command.

    Point `valuetune serve --upstream` at that vLLM server: it resolves tokens and asks
    vLLM for each holder's adapter by the module name written here.
    """
    from valuetune.llm.embedded import cached_model_dir
    from valuetune.tune.artifacts import directory_fingerprint, jti_hash
    from valuetune.tune.catalog import ArtifactCatalog
    from valuetune.tune.export import export_adapter, vllm_command

    cli = state(ctx)
    verified = cli.tokens().verify(read_secret_argument(token))
    if model == "embedded":
        base = cached_model_dir(cli.settings.home)
    elif Path(model).is_dir():
        base = Path(model).resolve()
    else:
        raise ValuetuneError(f"--model {model}: not `embedded` and not a model directory")
    catalog = ArtifactCatalog([cli.settings.artifacts, *(artifacts or [])])
    entries = [
        e
        for e in catalog.for_holder(jti_hash(verified.jti), directory_fingerprint(str(base)))
        if e.is_adapter
    ]
    if not entries:
        raise ValuetuneError(
            "this token has no LoRA adapter for that model; build one with "
            "`valuetune tune --token T --method dpo` (or soup), then export again"
        )
    exported = [export_adapter(entry, out.resolve()) for entry in entries]
    command = vllm_command(str(base), name, exported)
    if as_json:
        emit_json(
            {
                "base_model": str(base),
                "served_model_name": name,
                "adapters": [
                    {"name": a.name, "path": str(a.path), "method": a.method, "rank": a.rank}
                    for a in exported
                ],
                "command": command,
            }
        )
        return
    for adapter in exported:
        typer.echo(f"{adapter.name} ({adapter.method}, rank {adapter.rank}) -> {adapter.path}")
    typer.echo(command)
