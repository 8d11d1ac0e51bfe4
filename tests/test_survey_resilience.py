"""The terminal survey as a real process against a real PostgreSQL server that goes away.

Answers submitted before the outage must survive it; the process must say what happened
and how to resume, exit non-zero and print no traceback; after the outage `--resume`
continues with the earlier answers intact.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from valuetune.store import Database, SurveyStore

VALUETUNE = str(Path(sys.executable).parent / "valuetune")


def _answers_stored(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM responses")).scalar_one())
    finally:
        engine.dispose()


def _set_connections(admin_url: str, database: str, *, allowed: bool) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
        if not allowed:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": database},
            )
    engine.dispose()


@pytest.mark.postgres
def test_database_outage_mid_survey_loses_nothing_and_resume_continues(
    postgres_url: str, tmp_path: Path
) -> None:
    admin = os.environ["VALUETUNE_TEST_POSTGRES_URL"]
    database = make_url(postgres_url).database
    assert database is not None
    Database.open(postgres_url).dispose()  # migrate first, so the poll below can count
    env = {**os.environ, "VALUETUNE_DATABASE_URL": postgres_url, "VALUETUNE_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [VALUETUNE, "survey", "--max-items", "6"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdin is not None
    try:
        for expected in (1, 2, 3):
            proc.stdin.write("4\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 30
            while _answers_stored(postgres_url) < expected:
                assert time.monotonic() < deadline, "answer was not stored"
                time.sleep(0.05)
        _set_connections(admin, database, allowed=False)
        out, err = proc.communicate("4\n", timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
        _set_connections(admin, database, allowed=True)
    assert proc.returncode != 0
    assert "Traceback" not in err and "Traceback" not in out
    assert "cannot" in err and "--resume" in err
    assert _answers_stored(postgres_url) == 3

    db = Database.open(postgres_url)
    store = SurveyStore(db)
    respondent = store.respondents()[0].id
    before = store.answers(respondent)
    db.dispose()
    resumed = subprocess.run(
        [VALUETUNE, "survey", "--resume", respondent, "--max-items", "6"],
        input="4\n1\ny\n" * 60,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    db = Database.open(postgres_url)
    store = SurveyStore(db)
    after = store.answers(respondent)
    assert after[:3] == before
    assert len(after) > 3
    assert store.respondents()[0].completed_at is not None
    db.dispose()
