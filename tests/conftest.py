"""Shared fixtures: a real database on each backend, and an isolated VALUETUNE_HOME.

PostgreSQL tests use the server named by VALUETUNE_TEST_POSTGRES_URL (an admin URL whose
role may CREATE DATABASE; `scripts/test.sh` starts one). Each test gets a fresh database,
dropped afterwards. Without the URL they skip, unless VALUETUNE_REQUIRE_POSTGRES=1 (CI),
where a missing server is a failure.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from valuetune.store import Database, SurveyStore

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the real user data dir; never inherit a database URL."""
    home = tmp_path / "home"
    monkeypatch.setenv("VALUETUNE_HOME", str(home))
    monkeypatch.delenv("VALUETUNE_DATABASE_URL", raising=False)
    return home


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    admin = os.environ.get("VALUETUNE_TEST_POSTGRES_URL")
    if not admin:
        if os.environ.get("VALUETUNE_REQUIRE_POSTGRES") == "1":
            pytest.fail("VALUETUNE_REQUIRE_POSTGRES=1 but VALUETUNE_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL server (set VALUETUNE_TEST_POSTGRES_URL)")
    name = f"vt_test_{secrets.token_hex(6)}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    for attempt in range(5):
        # CREATE DATABASE copies template1 and fails if another session is briefly
        # connected to it ("source database is being accessed by other users"): retry.
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            break
        except OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.5)
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'valuetune.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database.open(db_url)
    yield db
    db.dispose()


@pytest.fixture
def store(database: Database) -> SurveyStore:
    return SurveyStore(database)
