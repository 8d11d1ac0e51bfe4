"""Storage: SQLAlchemy models, repositories and Alembic migrations (SQLite or PostgreSQL)."""

from valuetune.store.database import Database
from valuetune.store.survey import SurveyStore

__all__ = ["Database", "SurveyStore"]
