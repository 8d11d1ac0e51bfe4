"""`valuetune survey`: the adaptive survey in the terminal.

Each answer is stored (its own committed transaction) before the next question is
chosen, so quitting, a closed terminal or a lost database connection loses nothing that
was answered; `--resume ID` continues where the survey stopped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.panel import Panel

from valuetune.cli.common import JSON_OPTION, console, emit_raw_json, state

if TYPE_CHECKING:
    from valuetune.store import SurveyStore
    from valuetune.values.items import Item
    from valuetune.values.survey import SurveySession

CONSENT = (
    "This survey asks about your values, how you like an AI assistant to talk to you, and "
    "anything you would rather it avoided. It takes a few minutes.\n\n"
    "What is stored: your answers and the resulting profile, under a random id, in "
    "{where}. No name, e-mail or device details. Your answers are yours: "
    "`valuetune profile delete ID` erases them at any time.\n\n"
    "Keys: answer with the number shown, [bold]s[/bold] skips a question, [bold]q[/bold] stops "
    "(your answers so far are kept; resume with --resume)."
)


class _StopRequestedError(Exception):
    """The respondent chose to stop (q)."""


def _ask(out: Console, item: Item, number: int, total: int) -> int | None:
    """Show one item and read an answer: a category, None to skip; q raises _StopRequestedError."""
    from valuetune.values.items import LIKERT_LABELS, ItemKind

    out.print()
    out.print(f"[dim]Question {number} of about {total}[/dim]")
    if item.kind is ItemKind.CHOICE:
        out.print(f"[bold]{item.text}[/bold]")
        out.print(f"  1  {item.options[0].text}")
        out.print(f"  2  {item.options[1].text}")
        valid = {"1": 1, "2": 0}  # 1 = first option (2PL coding)
        hint = "1 or 2"
    elif item.kind is ItemKind.BOUNDARY:
        out.print(f"[bold]{item.text}[/bold]")
        valid = {"y": 1, "yes": 1, "n": 0, "no": 0}
        hint = "y or n"
    else:
        out.print(f"[bold]{item.text}[/bold]")
        out.print("  " + "   ".join(f"{i + 1} {label}" for i, label in enumerate(LIKERT_LABELS)))
        valid = {str(i + 1): i for i in range(len(LIKERT_LABELS))}
        hint = "1-5"
    while True:
        # console.input prints the prompt through the console (stderr with --json)
        raw = out.input(f"Your answer ({hint}, s skip, q stop): ").strip().lower()
        if raw in valid:
            return valid[raw]
        if raw in ("s", "skip"):
            return None
        if raw in ("q", "quit"):
            raise _StopRequestedError
        out.print(f"[red]Please answer {hint}, s to skip, or q to stop.[/red]")


def _run(out: Console, store: SurveyStore, respondent_id: str, session: SurveySession) -> bool:
    """Ask until complete; return False if the respondent stopped early."""
    while (item := session.next_item()) is not None:
        done, total = session.progress()
        started = time.monotonic()
        try:
            value = _ask(out, item, done + 1, total)
        except _StopRequestedError:
            return False
        elapsed_ms = int((time.monotonic() - started) * 1000)
        store.record_answer(respondent_id, item.id, value, elapsed_ms)  # durable first
        session.answer(item.id, value)
    return True


def survey(
    ctx: typer.Context,
    resume: str | None = typer.Option(
        None, "--resume", help="Continue an unfinished survey (with the settings it started with)."
    ),
    max_items: int = typer.Option(
        20, "--max-items", min=1, max=200, help="Most value questions to ask."
    ),
    target_se: float = typer.Option(
        0.45,
        "--target-se",
        min=0.05,
        max=1.0,
        help="Stop early once every value axis is this precise.",
    ),
    boundaries: bool = typer.Option(
        True, "--boundaries/--no-boundaries", help="Ask the boundary questions."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Take the adaptive value survey; prints your profile at the end."""
    from valuetune.cli.render import print_profile
    from valuetune.errors import ValuetuneError
    from valuetune.values.items import load_item_bank
    from valuetune.values.survey import SurveyConfig, SurveySession

    out = console(to_stderr=as_json)
    cli = state(ctx)
    store = cli.store()
    bank = load_item_bank()
    config = SurveyConfig(max_value_items=max_items, target_se=target_se, ask_boundaries=boundaries)
    if resume:
        respondent_id = resume
        summary = store.respondent(respondent_id)
        if summary.completed_at is not None:
            raise ValuetuneError(
                f"respondent {respondent_id} has already completed the survey; "
                f"see `valuetune profile show {respondent_id}`"
            )
        if summary.survey_config is not None:  # resume with the settings it started with
            config = SurveyConfig.from_dict(summary.survey_config)
        session = SurveySession.replay(bank, store.answers(respondent_id), config)
        out.print(f"Resuming survey {respondent_id} after {len(session.answers)} answers.")
    else:
        out.print(Panel(CONSENT.format(where=store.db.display_url), title="valuetune survey"))
        respondent_id = store.create_respondent(bank.axes.version, config.to_dict())
        session = SurveySession(bank, config)
    resume_hint = f"valuetune survey --resume {respondent_id}"
    try:
        finished = _run(out, store, respondent_id, session)
    except EOFError:
        store.save_profile(respondent_id, session.profile(), complete=False)
        out.print(
            f"\nInput ended. {len(session.answers)} answers are saved; continue with: {resume_hint}"
        )
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        store.save_profile(respondent_id, session.profile(), complete=False)
        out.print(
            f"\nInterrupted. {len(session.answers)} answers are saved; continue with: {resume_hint}"
        )
        raise typer.Exit(130) from None
    except ValuetuneError as exc:
        raise ValuetuneError(
            f"{exc}\nAnswers stored before this point are kept; "
            f"once fixed, continue with: {resume_hint}"
        ) from None
    profile = session.profile()  # importance-sampled: compute once
    store.save_profile(respondent_id, profile, complete=finished)
    if not finished:
        out.print(
            f"Stopped. {len(session.answers)} answers are saved; continue with: {resume_hint}"
        )
        return
    out.print()
    out.print(
        Panel(
            f"Done: {len(session.answers)} answers. Respondent id: {respondent_id}",
            title="Your profile",
        )
    )
    if session.attention_failures:
        out.print(
            f"[yellow]Note: {session.attention_failures} attention check(s) were not answered "
            "as instructed.[/yellow]"
        )
    print_profile(out, profile)
    out.print(f"\nCanonical JSON: valuetune profile show {respondent_id} --json")
    if as_json:
        emit_raw_json(profile.to_json())
