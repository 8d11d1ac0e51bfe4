"""Opening the database: engine, SQLite pragmas, migrations, and clear errors.

SQLite (the embedded default) runs in WAL mode with `synchronous=FULL`, so an answer is
on disk when its commit returns, and `secure_delete=ON`, so deleted answers are
overwritten rather than left in free pages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from valuetune.errors import StorageError

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA secure_delete=ON",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
)


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def _prepare_sqlite_file(path: Path) -> None:
    """Create the data directory (0700) and the database file (0600) before SQLite does."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class Database:
    """One database: an engine, a session factory, and its migrations."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StorageError(f"not a database URL: {url!r}") from None
        self.url = parsed
        self.display_url = parsed.render_as_string(hide_password=True)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            try:
                _prepare_sqlite_file(Path(parsed.database))
            except OSError as exc:
                raise StorageError(
                    f"cannot create the database file {parsed.database}: {exc.strerror or exc}. "
                    "Check VALUETUNE_HOME or --home."
                ) from None
        else:
            kwargs["pool_pre_ping"] = True
            if parsed.get_backend_name() == "postgresql":
                kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise StorageError(f"cannot use database {self.display_url}: {exc}") from None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _on_sqlite_connect)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Database:
        """Connect and bring the schema to the newest revision."""
        db = cls(url)
        db.upgrade()
        return db

    def _alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def upgrade(self) -> None:
        """Apply pending migrations (idempotent)."""
        cfg = self._alembic_config()
        with self.guard("migrate"), self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        """The schema revision the database is at."""
        with self.guard("read"), self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head(self) -> str | None:
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    @contextmanager
    def guard(self, action: str) -> Iterator[None]:
        """Turn driver errors into a `StorageError` that names the database, not the password."""
        try:
            yield
        except IntegrityError:
            raise  # a constraint the caller asked for: the repository explains it
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StorageError(
                f"cannot {action} database {self.display_url}: {reason}. "
                "Check VALUETUNE_DATABASE_URL and that the server is running."
            ) from None
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StorageError(
                f"database {self.display_url} refused to {action}: {reason}"
            ) from None

    @contextmanager
    def session(self, action: str = "write to") -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self.guard(action), self._sessions.begin() as session:
            yield session

    def scrub(self) -> bool:
        """After an erasure: move SQLite's write-ahead log into the database file (where
        `secure_delete` has zeroed the erased rows) and truncate the log, so no copy of
        them is left on disk. True when the log is empty; False when another connection
        was mid-read (the next erasure or checkpoint finishes the job). PostgreSQL: True."""
        if not self.is_sqlite:
            return True
        with self.guard("checkpoint"), self.engine.connect() as conn:
            busy, _log, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        return bool(busy == 0)

    def dispose(self) -> None:
        self.engine.dispose()
