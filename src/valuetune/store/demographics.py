"""Self-placement and demographics: optional, one row per respondent, in tables of their
own so that answer exports never carry them; erased with the respondent."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from valuetune.errors import NotFoundError
from valuetune.store.database import Database
from valuetune.store.models import DemographicRecord, Respondent, SelfPlacement
from valuetune.values.demographics import FIELD_IDS, check_demographics, check_placement


class DemographicsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def save_placement(
        self, respondent_id: str, economic: int | str | None, social: int | str | None
    ) -> None:
        """Store the self-placement (0..10 each, None = not said), checked first."""
        economic, social = check_placement(economic), check_placement(social)
        with self.db.session() as s:
            if s.get(Respondent, respondent_id) is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")
            row = s.get(SelfPlacement, respondent_id) or SelfPlacement(respondent_id=respondent_id)
            row.economic, row.social = economic, social
            s.add(row)

    def placement(self, respondent_id: str) -> tuple[int | None, int | None] | None:
        """(economic, social), or None if the question was never reached."""
        with self.db.session("read") as s:
            row = s.get(SelfPlacement, respondent_id)
            return None if row is None else (row.economic, row.social)

    def save_demographics(self, respondent_id: str, answers: Mapping[str, str | None]) -> None:
        checked = check_demographics(answers)
        with self.db.session() as s:
            if s.get(Respondent, respondent_id) is None:
                raise NotFoundError(f"no respondent {respondent_id!r}")
            row = s.get(DemographicRecord, respondent_id)
            if row is None:
                row = DemographicRecord(respondent_id=respondent_id)
                s.add(row)
            for field, value in checked.items():
                setattr(row, field, value)

    def demographics(self, respondent_id: str) -> dict[str, str | None] | None:
        with self.db.session("read") as s:
            row = s.get(DemographicRecord, respondent_id)
            return None if row is None else {f: getattr(row, f) for f in FIELD_IDS}

    def demographics_by_respondent(self) -> dict[str, dict[str, str | None]]:
        """Every stored record by respondent id (for coverage tables)."""
        with self.db.session("read") as s:
            return {
                r.respondent_id: {f: getattr(r, f) for f in FIELD_IDS}
                for r in s.scalars(select(DemographicRecord))
            }

    def placements_by_respondent(self) -> dict[str, tuple[int | None, int | None]]:
        """Every stored self-placement by respondent id (for exports and statistics)."""
        with self.db.session("read") as s:
            return {
                r.respondent_id: (r.economic, r.social) for r in s.scalars(select(SelfPlacement))
            }
