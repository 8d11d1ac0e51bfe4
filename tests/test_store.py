"""The survey store on real databases: SQLite (file) and PostgreSQL (fresh database per test)."""

from __future__ import annotations

import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from valuetune.errors import InvalidAnswerError, NotFoundError, StorageError
from valuetune.store import Database, SurveyStore
from valuetune.values.personas import load_personas
from valuetune.values.profile import ValueProfile
from valuetune.values.survey import Answer

SCHEMA = "axes/v1"


def _sqlite_path(db_url: str) -> Path:
    database = make_url(db_url).database
    assert database is not None
    return Path(database)


def _counts(database: Database, respondent_id: str) -> dict[str, int]:
    """Rows per table for one respondent, by direct SQL (not through the repository)."""
    queries = {
        "respondents": "SELECT count(*) FROM respondents WHERE id = :rid",
        "responses": "SELECT count(*) FROM responses WHERE respondent_id = :rid",
        "profiles": "SELECT count(*) FROM profiles WHERE respondent_id = :rid",
    }
    with database.engine.connect() as conn:
        return {
            table: int(conn.execute(text(sql), {"rid": respondent_id}).scalar_one())
            for table, sql in queries.items()
        }


def _persona_profile(index: int = 0) -> ValueProfile:
    return load_personas()[index].profile


# -- migrations ----------------------------------------------------------------------


def test_open_migrates_to_head(database: Database) -> None:
    head = database.head()
    assert head is not None
    assert database.revision() == head


