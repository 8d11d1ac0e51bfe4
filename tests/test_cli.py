"""The `valuetune` command line through typer's CliRunner, and once as a real process.

The autouse `_isolated_home` fixture points VALUETUNE_HOME at a temporary directory, so
the CLI's default database is a fresh SQLite file there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from valuetune.cli.main import app
from valuetune.store import Database, SurveyStore
from valuetune.values.items import ItemKind, load_item_bank
from valuetune.values.personas import load_personas
from valuetune.values.profile import ValueProfile
from valuetune.values.survey import Answer

SCHEMA = "axes/v1"
# Each question takes the first answer in the stream that is valid for its kind:
# "4" for Likert/attention, "1" for a forced choice (after "4" is refused), "y" for boundaries.
CYCLE = ["4", "1", "y"]
LONG_INPUT = "\n".join(CYCLE * 200) + "\n"
VALID = {
    ItemKind.LIKERT: {str(i + 1): i for i in range(5)},
    ItemKind.ATTENTION: {str(i + 1): i for i in range(5)},
    ItemKind.CHOICE: {"1": 1, "2": 0},
    ItemKind.BOUNDARY: {"y": 1, "yes": 1, "n": 0, "no": 0},
}
REPROMPT = "Please answer"

runner = CliRunner()


def invoke(
    args: Sequence[str], input: str | None = None, env: dict[str, str] | None = None
) -> Result:
    return runner.invoke(app, list(args), input=input, env=env)


def flat(text: str) -> str:
    """Output with rich's line wrapping undone (whitespace runs become one space)."""
    return " ".join(text.split())


def home() -> Path:
    return Path(os.environ["VALUETUNE_HOME"])


def sqlite_url() -> str:
    return f"sqlite:///{home() / 'valuetune.sqlite3'}"


@pytest.fixture
def cli_store() -> Iterator[SurveyStore]:
    """The store the CLI uses by default: the SQLite file under VALUETUNE_HOME."""
    db = Database.open(sqlite_url())
    yield SurveyStore(db)
    db.dispose()


def only_respondent(store: SurveyStore) -> str:
    rows = store.respondents()
    assert len(rows) == 1, rows
    return rows[0].id


def expected_answers(answers: list[Answer], tokens: list[str]) -> tuple[list[Answer], int]:
    """Replay the input stream against the asked items: (answers expected, re-prompts)."""
    bank = load_item_bank()
    stream = iter(tokens)
    expected, refused = [], 0
    for answer in answers:
        valid = VALID[bank.get(answer.item_id).kind]
        for token in stream:
            if token in valid:
                expected.append(Answer(answer.item_id, valid[token]))
                break
            refused += 1
    return expected, refused


# -- personas ------------------------------------------------------------------------


