"""Repository for respondents, their answers and their profiles.

Every answer is committed on its own before the survey moves on, so an interruption
loses nothing that was submitted.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from valuetune.canonical import canonical_json
from valuetune.errors import InvalidAnswerError, NotFoundError
from valuetune.store.database import Database
from valuetune.store.models import (
    AliasRecord,
    DemographicRecord,
    Respondent,
    Response,
    SelfPlacement,
    StoredProfile,
    TokenSubject,
    utcnow,
)
from valuetune.values.profile import ValueProfile
from valuetune.values.quality import TimedAnswer
from valuetune.values.survey import Answer


def _aware(moment: datetime | None) -> datetime | None:
    """Timestamps are stored in UTC; SQLite hands them back without a zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _answer_count(s: Session, respondent_id: str) -> int:
    query = (
        select(func.count()).select_from(Response).where(Response.respondent_id == respondent_id)
    )
    return s.scalar(query) or 0


@dataclass(frozen=True)
class RespondentSummary:
    id: str
    schema: str
    created_at: datetime
    completed_at: datetime | None
    answers: int
    survey_config: Mapping[str, Any] | None = None
    excluded: str | None = None
    """Why an administrator excluded the respondent from statistics; None if included."""


class SurveyStore:
    """Survey data access on one `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_respondent(self, schema: str, survey_config: Mapping[str, Any] | None = None) -> str:
        """A new respondent under a random id; `survey_config` is kept so a resume matches."""
        respondent_id = secrets.token_hex(16)
        config = canonical_json(dict(survey_config)) if survey_config is not None else None
        with self.db.session() as s:
            s.add(Respondent(id=respondent_id, schema=schema, survey_config=config))
        return respondent_id

    def respondent(self, respondent_id: str) -> RespondentSummary:
        with self.db.session("read") as s:
            r = s.get(Respondent, respondent_id)
            if r is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")
            answers = _answer_count(s, respondent_id)
            return self._summary(r, answers)

    @staticmethod
    def _summary(r: Respondent, answers: int) -> RespondentSummary:
        created = _aware(r.created_at)
        assert created is not None
        config = json.loads(r.survey_config) if r.survey_config else None
        return RespondentSummary(
            r.id, r.schema, created, _aware(r.completed_at), int(answers), config, r.excluded_reason
        )

    def _require(self, respondent_id: str) -> None:
        with self.db.session("read") as s:
            if s.get(Respondent, respondent_id) is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")

    def record_answer(
        self, respondent_id: str, item_id: str, value: int | None, elapsed_ms: int | None = None
    ) -> None:
        """Store one answer durably (its own transaction). Answering twice is refused."""
        try:
            with self.db.session() as s:
                respondent = s.get(Respondent, respondent_id)
                if respondent is None:
                    raise NotFoundError(f"no respondent {respondent_id!r}")
                seq = _answer_count(s, respondent_id)
                s.add(
                    Response(
                        respondent_id=respondent_id,
                        seq=seq,
                        item_id=item_id,
                        value=value,
                        elapsed_ms=elapsed_ms,
                    )
                )
        except IntegrityError:
            raise InvalidAnswerError(f"item {item_id} was already answered") from None

    def answers(self, respondent_id: str) -> list[Answer]:
        return self.resume(respondent_id)[1]

    def resume(self, respondent_id: str) -> tuple[RespondentSummary, list[Answer]]:
        """The respondent and their answers in order, in one read (each web page needs
        both to rebuild the survey)."""
        with self.db.session("read") as s:
            r = s.get(Respondent, respondent_id)
            if r is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")
            rows = s.execute(
                select(Response.item_id, Response.value)
                .where(Response.respondent_id == respondent_id)
                .order_by(Response.seq)
            ).all()
            return self._summary(r, len(rows)), [Answer(item, value) for item, value in rows]

    def timed_answers(self, respondent_id: str) -> list[TimedAnswer]:
        """Answers in order with the milliseconds each took (for quality checks)."""
        self._require(respondent_id)
        with self.db.session("read") as s:
            rows = s.scalars(
                select(Response)
                .where(Response.respondent_id == respondent_id)
                .order_by(Response.seq)
            )
            return [TimedAnswer(r.item_id, r.value, r.elapsed_ms) for r in rows]

    def all_timed_answers(self) -> dict[str, list[TimedAnswer]]:
        """Every respondent's answers in order, in one query (for the dashboard)."""
        found: dict[str, list[TimedAnswer]] = {}
        with self.db.session("read") as s:
            rows = s.execute(
                select(
                    Response.respondent_id, Response.item_id, Response.value, Response.elapsed_ms
                ).order_by(Response.respondent_id, Response.seq)
            )
            for rid, item, value, elapsed in rows:
                found.setdefault(rid, []).append(TimedAnswer(item, value, elapsed))
        return found

    def set_config(self, respondent_id: str, survey_config: Mapping[str, Any]) -> None:
        """Change the survey's settings (to ask more questions after it was complete)."""
        with self.db.session() as s:
            respondent = s.get(Respondent, respondent_id)
            if respondent is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")
            respondent.survey_config = canonical_json(dict(survey_config))

    def set_excluded(self, respondent_id: str, reason: str | None) -> None:
        """Exclude a respondent from statistics and exports (`reason`), or include again."""
        with self.db.session() as s:
            respondent = s.get(Respondent, respondent_id)
            if respondent is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")
            respondent.excluded_reason = reason[:200] if reason else None

    def save_profile(self, respondent_id: str, profile: ValueProfile, *, complete: bool) -> None:
        with self.db.session() as s:
            respondent = s.get(Respondent, respondent_id)
            if respondent is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")
            answered = _answer_count(s, respondent_id)
            stored = s.get(StoredProfile, respondent_id)
            if stored is None:
                stored = StoredProfile(respondent_id=respondent_id)
                s.add(stored)
            stored.schema = profile.schema
            stored.profile_json = profile.to_json()
            stored.items_answered = answered
            stored.updated_at = utcnow()
            if complete and respondent.completed_at is None:
                respondent.completed_at = utcnow()

    def profile(self, respondent_id: str) -> ValueProfile:
        with self.db.session("read") as s:
            stored = s.get(StoredProfile, respondent_id)
            if stored is None:
                if s.get(Respondent, respondent_id) is None:
                    raise NotFoundError(f"no respondent {respondent_id!r}")
                raise NotFoundError(f"respondent {respondent_id} has no profile yet")
            return ValueProfile.from_json(stored.profile_json)

    def latest_respondent(self, *, with_profile: bool = True) -> str:
        with self.db.session("read") as s:
            query = select(Respondent.id).order_by(Respondent.created_at.desc()).limit(1)
            if with_profile:
                query = query.join(StoredProfile)
            found = s.scalar(query)
        if found is None:
            raise NotFoundError("no stored profiles yet: run `valuetune survey` first")
        return found

    def respondents(self) -> list[RespondentSummary]:
        with self.db.session("read") as s:
            counts = (
                select(Response.respondent_id, func.count().label("n"))
                .group_by(Response.respondent_id)
                .subquery()
            )
            rows = s.execute(
                select(Respondent, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.respondent_id == Respondent.id)
                .order_by(Respondent.created_at)
            ).all()
            return [self._summary(r, n) for r, n in rows]

    def profiles(self, *, complete_only: bool = True) -> dict[str, ValueProfile]:
        """Every stored profile by respondent id (for clustering and statistics)."""
        with self.db.session("read") as s:
            query = select(StoredProfile).join(Respondent)
            if complete_only:
                query = query.where(Respondent.completed_at.is_not(None))
            return {
                p.respondent_id: ValueProfile.from_json(p.profile_json) for p in s.scalars(query)
            }

    def delete_respondent(self, respondent_id: str) -> None:
        """Erase a respondent: answers, profile and aliases; their tokens are refused after.

        The pseudonym row stays (no personal data in it) marked erased, so tokens already
        handed out for it can never verify again.
        """
        with self.db.session() as s:
            if s.get(Respondent, respondent_id) is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")
            subs = list(
                s.scalars(
                    select(TokenSubject.sub).where(TokenSubject.respondent_id == respondent_id)
                )
            )
            if subs:
                s.execute(delete(AliasRecord).where(AliasRecord.sub.in_(subs)))
                s.execute(
                    update(TokenSubject)
                    .where(TokenSubject.sub.in_(subs))
                    .values(erased_at=utcnow(), respondent_id=None)
                )
            for table in (Response, StoredProfile, SelfPlacement, DemographicRecord):
                s.execute(delete(table).where(table.respondent_id == respondent_id))
            s.execute(delete(Respondent).where(Respondent.id == respondent_id))
        self.db.scrub()