def test_migrations_build_exactly_the_tables_the_models_declare(database: Database) -> None:
    """A model changed without a migration (or the reverse) shows up here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from valuetune.store.models import Base

    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_open_twice_is_idempotent(db_url: str, store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    store.record_answer(rid, "item-a", 2)
    again = Database.open(db_url)  # upgrade on an up-to-date database: a no-op
    try:
        assert again.revision() == again.head() == store.db.revision()
        again.upgrade()
        assert again.revision() == again.head()
        assert SurveyStore(again).answers(rid) == [Answer("item-a", 2)]
    finally:
        again.dispose()


# -- round trips ---------------------------------------------------------------------


def test_answers_round_trip_in_order_with_skip(store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    submitted = [("z-last-alphabetically", 4), ("a-first", None), ("m-middle", 0), ("b", 1)]
    for item_id, value in submitted:
        store.record_answer(rid, item_id, value, elapsed_ms=1234)
    assert store.answers(rid) == [Answer(i, v) for i, v in submitted]


def test_answers_of_fresh_respondent_is_empty(store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    assert store.answers(rid) == []


def test_profile_round_trip(store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    profile = _persona_profile(0)
    store.save_profile(rid, profile, complete=False)
    assert store.profile(rid) == profile
    # saving again replaces the stored profile (one row per respondent)
    other = _persona_profile(1)
    assert other != profile
    store.save_profile(rid, other, complete=True)
    assert store.profile(rid) == other
    assert _counts(store.db, rid)["profiles"] == 1


def test_profile_round_trip_with_uncertainty_and_boundaries(store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    base = ValueProfile.neutral(SCHEMA)
    profile = ValueProfile(
        SCHEMA,
        tuple(0.123 * (i - 7) for i in range(len(base.values))),
        tuple(0.1 + 0.01 * i for i in range(len(base.values))),
        tuple(-0.5 for _ in base.style),
        tuple(0.75 for _ in base.style),
        frozenset(base.axes.boundary_ids[:2]),
    )
    store.save_profile(rid, profile, complete=True)
    assert store.profile(rid) == profile
    assert store.profile(rid).to_json() == profile.to_json()


def test_profile_without_profile_and_unknown(store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    with pytest.raises(NotFoundError, match="no profile"):
        store.profile(rid)
    with pytest.raises(NotFoundError, match="nobody"):
        store.profile("nobody")


def test_latest_respondent(store: SurveyStore) -> None:
    with pytest.raises(NotFoundError):
        store.latest_respondent()
    first = store.create_respondent(SCHEMA)
    store.save_profile(first, _persona_profile(0), complete=True)
    second = store.create_respondent(SCHEMA)
    store.save_profile(second, _persona_profile(1), complete=False)
    third = store.create_respondent(SCHEMA)  # no profile yet
    assert store.latest_respondent() == second
    assert store.latest_respondent(with_profile=True) == second
    assert store.latest_respondent(with_profile=False) == third


def test_respondents_counts_answers_and_completion(store: SurveyStore) -> None:
    assert store.respondents() == []
    done = store.create_respondent(SCHEMA)
    for i in range(3):
        store.record_answer(done, f"item-{i}", i)
    store.save_profile(done, _persona_profile(0), complete=True)
    partial = store.create_respondent(SCHEMA)
    store.record_answer(partial, "item-0", None)
    store.save_profile(partial, _persona_profile(1), complete=False)
    empty = store.create_respondent(SCHEMA)

    rows = {r.id: r for r in store.respondents()}
    assert set(rows) == {done, partial, empty}
    assert [r.id for r in store.respondents()] == [done, partial, empty]  # by creation
    assert rows[done].answers == 3
    assert rows[partial].answers == 1  # a skip is an answer
    assert rows[empty].answers == 0
    assert rows[done].completed_at is not None
    assert rows[partial].completed_at is None
    assert rows[empty].completed_at is None
    assert all(r.schema == SCHEMA for r in rows.values())


def test_profiles_complete_only(store: SurveyStore) -> None:
    done = store.create_respondent(SCHEMA)
    store.save_profile(done, _persona_profile(0), complete=True)
    partial = store.create_respondent(SCHEMA)
    store.save_profile(partial, _persona_profile(1), complete=False)
    store.create_respondent(SCHEMA)  # no profile at all

    assert store.profiles(complete_only=True) == {done: _persona_profile(0)}
    assert store.profiles() == {done: _persona_profile(0)}
    assert store.profiles(complete_only=False) == {
        done: _persona_profile(0),
        partial: _persona_profile(1),
    }


def test_completion_is_not_undone_by_a_later_incomplete_save(store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    store.save_profile(rid, _persona_profile(0), complete=True)
    store.save_profile(rid, _persona_profile(2), complete=False)
    assert store.profiles() == {rid: _persona_profile(2)}


# -- refusals ------------------------------------------------------------------------


def test_same_item_twice_is_refused_and_first_answer_kept(store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    store.record_answer(rid, "item-a", 1)
    store.record_answer(rid, "item-b", None)
    with pytest.raises(InvalidAnswerError, match="item-a"):
        store.record_answer(rid, "item-a", 4)
    with pytest.raises(InvalidAnswerError, match="item-b"):
        store.record_answer(rid, "item-b", 2)
    assert store.answers(rid) == [Answer("item-a", 1), Answer("item-b", None)]
    # the store is still usable for this respondent afterwards, and seq keeps counting
    store.record_answer(rid, "item-c", 3)
    assert store.answers(rid) == [Answer("item-a", 1), Answer("item-b", None), Answer("item-c", 3)]
    assert _counts(store.db, rid)["responses"] == 3


def test_unknown_respondent_is_not_found(store: SurveyStore) -> None:
    with pytest.raises(NotFoundError, match="ghost"):
        store.record_answer("ghost", "item-a", 1)
    with pytest.raises(NotFoundError, match="ghost"):
        store.answers("ghost")
    with pytest.raises(NotFoundError, match="ghost"):
        store.save_profile("ghost", _persona_profile(0), complete=True)
    assert store.respondents() == []
    assert _counts(store.db, "ghost") == {"respondents": 0, "responses": 0, "profiles": 0}


# -- durability ----------------------------------------------------------------------


def test_answer_is_visible_to_a_new_engine(db_url: str, store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    store.record_answer(rid, "item-a", 3)
    store.record_answer(rid, "item-b", None)
    other = Database(db_url)  # brand-new engine, no shared pool
    try:
        assert other.engine is not store.db.engine
        assert SurveyStore(other).answers(rid) == [Answer("item-a", 3), Answer("item-b", None)]
    finally:
        other.dispose()


def test_answer_survives_dispose_of_the_writer(db_url: str) -> None:
    writer = Database.open(db_url)
    rid = SurveyStore(writer).create_respondent(SCHEMA)
    SurveyStore(writer).record_answer(rid, "item-a", 2)
    writer.dispose()
    reader = Database.open(db_url)
    try:
        assert SurveyStore(reader).answers(rid) == [Answer("item-a", 2)]
    finally:
        reader.dispose()


def test_concurrent_writers_lose_nothing(db_url: str, store: SurveyStore) -> None:
    n = 30
    rids = [store.create_respondent(SCHEMA) for _ in range(2)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(rids))

    def worker(rid: str) -> None:
        db = Database(db_url)
        try:
            own = SurveyStore(db)
            barrier.wait(timeout=30)
            for i in range(n):
                own.record_answer(rid, f"item-{i:02d}", i % 5)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=worker, args=(rid,)) for rid in rids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    for rid in rids:
        assert store.answers(rid) == [Answer(f"item-{i:02d}", i % 5) for i in range(n)]
        assert _counts(store.db, rid)["responses"] == n
    with store.db.engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM responses")).scalar_one()
        distinct = conn.execute(
            text("SELECT count(*) FROM (SELECT DISTINCT respondent_id, item_id FROM responses) t")
        ).scalar_one()
    assert total == distinct == 2 * n


# -- deletion ------------------------------------------------------------------------


def test_delete_respondent_removes_everything(store: SurveyStore) -> None:
    keep = store.create_respondent(SCHEMA)
    store.record_answer(keep, "item-a", 1)
    store.save_profile(keep, _persona_profile(1), complete=True)
    gone = store.create_respondent(SCHEMA)
    for i in range(4):
        store.record_answer(gone, f"item-{i}", i)
    store.save_profile(gone, _persona_profile(0), complete=True)
    assert _counts(store.db, gone) == {"respondents": 1, "responses": 4, "profiles": 1}

    store.delete_respondent(gone)

    assert _counts(store.db, gone) == {"respondents": 0, "responses": 0, "profiles": 0}
    assert _counts(store.db, keep) == {"respondents": 1, "responses": 1, "profiles": 1}
    assert [r.id for r in store.respondents()] == [keep]
    assert store.answers(keep) == [Answer("item-a", 1)]
    with pytest.raises(NotFoundError):
        store.answers(gone)
    with pytest.raises(NotFoundError):
        store.profile(gone)
    with pytest.raises(NotFoundError):
        store.delete_respondent(gone)  # twice


def test_self_placement_and_demographics_are_checked_kept_apart_and_erased(
    store: SurveyStore,
) -> None:
    from valuetune.store.demographics import DemographicsStore

    about = DemographicsStore(store.db)
    rid, other = store.create_respondent(SCHEMA), store.create_respondent(SCHEMA)
    assert about.placement(rid) is None and about.demographics(rid) is None
    about.save_placement(rid, "3", "prefer_not")
    about.save_demographics(rid, {"age": "25-34", "religion": "prefer_not", "gender": ""})
    about.save_demographics(other, {"region": "oceania"})
    assert about.placement(rid) == (3, None)
    assert about.demographics(rid) == {
        "age": "25-34",
        "gender": None,
        "region": None,
        "education": None,
        "religion": None,
    }
    for bad in ({"age": "17"}, {"shoe_size": "42"}, {"age": "<script>"}):
        with pytest.raises(InvalidAnswerError):
            about.save_demographics(rid, bad)
    for value in ("11", "-1", "three"):
        with pytest.raises(InvalidAnswerError):
            about.save_placement(rid, value, None)
    with pytest.raises(NotFoundError):
        about.save_placement("nobody", 1, 1)
    assert about.demographics(rid)["age"] == "25-34"  # refused writes changed nothing
    assert set(about.demographics_by_respondent()) == {rid, other}

    store.delete_respondent(rid)
    assert about.placement(rid) is None and about.demographics(rid) is None
    assert set(about.demographics_by_respondent()) == {other}


def test_exclusion_and_timed_answers(store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA)
    store.record_answer(rid, "item-a", 1, 1500)
    store.record_answer(rid, "item-b", None, None)
    timed = store.timed_answers(rid)
    assert [(a.item_id, a.value, a.elapsed_ms) for a in timed] == [
        ("item-a", 1, 1500),
        ("item-b", None, None),
    ]
    assert store.all_timed_answers() == {rid: timed}
    store.set_excluded(rid, "speeder")
    assert store.respondent(rid).excluded == "speeder"
    assert [r.excluded for r in store.respondents()] == ["speeder"]
    store.set_excluded(rid, None)
    assert store.respondent(rid).excluded is None
    with pytest.raises(NotFoundError):
        store.set_excluded("nobody", "x")


def test_admin_passwords_sessions_and_totp(database: Database) -> None:
    import base64
    import time as wall

    from valuetune.errors import ValuetuneError
    from valuetune.store.admin import AdminAuthError, AdminStore, totp_code

    now = [datetime(2026, 11, 29, 12, 0, tzinfo=UTC)]
    admins = AdminStore(database, clock=lambda: now[0])
    assert not admins.exists()
    password = admins.create_first()
    assert password and admins.exists() and admins.create_first() is None
    with pytest.raises(ValuetuneError, match="at least 12"):
        admins.set_password("admin", "short")
    for name, guess in (("admin", "wrong-password!"), ("nobody", password)):
        with pytest.raises(AdminAuthError):
            admins.sign_in(name, guess)
    cookie, session = admins.sign_in("admin", password)
    assert admins.session(cookie) == session and admins.session("forged") is None
    now[0] += timedelta(hours=9)  # sessions last 8 hours
    assert admins.session(cookie) is None
    cookie, _ = admins.sign_in("admin", password)
    admins.set_password("admin", "a new long password")  # ends every session
    assert admins.session(cookie) is None
    secret = admins.set_totp("admin", True)
    assert secret and len(base64.b32decode(secret)) == 20 and admins.totp_enabled("admin")
    with pytest.raises(AdminAuthError):
        admins.sign_in("admin", "a new long password", "000000")
    cookie, _ = admins.sign_in("admin", "a new long password", totp_code(secret, wall.time()))
    admins.sign_out(cookie)
    assert admins.session(cookie) is None


def test_delete_unknown_respondent(store: SurveyStore) -> None:
    with pytest.raises(NotFoundError, match="nobody"):
        store.delete_respondent("nobody")


# -- SQLite specifics ----------------------------------------------------------------

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@sqlite_only
def test_sqlite_pragmas(database: Database) -> None:
    assert database.is_sqlite
    # two connections at once, so both come from the pool's connect event
    with database.engine.connect() as a, database.engine.connect() as b:
        for conn in (a, b):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@sqlite_only
def test_sqlite_file_mode(db_url: str, store: SurveyStore) -> None:
    path = _sqlite_path(db_url)
    rid = store.create_respondent(SCHEMA)
    store.record_answer(rid, "item-a", 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    wal = Path(f"{path}-wal")
    if wal.exists():  # SQLite gives the WAL the database file's permissions
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600


def test_sqlite_file_mode_in_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "dir" / "valuetune.sqlite3"
    db = Database.open(f"sqlite:///{path}")
    try:
        assert db.revision() == db.head()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        db.dispose()


@sqlite_only
def test_sqlite_delete_leaves_no_trace_in_files(db_url: str, store: SurveyStore) -> None:
    path = _sqlite_path(db_url)
    keep = store.create_respondent(SCHEMA)
    store.record_answer(keep, "item-keep", 1)
    store.save_profile(keep, _persona_profile(1), complete=True)
    gone = store.create_respondent(SCHEMA)
    for i in range(12):
        store.record_answer(gone, f"item-{i:02d}", i % 5)
    store.save_profile(gone, _persona_profile(0), complete=True)
    with store.db.engine.connect() as conn:  # put the rows in the main file too
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    assert gone.encode() in path.read_bytes()  # the check below can fail

    store.delete_respondent(gone)  # checkpoints and truncates the log itself

    assert gone.encode() not in path.read_bytes()
    wal = Path(f"{path}-wal")
    if wal.exists():
        assert gone.encode() not in wal.read_bytes()
    assert keep.encode() in path.read_bytes()


# -- errors --------------------------------------------------------------------------


def test_unreachable_database_hides_password() -> None:
    url = "postgresql+psycopg://u:secret@127.0.0.1:1/db"
    with pytest.raises(StorageError) as info:
        Database.open(url)
    message = str(info.value)
    assert "secret" not in message
    assert "***" in message
    assert "postgresql+psycopg://u:***@127.0.0.1:1/db" in message
    assert info.value.__cause__ is None  # `from None`: no driver error with the URL attached


@pytest.mark.parametrize("url", ["not a url", "", "://nothing"])
def test_malformed_url(url: str) -> None:
    with pytest.raises(StorageError):
        Database.open(url)


def test_unknown_driver_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot use database"):
        Database.open("nosuchdialect://u:secret@localhost/db")


def test_sqlite_path_under_a_file_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        Database.open(f"sqlite:///{blocker / 'valuetune.sqlite3'}")


def test_resume_reads_the_respondent_and_answers_together(store: SurveyStore) -> None:
    rid = store.create_respondent(SCHEMA, {"max_value_items": 3})
    store.record_answer(rid, "item-b", 2)
    store.record_answer(rid, "item-a", None)
    summary, answers = store.resume(rid)
    assert summary == store.respondent(rid) and summary.answers == 2
    assert answers == store.answers(rid) == [Answer("item-b", 2), Answer("item-a", None)]
    with pytest.raises(NotFoundError):
        store.resume("nobody")