def test_personas_list_json() -> None:
    result = invoke(["personas", "list", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc) >= 16
    assert [p["id"] for p in doc] == [p.id for p in load_personas()]
    assert all(set(p) == {"id", "name", "summary"} and p["name"] for p in doc)


def test_personas_list_table() -> None:
    result = invoke(["personas", "list"])
    assert result.exit_code == 0, result.output
    assert "secular-humanist" in result.stdout


@pytest.mark.parametrize("index", [0, 5, -1])
def test_personas_show_json_is_canonical_profile(index: int) -> None:
    persona = load_personas()[index]
    result = invoke(["personas", "show", persona.id, "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == persona.profile.to_json()
    assert result.stdout.count("\n") == 1
    assert ValueProfile.from_json(result.stdout) == persona.profile


def test_personas_show_unknown() -> None:
    result = invoke(["personas", "show", "no-such-persona"])
    assert result.exit_code != 0
    assert "no-such-persona" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


# -- survey --------------------------------------------------------------------------


def test_full_survey(cli_store: SurveyStore) -> None:
    result = invoke(["survey", "--max-items", "8"], input=LONG_INPUT)
    assert result.exit_code == 0, result.output
    rid = only_respondent(cli_store)
    assert rid in result.output
    assert f"valuetune profile show {rid} --json" in flat(result.output)

    # every question took the first valid answer in the stream, and only that
    stored = cli_store.answers(rid)
    expected, refused = expected_answers(stored, LONG_INPUT.split())
    assert stored == expected
    assert result.output.count(REPROMPT) == refused
    kinds = {load_item_bank().get(a.item_id).kind for a in stored}
    assert {ItemKind.LIKERT, ItemKind.BOUNDARY} <= kinds
    bank = load_item_bank()
    value_ids = set(bank.axes.value_ids)
    value_items = [
        a
        for a in stored
        if bank.get(a.item_id).graded and set(bank.get(a.item_id).loadings) <= value_ids
    ]
    assert len(value_items) <= 8

    shown = invoke(["profile", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    profile = ValueProfile.from_json(shown.stdout)
    assert shown.stdout.strip() == profile.to_json()
    assert profile == cli_store.profile(rid)
    assert profile.boundaries == frozenset(profile.axes.boundary_ids)  # all answered y
    assert profile != ValueProfile.neutral()

    listed = invoke(["profile", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert len(rows) == 1
    assert rows[0]["id"] == rid
    assert rows[0]["completed_at"] is not None
    assert rows[0]["answers"] == len(stored)


def test_quit_and_resume(cli_store: SurveyStore) -> None:
    # the first questions are value items (Likert or choice): "2" and "1" are valid for both
    first = invoke(["survey", "--max-items", "8"], input="2\n1\n2\nq\n")
    assert first.exit_code == 0, first.output
    rid = only_respondent(cli_store)
    assert f"--resume {rid}" in flat(first.output)
    before = cli_store.answers(rid)
    assert len(before) == 3
    assert before == expected_answers(before, ["2", "1", "2"])[0]
    assert cli_store.respondents()[0].completed_at is None
    assert cli_store.profiles() == {}  # saved, but not complete
    assert rid in cli_store.profiles(complete_only=False)

    resumed = invoke(["survey", "--max-items", "8", "--resume", rid], input=LONG_INPUT)
    assert resumed.exit_code == 0, resumed.output
    assert "after 3 answers" in flat(resumed.output)
    after = cli_store.answers(rid)
    assert after[:3] == before
    assert len(after) > 3
    assert len({a.item_id for a in after}) == len(after)  # nothing asked twice
    assert after[3:] == expected_answers(after[3:], LONG_INPUT.split())[0]
    assert only_respondent(cli_store) == rid  # no new respondent
    assert cli_store.respondents()[0].completed_at is not None
    assert set(cli_store.profiles()) == {rid}

    again = invoke(["survey", "--max-items", "8", "--resume", rid], input=LONG_INPUT)
    assert again.exit_code != 0
    assert "already completed" in flat(again.stderr)
    assert "Traceback" not in again.output
    assert cli_store.answers(rid) == after


def test_resume_of_completed_survey_with_other_flags_is_refused(cli_store: SurveyStore) -> None:
    done = invoke(["survey", "--max-items", "8"], input=LONG_INPUT)
    assert done.exit_code == 0, done.output
    rid = only_respondent(cli_store)
    finished = cli_store.answers(rid)
    again = invoke(["survey", "--resume", rid], input=LONG_INPUT)  # default --max-items 20
    assert cli_store.answers(rid) == finished
    assert again.exit_code != 0
    assert "already completed" in flat(again.stderr)


def test_resume_keeps_the_settings_the_survey_started_with(cli_store: SurveyStore) -> None:
    started = invoke(["survey", "--max-items", "5", "--no-boundaries"], input="2\n2\nq\n")
    assert started.exit_code == 0, started.output
    rid = only_respondent(cli_store)
    summary = cli_store.respondent(rid)
    assert summary.survey_config is not None
    assert summary.survey_config["max_value_items"] == 5
    assert summary.survey_config["ask_boundaries"] is False
    resumed = invoke(["survey", "--resume", rid], input=LONG_INPUT)  # no flags given
    assert resumed.exit_code == 0, resumed.output
    asked = [a.item_id for a in cli_store.answers(rid)]
    assert not [i for i in asked if i.startswith("boundary-")]
    value_items = [i for i in asked if not i.startswith(("style-", "attention-"))]
    assert len(value_items) == 5


def test_resume_unknown_respondent(cli_store: SurveyStore) -> None:
    result = invoke(["survey", "--resume", "nobody"], input=LONG_INPUT)
    assert result.exit_code != 0
    assert "nobody" in result.stderr
    assert "Traceback" not in result.output
    assert cli_store.respondents() == []


def test_input_ending_early(cli_store: SurveyStore) -> None:
    result = invoke(["survey", "--max-items", "8"], input="2\n2\n")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    rid = only_respondent(cli_store)
    text = flat(result.output)
    assert "2 answers are saved" in text
    assert f"--resume {rid}" in text
    assert len(cli_store.answers(rid)) == 2
    assert cli_store.respondents()[0].completed_at is None


def test_invalid_input_reprompts(cli_store: SurveyStore) -> None:
    result = invoke(["survey", "--max-items", "8"], input="7\nhello\n\n2\nq\n")
    assert result.exit_code == 0, result.output
    assert result.output.count(REPROMPT) == 3  # "7", "hello" and the empty line
    rid = only_respondent(cli_store)
    stored = cli_store.answers(rid)
    assert len(stored) == 1
    assert stored == expected_answers(stored, ["2"])[0]


def test_skip_is_stored_as_none(cli_store: SurveyStore) -> None:
    result = invoke(["survey", "--max-items", "8"], input="s\n2\nq\n")
    assert result.exit_code == 0, result.output
    stored = cli_store.answers(only_respondent(cli_store))
    assert len(stored) == 2
    assert stored[0].value is None
    assert stored[1].value is not None


def test_survey_json_prints_profile_as_last_stdout_line(cli_store: SurveyStore) -> None:
    result = invoke(["survey", "--max-items", "8", "--json"], input=LONG_INPUT)
    assert result.exit_code == 0, result.output
    rid = only_respondent(cli_store)
    assert "Question 1" in result.stderr  # interactive text goes to stderr
    last = result.stdout.strip().splitlines()[-1]
    assert ValueProfile.from_json(last) == cli_store.profile(rid)
    assert last == cli_store.profile(rid).to_json()
    assert "Your answer" not in result.stdout  # stdout holds only the JSON document


def test_survey_json_keeps_interactive_text_off_stdout(cli_store: SurveyStore) -> None:
    result = invoke(["survey", "--max-items", "8", "--json"], input=LONG_INPUT)
    assert result.exit_code == 0, result.output
    rid = only_respondent(cli_store)
    assert "Question 1" in result.stderr
    assert "valuetune survey" in result.stderr  # the consent panel
    assert "Question 1" not in result.stdout
    assert "Boundaries" not in result.stdout
    # the profile document is the whole of stdout
    assert result.stdout.rstrip("\n").endswith(cli_store.profile(rid).to_json())


# -- simulate ------------------------------------------------------------------------


def test_simulate_json_is_reproducible() -> None:
    args = ["simulate", "--respondents", "4", "--max-items", "10", "--seed", "1", "--json"]
    first = invoke(args)
    second = invoke(args)
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    for strategy in ("adaptive", "random"):
        assert set(doc[strategy]) == {"5", "10"}
        for entry in doc[strategy].values():
            assert set(entry) == {"r", "rmse"}
            assert -1.0 <= entry["r"] <= 1.0
            assert entry["rmse"] >= 0.0
    assert set(doc["full"]) == {"r", "rmse"}
    assert doc["config"]["respondents"] == 4
    assert doc["config"]["seed"] == 1

    other = invoke(["simulate", "--respondents", "4", "--max-items", "10", "--seed", "2", "--json"])
    assert other.exit_code == 0, other.output
    assert other.stdout != first.stdout


# -- profile -------------------------------------------------------------------------


def test_profile_show_without_profiles() -> None:
    result = invoke(["profile", "show"])
    assert result.exit_code != 0
    assert "no stored profiles" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_profile_show_unknown_id(cli_store: SurveyStore) -> None:
    rid = cli_store.create_respondent(SCHEMA)
    cli_store.save_profile(rid, load_personas()[0].profile, complete=True)
    result = invoke(["profile", "show", "--json", "nobody-here"])
    assert result.exit_code != 0
    assert "nobody-here" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_profile_show_by_id(cli_store: SurveyStore) -> None:
    personas = load_personas()
    first = cli_store.create_respondent(SCHEMA)
    cli_store.save_profile(first, personas[0].profile, complete=True)
    second = cli_store.create_respondent(SCHEMA)
    cli_store.save_profile(second, personas[1].profile, complete=True)
    by_id = invoke(["profile", "show", first, "--json"])
    assert by_id.exit_code == 0, by_id.output
    assert by_id.stdout.strip() == personas[0].profile.to_json()
    latest = invoke(["profile", "show", "--json"])
    assert latest.stdout.strip() == personas[1].profile.to_json()
    table = invoke(["profile", "show", first])
    assert table.exit_code == 0, table.output
    assert first in table.stdout


def test_unreachable_database_url() -> None:
    result = invoke(
        ["--database-url", "postgresql+psycopg://u:pw@127.0.0.1:1/x", "profile", "list"]
    )
    assert result.exit_code != 0
    assert "cannot" in result.stderr
    assert "Traceback" not in result.output
    assert "pw@" not in result.output
    assert "u:***@127.0.0.1:1/x" in result.stderr


def test_unreachable_database_url_from_environment() -> None:
    result = invoke(
        ["profile", "list"],
        env={"VALUETUNE_DATABASE_URL": "postgresql+psycopg://u:pw@127.0.0.1:1/x"},
    )
    assert result.exit_code != 0
    assert "cannot" in result.stderr
    assert "pw@" not in result.output


def test_home_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = invoke(["--home", str(blocker), "profile", "list"])
    assert result.exit_code != 0
    assert "error:" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_profile_clusters(cli_store: SurveyStore) -> None:
    personas = load_personas()[:6]
    ids = []
    for persona in personas:
        rid = cli_store.create_respondent(SCHEMA)
        cli_store.save_profile(rid, persona.profile, complete=True)
        ids.append(rid)
    result = invoke(["profile", "clusters", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["k"] >= 2
    assert len(doc["clusters"]) == doc["k"]
    members = [m for c in doc["clusters"] for m in c["members"]]
    assert sorted(members) == sorted(ids)  # each respondent in exactly one group
    assert all(c["size"] == len(c["members"]) >= 1 for c in doc["clusters"])
    known = {p.id for p in load_personas()}
    assert all(c["nearest_persona"] in known for c in doc["clusters"])


def test_profile_clusters_needs_two(cli_store: SurveyStore) -> None:
    rid = cli_store.create_respondent(SCHEMA)
    cli_store.save_profile(rid, load_personas()[0].profile, complete=True)
    result = invoke(["profile", "clusters", "--json"])
    assert result.exit_code != 0
    assert "at least two" in result.stderr
    assert "Traceback" not in result.output


def test_profile_delete(cli_store: SurveyStore) -> None:
    keep = cli_store.create_respondent(SCHEMA)
    cli_store.save_profile(keep, load_personas()[0].profile, complete=True)
    gone = cli_store.create_respondent(SCHEMA)
    cli_store.record_answer(gone, "item-a", 1)
    cli_store.save_profile(gone, load_personas()[1].profile, complete=True)

    declined = invoke(["profile", "delete", gone], input="n\n")
    assert declined.exit_code != 0
    assert {r.id for r in cli_store.respondents()} == {keep, gone}

    result = invoke(["profile", "delete", gone, "--yes"])
    assert result.exit_code == 0, result.output
    assert gone in result.stdout
    listed = invoke(["profile", "list", "--json"])
    assert [r["id"] for r in json.loads(listed.stdout)] == [keep]
    assert [r.id for r in cli_store.respondents()] == [keep]

    again = invoke(["profile", "delete", gone, "--yes"])
    assert again.exit_code != 0
    assert gone in again.stderr
    assert "Traceback" not in again.output


# -- db ------------------------------------------------------------------------------


def test_db_status_json() -> None:
    result = invoke(["db", "status", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["backend"] == "sqlite"
    assert doc["head"] is not None
    assert doc["revision"] == doc["head"]
    assert doc["respondents"] == 0
    assert str(home() / "valuetune.sqlite3") in doc["database"]
    assert (home() / "valuetune.sqlite3").exists()


# -- a real process ------------------------------------------------------------------

EXECUTABLE = Path(sys.executable).parent / "valuetune"


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VALUETUNE_HOME": str(home())}
    env.pop("VALUETUNE_DEBUG", None)
    return subprocess.run(
        [str(EXECUTABLE), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_console_script() -> None:
    assert EXECUTABLE.exists()
    shown = _run(["personas", "show", "secular-humanist", "--json"])
    assert shown.returncode == 0, shown.stderr
    profile = ValueProfile.from_json(shown.stdout)
    assert profile == {p.id: p for p in load_personas()}["secular-humanist"].profile
    assert shown.stdout == profile.to_json() + "\n"

    missing = _run(["profile", "show", "nonexistent"])
    assert missing.returncode != 0
    assert "nonexistent" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert "unexpected error" not in missing.stderr
    assert missing.stdout == ""


def test_cli_import_is_light() -> None:
    code = (
        "import json, sys; import valuetune.cli.main; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('numpy', 'scipy', 'sqlalchemy', 'alembic'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == []
