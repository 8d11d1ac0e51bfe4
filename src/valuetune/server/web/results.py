"""After the survey: the profile, the token and alias, and the holder's own data.

The token and alias are minted on the first visit to the results page and kept only in
the visitor's cookie (the database keeps the token's id, never the token). Deleting
erases answers, profile, self-placement, demographics and aliases, refuses every token
issued for the respondent from then on, and scrubs SQLite's write-ahead log.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from valuetune.errors import NotFoundError
from valuetune.server.web.charts import profile_rows, qr_svg
from valuetune.server.web.rendering import checked_form, go, page, services, visitor
from valuetune.server.web.visitor import Visitor
from valuetune.token.precis import PrecisLength, write_precis
from valuetune.values.demographics import DEMOGRAPHIC_FIELDS, PLACEMENT_AXES
from valuetune.values.personas import nearest_personas
from valuetune.values.profile import ValueProfile

router = APIRouter()


def _profile(request: Request) -> tuple[str, ValueProfile] | None:
    """(respondent id, profile) once the visitor's survey is complete."""
    rid = visitor(request).respondent
    if rid is None:
        return None
    web = services(request)
    try:
        if web.survey.respondent(rid).completed_at is None:
            return None
        return rid, web.survey.profile(rid)
    except NotFoundError:
        return None


def _credentials(request: Request, rid: str, profile: ValueProfile) -> Visitor:
    """The visitor with a token and alias, minted now if the cookie holds none."""
    who = visitor(request)
    if who.token and who.alias:
        return who
    web = services(request)
    minted = web.tokens.mint(profile, sub=web.token_store.subject_for_respondent(rid))
    shared = web.tokens.mint_share(web.tokens.verify(minted.token))
    alias = web.aliases.create(minted.sub, "token", shared.token)
    return who.with_(token=minted.token, alias=alias)


@router.get("/results")
def results(request: Request) -> Response:
    found = _profile(request)
    if found is None:
        return go(request, "/survey/question" if visitor(request).respondent else "/survey")
    rid, profile = found
    who = _credentials(request, rid, profile)
    assert who.token is not None and who.alias is not None
    response = page(
        request,
        "results.html",
        who=who,
        values=profile_rows(profile),
        style=profile_rows(profile, style=True),
        boundaries=[profile.axes.boundary(b) for b in sorted(profile.boundaries)],
        personas=nearest_personas(profile, k=3),
        precis=write_precis(profile, PrecisLength.MEDIUM),
        token=who.token,
        alias=who.alias,
        qr=qr_svg(who.token, "QR code of your value token"),
        api_base=services(request).api_base,
    )
    response.headers["Cache-Control"] = "no-store"  # the page shows the token
    return response


@router.get("/my-data.json")
def download(request: Request) -> Response:
    """Everything stored about the visitor, as one JSON document."""
    rid = visitor(request).respondent
    web = services(request)
    if rid is None:
        return go(request, "/survey")
    try:
        summary = web.survey.respondent(rid)
        answers = web.survey.timed_answers(rid)
    except NotFoundError:
        return go(request, "/survey")
    try:
        profile: dict[str, object] | None = web.survey.profile(rid).to_dict()
    except NotFoundError:
        profile = None
    placement = web.demographics.placement(rid)
    doc = {
        "exported_at": datetime.now(UTC).isoformat(),
        "respondent": rid,
        "started_at": summary.created_at.isoformat(),
        "completed_at": summary.completed_at.isoformat() if summary.completed_at else None,
        "answers": [
            {
                "item": a.item_id,
                "question": web.bank.get(a.item_id).text,
                "answer": a.value,
                "answer_label": None
                if a.value is None
                else web.bank.get(a.item_id).labels[a.value],
                "seconds": None if a.elapsed_ms is None else round(a.elapsed_ms / 1000, 1),
            }
            for a in answers
        ],
        "profile": profile,
        "self_placement": None
        if placement is None
        else {axis.id: value for axis, value in zip(PLACEMENT_AXES, placement, strict=True)},
        "demographics": web.demographics.demographics(rid),
        "demographic_fields": [f.id for f in DEMOGRAPHIC_FIELDS],
    }
    return JSONResponse(
        doc,
        headers={
            "Content-Disposition": 'attachment; filename="valuetune-my-data.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/my-data/delete")
def confirm_delete(request: Request) -> Response:
    return page(request, "delete.html", has_data=visitor(request).respondent is not None)


@router.post("/my-data/delete")
async def delete(request: Request) -> Response:
    await checked_form(request)
    rid = visitor(request).respondent
    if rid is not None:
        with contextlib.suppress(NotFoundError):  # already gone: what the visitor asked for
            services(request).survey.delete_respondent(rid)
    return page(request, "deleted.html", who=services(request).signer.new_visitor())


@router.post("/survey/retake")
async def retake(request: Request) -> Response:
    """Start again: the previous answers are erased first, and their token stops working."""
    await checked_form(request)
    rid = visitor(request).respondent
    if rid is not None:
        with contextlib.suppress(NotFoundError):
            services(request).survey.delete_respondent(rid)
    return go(request, "/survey", services(request).signer.new_visitor())
