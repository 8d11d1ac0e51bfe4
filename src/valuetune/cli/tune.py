"""`valuetune data build`, `valuetune tune` and `valuetune eval`: align a model to a token."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from valuetune.cli.common import JSON_OPTION, emit_json, read_secret_argument, state

if TYPE_CHECKING:
    from valuetune.llm.local import TransformersBackend
    from valuetune.token.tokens import VerifiedToken
    from valuetune.tune.methods import MethodRegistry, TuneRequest
    from valuetune.tune.scenarios import ScenarioBank

data_app = typer.Typer(help="Personal preference data.", no_args_is_help=True)

TOKEN_OPTION = typer.Option(..., "--token", help="A preference token, or - for stdin.")
MODEL_OPTION = typer.Option(
    "embedded", "--model", help="`embedded` (SmolLM2-135M-Instruct) or a local model directory."
)


def methods() -> MethodRegistry:
    """The built-in alignment methods, registered like third-party ones would be."""
    from valuetune.tune.dpo import DPOMethod
    from valuetune.tune.methods import MethodRegistry
    from valuetune.tune.precis import PrecisMethod
    from valuetune.tune.steer import SteerMethod

    registry = MethodRegistry()
    registry.register(PrecisMethod())
    registry.register(SteerMethod())
    registry.register(DPOMethod())
    return registry


@contextmanager
def _cancel_on_interrupt() -> Iterator[threading.Event]:
    """Ctrl-C asks training to checkpoint and stop; a second Ctrl-C stops at once."""
    cancel = threading.Event()

    def ask(_signum: int, _frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        typer.echo("stopping after this step (Ctrl-C again to stop now)...", err=True)

    if threading.current_thread() is not threading.main_thread():
        yield cancel  # signals reach only the main thread (e.g. under a test runner)
        return
    previous = signal.signal(signal.SIGINT, ask)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def _verified(ctx: typer.Context, token: str) -> VerifiedToken:
    return state(ctx).tokens().verify(read_secret_argument(token))


def _backend(ctx: typer.Context, model: str) -> TransformersBackend:
    from valuetune.llm.local import TransformersBackend

    if model == "embedded":
        return TransformersBackend.embedded(state(ctx).settings.home)
    return TransformersBackend.from_directory(model)


def _request(
    backend: TransformersBackend,
    verified: VerifiedToken,
    bank: ScenarioBank,
    overwrite: bool = False,
    **settings: Any,
) -> TuneRequest:
    from valuetune.tune.methods import TuneRequest

    return TuneRequest(
        backend,
        verified.profile(),
        verified.jti,
        bank,
        backend.model_id,
        {"overwrite": overwrite, **{k: v for k, v in settings.items() if v is not None}},
    )


@data_app.command("build")
def data_build(
    ctx: typer.Context,
    token: str = TOKEN_OPTION,
    out: Path = typer.Option(..., "--out", help="Directory to write (must not exist yet)."),
    margin: float = typer.Option(0.3, "--margin", min=0.0, help="Smallest utility gap kept."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Most pairs to keep."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Preference pairs for a token's holder from the training scenarios (TRL JSONL)."""
    from valuetune.tune.pairs import build_pairs, write_pair_dataset
    from valuetune.tune.scenarios import load_scenario_bank

    verified = _verified(ctx, token)
    bank = load_scenario_bank()
    pairs = build_pairs(verified.profile(), bank.split("train"), margin=margin, limit=limit)
    if not pairs:
        from valuetune.errors import ValuetuneError

        raise ValuetuneError(
            "no scenario separates this profile's preferences by the margin; lower --margin"
        )
    meta = write_pair_dataset(
        out,
        pairs,
        bank=bank,
        jti=verified.jti,
        overwrite=overwrite,
        settings={"margin": margin, "limit": limit},
    )
    doc = {"out": str(out), **meta}
    if as_json:
        emit_json(doc)
    else:
        typer.echo(f"{meta['pairs']} pairs from {meta['scenarios']} scenarios written to {out}")


def tune_command(
    ctx: typer.Context,
    token: str = TOKEN_OPTION,
    method: str = typer.Option("precis", "--method", help="Alignment method."),
    out: Path = typer.Option(..., "--out", help="Artifact directory to write."),
    model: str = MODEL_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    time_budget: float | None = typer.Option(
        None, "--time-budget", min=1.0, help="Training methods: stop after this many seconds."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Build an alignment artifact for a token's holder.

    Training (`dpo`) shows progress on stderr, stops cleanly on Ctrl-C and resumes from its
    last checkpoint when the same command runs again.
    """
    from valuetune.tune.scenarios import load_scenario_bank

    chosen = methods().get(method)
    verified = _verified(ctx, token)
    backend = _backend(ctx, model)
    with _cancel_on_interrupt() as cancel:
        request = _request(
            backend,
            verified,
            load_scenario_bank(),
            overwrite,
            time_budget_s=time_budget,
            cancel=cancel,
        )
        meta = chosen.build(request, out)
    if as_json:
        emit_json({"out": str(out), **meta})
    else:
        typer.echo(f"{method} artifact written to {out}")


def eval_command(
    ctx: typer.Context,
    token: str = TOKEN_OPTION,
    method: str = typer.Option("precis", "--method", help="Alignment method to evaluate."),
    artifact: Path | None = typer.Option(
        None, "--artifact", help="An artifact built by `valuetune tune` (default: build one now)."
    ),
    model: str = MODEL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Persona fit of the base model and of the aligned one on the held-out scenarios."""
    import tempfile

    from valuetune.evaluate.report import evaluate_method
    from valuetune.tune.scenarios import load_scenario_bank

    chosen = methods().get(method)
    verified = _verified(ctx, token)
    backend = _backend(ctx, model)
    bank = load_scenario_bank()
    with tempfile.TemporaryDirectory(prefix="vt-eval-") as scratch:
        if artifact is None:
            artifact = Path(scratch) / "artifact"
            chosen.build(_request(backend, verified, bank), artifact)
        doc: dict[str, Any] = evaluate_method(
            backend, chosen.apply(backend, artifact), verified.profile(), bank, method=method
        )
    doc["model"] = backend.model_id
    if as_json:
        emit_json(doc)
        return
    typer.echo(
        f"{method}: fit {doc['fit']:.2f} (95% CI {doc['fit_ci'][0]:.2f}-{doc['fit_ci'][1]:.2f}), "
        f"base {doc['base_fit']:.2f}, gain {doc['gain']:+.2f}, "
        f"perplexity change {doc['perplexity_change']:+.1%} over {doc['n_items']} scenarios"
    )
