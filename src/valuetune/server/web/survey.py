"""The survey in the browser: consent, one adaptive question at a time, self-placement,
optional demographics.

Each answer is stored (its own transaction) before the next question is chosen; the
session is rebuilt from the stored answers on every request, so a reload, a back button
or a closed tab loses nothing and never records an answer twice.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import Response

from valuetune.errors import InvalidAnswerError, NotFoundError, ValuetuneError
from valuetune.server.web.rendering import checked_form, go, page, services, visitor
from valuetune.store.survey import RespondentSummary
from valuetune.values.demographics import (
    DEMOGRAPHIC_FIELDS,
    PLACEMENT_AXES,
    PLACEMENT_MAX,
    PREFER_NOT,
)
from valuetune.values.items import Item, ItemKind
from valuetune.values.survey import Phase, SurveyConfig, SurveySession

router = APIRouter()

MORE_VALUE_QUESTIONS = 10
"""How many more value questions "answer more questions" allows."""
TIGHTER = 0.8
"""...and how much more precise each value axis must then be before the survey stops."""

PHASE_TITLES = {
    Phase.VALUES: "What matters to you",
    Phase.STYLE: "How you like answers",
    Phase.BOUNDARIES: "What an assistant should avoid",
}


def choices(item: Item) -> list[tuple[int, str]]:
    """(answer value, label) in the order shown: a scenario's first action first."""
    if item.kind is ItemKind.CHOICE:
        return [(1, item.options[0].text), (0, item.options[1].text)]
    return list(enumerate(item.labels))


def _resumed(request: Request) -> tuple[RespondentSummary, SurveySession] | None:
    """The visitor's respondent and survey, rebuilt from the stored answers in one read;
    None if there is none."""
    rid = visitor(request).respondent
    if rid is None:
        return None
    web = services(request)
    try:
        summary, answers = web.survey.resume(rid)
    except NotFoundError:  # erased, or another database: start again
        return None
    return summary, SurveySession.replay(web.bank, answers, _config(request, summary))


def _config(request: Request, summary: RespondentSummary) -> SurveyConfig:
    """The settings this respondent's survey runs under (kept from when it started)."""
    if summary.survey_config:
        return SurveyConfig.from_dict(summary.survey_config)
    return services(request).survey_config


@router.get("/survey")
def consent(request: Request) -> Response:
    return page(request, "consent.html", started=_resumed(request) is not None)


@router.post("/survey/start")
async def start(request: Request) -> Response:
    form = await checked_form(request)
    if form.get("consent") != "yes":
        return page(
            request,
            "consent.html",
            status=400,
            started=False,
            session=None,
            error="Please tick the box to say you agree, or leave the survey.",
        )
    web = services(request)
    rid = web.survey.create_respondent(web.bank.axes.version, web.survey_config.to_dict())
    return go(
        request, "/survey/question", visitor(request).with_(respondent=rid, token=None, alias=None)
    )


def _question(
    request: Request, session: SurveySession, item: Item, status: int = 200, error: str = ""
) -> Response:
    done, total = session.progress()
    return page(
        request,
        "question.html",
        status=status,
        item=item,
        choices=choices(item),
        number=done + 1,
        total=max(total, done + 1),
        phase=PHASE_TITLES.get(session.phase, ""),
        stamp=services(request).signer.stamp(item.id),
        error=error,
    )


@router.get("/survey/question")
def question(request: Request) -> Response:
    resumed = _resumed(request)
    if resumed is None:
        return go(request, "/survey")
    summary, session = resumed
    item = session.next_item()
    if item is None:
        return go(request, _after_survey(summary))
    return _question(request, session, item)


def _after_survey(summary: RespondentSummary) -> str:
    """Where a finished survey goes: on to the optional questions the first time, back to
    the results after answering more."""
    return "/results" if summary.completed_at is not None else "/survey/placement"


@router.post("/survey/answer")
async def answer(request: Request) -> Response:
    form = await checked_form(request)
    resumed = _resumed(request)
    if resumed is None:
        return go(request, "/survey")
    summary, session = resumed
    item = session.next_item()
    if item is None or form.get("item") != item.id:
        return go(request, "/survey/question")  # a stale page (back button, second tab)
    value: int | None = None
    if "skip" not in form:
        try:
            value = item.check_answer(int(form.get("answer", "")))
        except (ValueError, InvalidAnswerError):
            return _question(
                request, session, item, 400, "Please choose one of the answers, or skip."
            )
    web, rid = services(request), summary.id
    elapsed = web.signer.elapsed_ms(form.get("stamp"), item.id)
    try:
        web.survey.record_answer(rid, item.id, value, elapsed)  # durable before moving on
    except InvalidAnswerError:  # the same page posted twice: the first answer stands
        return go(request, "/survey/question")
    session.answer(item.id, value)
    if session.complete:
        after = _after_survey(summary)  # read before this completion is saved
        web.survey.save_profile(rid, session.profile(), complete=True)
        return go(request, after)
    return go(request, "/survey/question")


@router.post("/survey/more")
async def more(request: Request) -> Response:
    """Answer more questions to narrow the estimate. The token and alias made from the
    old estimate stop working; new ones are made when the survey is complete again."""
    await checked_form(request)
    rid = _finished(request)
    if rid is None:
        return go(request, "/survey/question")
    web, who = services(request), visitor(request)
    config = _config(request, web.survey.respondent(rid))
    wider = replace(
        config,
        max_value_items=config.max_value_items + MORE_VALUE_QUESTIONS,
        target_se=config.target_se * TIGHTER,
    )
    web.survey.set_config(rid, wider.to_dict())
    retire_credentials(request)
    return go(request, "/survey/question", who.with_(token=None, alias=None))


def retire_credentials(request: Request) -> None:
    """Revoke the visitor's token and delete their alias (both made from an old profile)."""
    web, who = services(request), visitor(request)
    if who.alias:
        web.aliases.revoke(who.alias)
    if who.token:
        with contextlib.suppress(ValuetuneError):  # expired or already refused: done
            web.token_store.revoke(web.tokens.verify(who.token).jti)


def _finished(request: Request) -> str | None:
    """The respondent id once the survey is complete, else None."""
    rid = visitor(request).respondent
    if rid is None:
        return None
    try:
        summary = services(request).survey.respondent(rid)
    except NotFoundError:
        return None
    return rid if summary.completed_at is not None else None


@router.get("/survey/placement")
def placement(request: Request) -> Response:
    if _finished(request) is None:
        return go(request, "/survey/question")
    return _placement_page(request)


def _placement_page(request: Request, status: int = 200, error: str = "") -> Response:
    scale = range(PLACEMENT_MAX + 1)
    return page(request, "placement.html", status, axes=PLACEMENT_AXES, scale=scale, error=error)


def _about_page(request: Request, status: int = 200, error: str = "") -> Response:
    fields, prefer_not = DEMOGRAPHIC_FIELDS, PREFER_NOT
    return page(request, "about.html", status, fields=fields, prefer_not=prefer_not, error=error)


@router.post("/survey/placement")
async def save_placement(request: Request) -> Response:
    form = await checked_form(request)
    rid = _finished(request)
    if rid is None:
        return go(request, "/survey/question")
    if "skip" in form:
        form = {}
    try:
        services(request).demographics.save_placement(
            rid, form.get("economic") or None, form.get("social") or None
        )
    except InvalidAnswerError as exc:
        return _placement_page(request, 400, str(exc))
    return go(request, "/survey/about")


@router.get("/survey/about")
def about(request: Request) -> Response:
    if _finished(request) is None:
        return go(request, "/survey/question")
    return _about_page(request)


@router.post("/survey/about")
async def save_about(request: Request) -> Response:
    form = await checked_form(request)
    rid = _finished(request)
    if rid is None:
        return go(request, "/survey/question")
    if "skip" not in form:
        answers = {f.id: form.get(f.id) or None for f in DEMOGRAPHIC_FIELDS}
        try:
            services(request).demographics.save_demographics(rid, answers)
        except InvalidAnswerError as exc:
            return _about_page(request, 400, str(exc))
    return go(request, "/results")
