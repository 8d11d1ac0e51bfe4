"""Settings, built by the caller (the CLI or the app factory) and passed down.

Nothing here runs at import time: `Settings()` reads the environment when it is built.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("valuetune", appauthor=False))


class Settings(BaseSettings):
    """Where valuetune keeps its data and how it reaches its database."""

    model_config = SettingsConfigDict(env_prefix="VALUETUNE_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Data directory (SQLite file, keys, caches). Env: VALUETUNE_HOME.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db. "
        "Default: a SQLite file under `home`. Env: VALUETUNE_DATABASE_URL.",
    )

    @property
    def artifacts(self) -> Path:
        """Where `valuetune tune` writes artifacts by default and `serve` looks for them."""
        return self.home / "artifacts"

    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'valuetune.sqlite3'}"
