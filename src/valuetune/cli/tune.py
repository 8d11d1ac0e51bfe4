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
from valuetune.tune.methods import FIT_THRESHOLD

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


def methods(home: Path | None = None, threshold: float | None = None) -> MethodRegistry:
    """The built-in alignment methods, registered like third-party ones would be.

    `home` is where `soup` finds its library; `threshold` is the fit `auto` asks for.
    """
    from valuetune.tune.auto import AutoMethod
    from valuetune.tune.dpo import DPOMethod
    from valuetune.tune.methods import MethodRegistry
    from valuetune.tune.precis import PrecisMethod
    from valuetune.tune.soup import SoupMethod
    from valuetune.tune.steer import SteerMethod

    registry = MethodRegistry()
    registry.register(PrecisMethod())
    registry.register(SteerMethod())
    registry.register(SoupMethod(home))
    registry.register(DPOMethod())
    registry.register(AutoMethod(registry, FIT_THRESHOLD if threshold is None else threshold))
    return registry


LIBRARY_OPTION = typer.Option(
    None, "--library", help="`soup`: the adapter library (default: the one under --home)."
)
THRESHOLD_OPTION = typer.Option(
    FIT_THRESHOLD, "--threshold", min=0.0, max=1.0, help="Persona fit a cheaper method must reach."
)


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
    method: str = typer.Option(
        "precis", "--method", help="precis, steer, soup, dpo, or auto (the cheapest that fits)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Artifact directory to write (default: under the home's artifacts/, "
        "where `valuetune serve` finds it).",
    ),
    model: str = MODEL_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    time_budget: float | None = typer.Option(
        None, "--time-budget", min=1.0, help="Training methods: stop after this many seconds."
    ),
    library: Path | None = LIBRARY_OPTION,
    threshold: float = THRESHOLD_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Build an alignment artifact for a token's holder.

    Training (`dpo`) shows progress on stderr, stops cleanly on Ctrl-C and resumes from its
    last checkpoint when the same command runs again.
    """
    from valuetune.tune.artifacts import jti_hash
    from valuetune.tune.scenarios import load_scenario_bank

    settings = state(ctx).settings
    chosen = methods(settings.home, threshold).get(method)
    verified = _verified(ctx, token)
    if out is None:
        out = settings.artifacts / jti_hash(verified.jti)[:16] / method
    backend = _backend(ctx, model)
    with _cancel_on_interrupt() as cancel:
        request = _request(
            backend,
            verified,
            load_scenario_bank(),
            overwrite,
            time_budget_s=time_budget,
            cancel=cancel,
            library=library,
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
    library: Path | None = LIBRARY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Persona fit of the base model and of the aligned one on the held-out scenarios."""
    import tempfile

    from valuetune.evaluate.report import evaluate_method
    from valuetune.tune.scenarios import load_scenario_bank

    chosen = methods(state(ctx).settings.home).get(method)
    verified = _verified(ctx, token)
    backend = _backend(ctx, model)
    bank = load_scenario_bank()
    given = artifact is not None
    with tempfile.TemporaryDirectory(prefix="vt-eval-") as scratch:
        if artifact is None:
            artifact = Path(scratch) / "artifact"
            chosen.build(_request(backend, verified, bank, library=library), artifact)
        doc: dict[str, Any] = evaluate_method(
            backend, chosen.apply(backend, artifact), verified.profile(), bank, method=method
        )
        if given:
            _record_fit(artifact, doc)
    doc["model"] = backend.model_id
    if as_json:
        emit_json(doc)
        return
    typer.echo(
        f"{method}: fit {doc['fit']:.2f} (95% CI {doc['fit_ci'][0]:.2f}-{doc['fit_ci'][1]:.2f}), "
        f"base {doc['base_fit']:.2f}, gain {doc['gain']:+.2f}, "
        f"perplexity change {doc['perplexity_change']:+.1%} over {doc['n_items']} scenarios"
    )


def _record_fit(artifact: Path, doc: dict[str, Any]) -> None:
    """Keep the held-out fit beside the artifact (and each one inside an `auto` artifact):
    a server reports it in its receipts."""
    from valuetune.tune.artifacts import METADATA, read_metadata, write_fit

    fit = {k: doc[k] for k in ("fit", "fit_ci", "base_fit", "gain", "perplexity_change")}
    fit["n_items"] = doc.get("n_items")
    write_fit(artifact, fit)
    meta = read_metadata(artifact)
    if meta.get("kind") == "alignment/auto":
        chosen = artifact / str(meta.get("chosen"))
        if (chosen / METADATA).is_file():
            write_fit(chosen, fit)


def compare_command(
    ctx: typer.Context,
    token: str = TOKEN_OPTION,
    only: list[str] | None = typer.Option(
        None, "--method", help="Compare only these methods (repeatable; default: all)."
    ),
    model: str = MODEL_OPTION,
    library: Path | None = LIBRARY_OPTION,
    threshold: float = THRESHOLD_OPTION,
    keep: Path | None = typer.Option(
        None, "--keep", help="Keep the artifacts in this directory (must not exist yet)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every method side by side on the held-out scenarios, and the cheapest that fits."""
    import tempfile

    from valuetune.evaluate.compare import compare_methods
    from valuetune.tune.artifacts import refuse_occupied
    from valuetune.tune.scenarios import load_scenario_bank

    registry = methods(state(ctx).settings.home)
    names = only or [n for n in registry.names() if n != "auto"]
    chosen = [registry.get(n) for n in names]
    verified = _verified(ctx, token)
    if keep is not None:
        refuse_occupied(keep)
    backend = _backend(ctx, model)
    with tempfile.TemporaryDirectory(prefix="vt-compare-") as scratch:
        workdir = keep or Path(scratch)
        with _cancel_on_interrupt() as cancel:
            request = _request(
                backend, verified, load_scenario_bank(), cancel=cancel, library=library
            )
            doc = compare_methods(request, chosen, workdir, threshold=threshold)
    doc["model"] = backend.model_id
    if as_json:
        emit_json(doc)
        return
    for row in doc["methods"]:
        if "error" in row:
            typer.echo(f"{row['method']:>7}: not built ({row['error']})")
            continue
        typer.echo(
            f"{row['method']:>7}: fit {row['fit']:.2f} (95% CI {row['fit_ci'][0]:.2f}-"
            f"{row['fit_ci'][1]:.2f}), gain {row['gain']:+.2f}, perplexity "
            f"{row['perplexity_change']:+.1%}, built in {row['build_seconds']:.0f} s"
        )
    typer.echo(f"base model fit {doc['base_fit']:.2f}; {doc['reason']}")


soup_app = typer.Typer(help="The soup method's adapter library.", no_args_is_help=True)


@soup_app.command("build")
def soup_build(
    ctx: typer.Context,
    model: str = MODEL_OPTION,
    out: Path | None = typer.Option(
        None, "--out", help="Library directory (default: the one `tune --method soup` uses)."
    ),
    personas: list[str] | None = typer.Option(
        None, "--persona", help="Personas to include (repeatable; default: all)."
    ),
    axes: list[str] | None = typer.Option(
        None, "--axis", help="Value axes to include (repeatable; default: all)."
    ),
    pairs: int = typer.Option(128, "--pairs", min=1, help="Preference pairs per adapter."),
    epochs: float = typer.Option(2.0, "--epochs", min=0.1, help="Epochs per adapter."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Train the soup library once per base model: one adapter per persona and per axis.

    Finished adapters are kept: after Ctrl-C or a kill, the same command carries on.
    """
    from dataclasses import replace

    from valuetune.errors import ValuetuneError
    from valuetune.tune.scenarios import load_scenario_bank
    from valuetune.tune.soup import LIBRARY_SETTINGS, build_library, default_library, library_plan
    from valuetune.values.axes import load_axes
    from valuetune.values.personas import get_persona, load_personas

    chosen_personas = [get_persona(p) for p in personas] if personas else list(load_personas())
    known = load_axes().value_ids
    unknown = sorted(set(axes or []) - set(known))
    if unknown:
        raise ValuetuneError(f"unknown value axes {unknown}; known: {', '.join(known)}")
    backend = _backend(ctx, model)
    library = out or default_library(state(ctx).settings.home, backend)
    plan = library_plan(chosen_personas, axes or known)

    def progress(name: str, i: int, total: int) -> None:
        typer.echo(f"[{i + 1}/{total}] {name}", err=True)

    with _cancel_on_interrupt() as cancel:
        meta = build_library(
            backend,
            library,
            load_scenario_bank(),
            plan,
            replace(LIBRARY_SETTINGS, pairs=pairs, epochs=epochs),
            cancel=cancel,
            progress=progress,
        )
    if as_json:
        emit_json({"out": str(library), **meta})
    else:
        typer.echo(f"soup library of {len(meta['components'])} adapters at {library}")
