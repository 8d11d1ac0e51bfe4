"""`valuetune token`, `keys`, `alias` and `precis` through typer's CliRunner.

The autouse `_isolated_home` fixture points VALUETUNE_HOME at a temporary directory, so
each test has a fresh issuer (key ring) and a fresh SQLite database there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from valuetune.cli.main import app
from valuetune.store import Database, SurveyStore
from valuetune.token.paseto import TokenProblem
from valuetune.token.payload import quantize
from valuetune.token.precis import PrecisLength, write_precis
from valuetune.token.words import load_wordlist
from valuetune.values.personas import get_persona

SCHEMA = "axes/v1"
PERSONA = get_persona("secular-humanist")

runner = CliRunner()


def invoke(
    args: Sequence[str], input: str | None = None, env: dict[str, str] | None = None
) -> Result:
    return runner.invoke(app, list(args), input=input, env=env)


def ok(args: Sequence[str], input: str | None = None) -> Result:
    result = invoke(args, input)
    assert result.exit_code == 0, result.output
    return result


def ok_json(args: Sequence[str], input: str | None = None) -> Any:
    return json.loads(ok([*args, "--json"], input).stdout)


def home() -> Path:
    return Path(os.environ["VALUETUNE_HOME"])


def clean_failure(result: Result, message: str) -> None:
    """A non-zero exit with `message` on stderr, nothing on stdout, no traceback."""
    assert result.exit_code != 0, result.output
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def refused(result: Result, problem: TokenProblem) -> None:
    """The token refusal contract: exit 3 and `token refused: <reason>` on stderr."""
    assert result.exit_code == 3, result.output
    clean_failure(result, f"token refused: {problem.value}")


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(PERSONA.profile.to_json())
    return path


def mint(profile_file: Path) -> dict[str, Any]:
    doc: dict[str, Any] = ok_json(["token", "mint", "--profile", str(profile_file)])
    return doc


@pytest.fixture
def minted(profile_file: Path) -> dict[str, Any]:
    return mint(profile_file)


@pytest.fixture
def cli_store() -> Iterator[SurveyStore]:
    """The store the CLI uses by default: the SQLite file under VALUETUNE_HOME."""
    db = Database.open(f"sqlite:///{home() / 'valuetune.sqlite3'}")
    yield SurveyStore(db)
    db.dispose()


def expected_precis(length: PrecisLength) -> str:
    return write_precis(quantize(PERSONA.profile), length)


# -- mint and verify -------------------------------------------------------------------


def test_mint_from_a_persona_file_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "persona.json"
    path.write_text(ok(["personas", "show", PERSONA.id, "--json"]).stdout)
    doc = mint(path)
    assert {"token", "jti", "sub", "kid", "expires_at"} <= doc.keys()
    assert doc["token"].startswith("v4.local.")
    assert len(doc["token"]) <= 400
    assert doc["length"] == len(doc["token"])

    verified = ok_json(["token", "verify", doc["token"]])
    assert verified["profile"] == quantize(PERSONA.profile).to_dict()
    assert (verified["jti"], verified["sub"], verified["kid"]) == (
        doc["jti"],
        doc["sub"],
        doc["kid"],
    )
    assert verified["purpose"] == "preference"
    assert verified["expires_at"] == doc["expires_at"]

    from_stdin = ok_json(["token", "verify", "-"], input=doc["token"] + "\n")
    assert from_stdin == verified

    plain = ok(["token", "verify", doc["token"]])
    assert f"valid preference token {doc['jti']}" in plain.stdout


def test_plain_mint_prints_only_the_token(profile_file: Path) -> None:
    token = ok(["token", "mint", "--profile", str(profile_file)]).stdout
    assert token.count("\n") == 1
    assert ok_json(["token", "verify", token.strip()])["profile"] == (
        quantize(PERSONA.profile).to_dict()
    )


def test_mints_for_one_respondent_share_a_subject(cli_store: SurveyStore) -> None:
    respondent = cli_store.create_respondent(SCHEMA)
    cli_store.save_profile(respondent, PERSONA.profile, complete=True)
    first = ok_json(["token", "mint", "--respondent", respondent])
    second = ok_json(["token", "mint", "--respondent", respondent])
    assert first["sub"] == second["sub"]
    assert first["jti"] != second["jti"]
    assert first["token"] != second["token"]
    stranger = cli_store.create_respondent(SCHEMA)
    cli_store.save_profile(stranger, PERSONA.profile, complete=True)
    assert ok_json(["token", "mint", "--respondent", stranger])["sub"] != first["sub"]
    for doc in (first, second):
        verified = ok_json(["token", "verify", doc["token"]])
        assert verified["profile"] == quantize(PERSONA.profile).to_dict()


def test_revoke_all_refuses_every_earlier_token_of_the_holder(cli_store: SurveyStore) -> None:
    respondent = cli_store.create_respondent(SCHEMA)
    cli_store.save_profile(respondent, PERSONA.profile, complete=True)
    first = ok_json(["token", "mint", "--respondent", respondent])
    second = ok_json(["token", "mint", "--respondent", respondent])
    done = ok_json(["token", "revoke", first["jti"], "--all"])
    assert done["all_of_subject"] is True
    refused(invoke(["token", "verify", first["token"]]), TokenProblem.REVOKED)
    refused(invoke(["token", "verify", second["token"]]), TokenProblem.REVOKED)
    time.sleep(1.1)  # tokens carry whole seconds; the next one is issued after the cut-off
    fresh = ok_json(["token", "mint", "--respondent", respondent])
    assert ok_json(["token", "verify", fresh["token"]])["sub"] == first["sub"]


def test_mint_for_an_unknown_respondent(minted: dict[str, Any]) -> None:
    clean_failure(invoke(["token", "mint", "--respondent", "nobody-here"]), "nobody-here")


# -- refusals ----------------------------------------------------------------------------


def _tamper(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_tamper, TokenProblem.TAMPERED),
        (lambda _: "hello", TokenProblem.NOT_VALUETUNE),
        (lambda t: t[:9] + "A" * (3000 - 9), TokenProblem.OVERSIZED),
    ],
    ids=["tampered", "not a token", "too long"],
)
def test_bad_tokens_are_refused(minted: dict[str, Any], make: Any, problem: TokenProblem) -> None:
    bad = make(minted["token"])
    assert bad != minted["token"]
    refused(invoke(["token", "verify", bad]), problem)
    refused(invoke(["token", "verify", bad, "--json"]), problem)
    if bad.startswith("v4."):  # anything else `precis` reads as an alias
        refused(invoke(["precis", bad]), problem)


def test_revoked_tokens_are_refused(profile_file: Path) -> None:
    by_token, by_jti, kept = mint(profile_file), mint(profile_file), mint(profile_file)
    assert ok(["token", "revoke", by_token["token"]]).stdout == f"revoked {by_token['jti']}\n"
    revoked = ok_json(["token", "revoke", by_jti["jti"]])
    assert revoked["jti"] == by_jti["jti"]
    assert revoked["revoked_at"]
    for doc in (by_token, by_jti):
        refused(invoke(["token", "verify", doc["token"]]), TokenProblem.REVOKED)
    ok(["token", "verify", kept["token"]])


def test_ids_that_would_start_with_a_dash_are_drawn_again(
    profile_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A jti is typed as an argument; one starting with "-" would read as an option.

    CI once drew such a jti (one in 64 do) and `token revoke JTI` failed with "No such
    option". Every draw below starts with "-" once before a usable one comes.
    """
    import secrets

    draw = secrets.token_urlsafe
    dashed: list[str] = []

    def dash_first(nbytes: int) -> str:
        if len(dashed) % 2 == 0:
            dashed.append("-" + draw(nbytes)[1:])
            return dashed[-1]
        dashed.append(draw(nbytes))
        return dashed[-1]

    monkeypatch.setattr(secrets, "token_urlsafe", dash_first)
    minted = mint(profile_file)
    assert dashed[0].startswith("-") and minted["jti"] in dashed[1:]
    assert not minted["jti"].startswith("-") and not minted["sub"].startswith("-")
    assert ok_json(["token", "revoke", minted["jti"]])["jti"] == minted["jti"]
    refused(invoke(["token", "verify", minted["token"]]), TokenProblem.REVOKED)


def test_revoking_an_unknown_jti(minted: dict[str, Any]) -> None:
    clean_failure(invoke(["token", "revoke", "no-such-jti"]), "no-such-jti")


def test_a_token_from_another_issuer_is_refused(tmp_path: Path, profile_file: Path) -> None:
    elsewhere = {"VALUETUNE_HOME": str(tmp_path / "other-issuer")}
    theirs = invoke(["token", "mint", "--profile", str(profile_file)], env=elsewhere)
    assert theirs.exit_code == 0, theirs.output
    token = theirs.stdout.strip()
    # it is a good token where it was issued...
    assert invoke(["token", "verify", token], env=elsewhere).exit_code == 0
    # ...and refused here, where no key has its id
    mint(profile_file)
    refused(invoke(["token", "verify", token]), TokenProblem.UNKNOWN_KEY)


def test_tokens_for_other_purposes_are_refused_as_preference(minted: dict[str, Any]) -> None:
    reference = ok(["token", "reference", minted["token"]]).stdout.strip()
    alias = ok_json(["alias", "create", "--token", minted["token"], "--share", "token"])["alias"]
    share = ok_json(["alias", "resolve", alias])["content"]
    assert share.startswith("v4.local.")
    for other in (reference, share):
        refused(invoke(["token", "verify", other]), TokenProblem.WRONG_PURPOSE)
        assert "another purpose" in invoke(["token", "verify", other]).stderr
    refused(
        invoke(["token", "verify", reference, "--purpose", "share"]), TokenProblem.WRONG_PURPOSE
    )
    refused(
        invoke(["token", "verify", minted["token"], "--purpose", "share"]),
        TokenProblem.WRONG_PURPOSE,
    )


def test_unknown_purpose_option(minted: dict[str, Any]) -> None:
    clean_failure(
        invoke(["token", "verify", minted["token"], "--purpose", "bogus"]), "--purpose must be"
    )


def test_tokens_of_an_erased_respondent_are_refused(cli_store: SurveyStore) -> None:
    respondent = cli_store.create_respondent(SCHEMA)
    cli_store.save_profile(respondent, PERSONA.profile, complete=True)
    doc = ok_json(["token", "mint", "--respondent", respondent])
    ok(["token", "verify", doc["token"]])
    ok(["profile", "delete", respondent, "--yes"])
    refused(invoke(["token", "verify", doc["token"]]), TokenProblem.ERASED)
    assert "erased" in invoke(["token", "verify", doc["token"]]).stderr
    assert ok_json(["token", "show", doc["jti"]])["status"] == "erased"


# -- show ------------------------------------------------------------------------------


def test_show_by_token_and_by_jti(minted: dict[str, Any]) -> None:
    by_token = ok_json(["token", "show", minted["token"]])
    by_jti = ok_json(["token", "show", minted["jti"]])
    assert by_token == by_jti
    assert by_token["status"] == "active"
    assert by_token["revoked_at"] is None
    assert (by_token["jti"], by_token["sub"], by_token["kid"], by_token["purpose"]) == (
        minted["jti"],
        minted["sub"],
        minted["kid"],
        "preference",
    )
    plain = ok(["token", "show", minted["token"]]).stdout
    assert "status: active" in plain
    for output in (json.dumps(by_token), plain):
        assert "values" not in output
        assert "profile" not in output
        assert "care" not in output

    ok(["token", "revoke", minted["jti"]])
    after = ok_json(["token", "show", minted["jti"]])
    assert after["status"] == "revoked"
    assert after["revoked_at"] is not None
    assert "values" not in json.dumps(after)


def test_show_a_revoked_token_by_the_token_itself(minted: dict[str, Any]) -> None:
    ok(["token", "revoke", minted["token"]])
    assert ok_json(["token", "show", minted["token"]])["status"] == "revoked"


# -- reference tokens ------------------------------------------------------------------


def test_reference_token_names_the_original_and_carries_no_values(
    minted: dict[str, Any],
) -> None:
    reference = ok_json(["token", "reference", minted["token"]])
    assert reference["token"].startswith("v4.public.")
    assert reference["sub"] == minted["sub"]
    assert reference["jti"] != minted["jti"]
    verified = ok_json(["token", "verify", reference["token"], "--purpose", "reference"])
    assert verified["ref"] == minted["jti"]
    assert verified["purpose"] == "reference"
    assert "profile" not in verified
    public = next(k for k in ok_json(["keys", "list"]) if k["kind"] == "public")
    assert public["footer_id"] == verified["kid"]


# -- keys ------------------------------------------------------------------------------


def test_keys_list_has_one_current_key_of_each_kind(minted: dict[str, Any]) -> None:
    keys = ok_json(["keys", "list"])
    assert sorted(k["kind"] for k in keys) == ["local", "public"]
    assert all(k["current"] for k in keys)
    local = next(k for k in keys if k["kind"] == "local")
    public = next(k for k in keys if k["kind"] == "public")
    assert public["public_paserk"].startswith("k4.public.")
    assert local["public_paserk"] is None
    assert local["kid"].startswith("k4.lid.")
    assert local["footer_id"] == minted["kid"]
    plain = ok(["keys", "list"]).stdout
    assert public["public_paserk"] in plain
    assert "k4.local." not in (home() / "keys" / "ring.json").read_text()


def test_rotation_makes_a_new_current_key_and_old_tokens_still_verify(
    profile_file: Path, minted: dict[str, Any]
) -> None:
    before = ok_json(["keys", "list"])
    old_local = next(k for k in before if k["kind"] == "local")
    rotated = ok_json(["keys", "rotate"])
    assert rotated["kind"] == "local"
    assert rotated["kid"] != old_local["kid"]

    after = ok_json(["keys", "list"])
    assert len(after) == 3
    current_local = [k["kid"] for k in after if k["kind"] == "local" and k["current"]]
    assert current_local == [rotated["kid"]]
    assert next(k for k in after if k["kid"] == old_local["kid"])["current"] is False

    old = ok_json(["token", "verify", minted["token"]])
    assert old["kid"] == old_local["footer_id"]
    assert old["profile"] == quantize(PERSONA.profile).to_dict()
    fresh = mint(profile_file)
    assert fresh["kid"] == rotated["footer_id"] != minted["kid"]
    ok(["token", "verify", fresh["token"]])


def test_rotating_the_public_key_keeps_old_references(minted: dict[str, Any]) -> None:
    reference = ok(["token", "reference", minted["token"]]).stdout.strip()
    rotated = ok_json(["keys", "rotate", "--kind", "public"])
    assert rotated["kind"] == "public"
    ok(["token", "verify", reference, "--purpose", "reference"])
    fresh = ok_json(["token", "reference", minted["token"]])
    assert fresh["kid"] == rotated["footer_id"]


def test_rotate_refuses_an_unknown_kind(minted: dict[str, Any]) -> None:
    clean_failure(invoke(["keys", "rotate", "--kind", "bogus"]), "--kind must be local or public")
    assert len(ok_json(["keys", "list"])) == 2


# -- bad mint input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra", [[], ["--profile", "PROFILE", "--respondent", "someone"]], ids=["neither", "both"]
)
def test_mint_needs_exactly_one_source(profile_file: Path, extra: list[str]) -> None:
    args = [str(profile_file) if a == "PROFILE" else a for a in extra]
    clean_failure(
        invoke(["token", "mint", *args, "--json"]), "give exactly one of --profile FILE or"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "not valid JSON"),
        (PERSONA.profile.to_json().replace(SCHEMA, "axes/v9"), "axes/v9 is newer"),
        (None, "cannot read profile file"),
    ],
    ids=["invalid json", "newer schema", "missing file"],
)
def test_bad_profile_files_are_refused(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "given.json"
    if content is not None:
        path.write_text(content)
    result = invoke(["token", "mint", "--profile", str(path), "--json"])
    clean_failure(result, message)
    if content is None:
        assert str(path) in result.stderr


# -- aliases ---------------------------------------------------------------------------


def test_alias_shares_the_precis(minted: dict[str, Any]) -> None:
    created = ok_json(["alias", "create", "--token", minted["token"]])
    alias = created["alias"]
    assert created["share"] == "precis"
    words = alias.split("-")
    assert len(words) == 4
    assert set(words) <= set(load_wordlist())

    resolved = ok_json(["alias", "resolve", alias])
    assert resolved["found"] is True
    assert resolved["alias"] == alias
    assert resolved["share"] == "precis"
    content = json.loads(resolved["content"])
    assert content == {n.value: expected_precis(n) for n in PrecisLength}

    assert ok(["alias", "resolve", alias]).stdout == expected_precis(PrecisLength.MEDIUM) + "\n"
    for typed in (alias.upper(), " ".join(words), f"  {words[0].title()}  {'.'.join(words[1:])} "):
        assert ok_json(["alias", "resolve", typed])["content"] == resolved["content"]


def test_alias_with_token_share_gives_a_share_token(minted: dict[str, Any]) -> None:
    alias = ok(["alias", "create", "--token", minted["token"], "--share", "token"]).stdout.strip()
    resolved = ok_json(["alias", "resolve", alias])
    assert resolved["share"] == "token"
    shared = resolved["content"]
    assert shared.startswith("v4.local.")
    assert shared != minted["token"]
    assert ok(["alias", "resolve", alias]).stdout == shared + "\n"
    verified = ok_json(["token", "verify", shared, "--purpose", "share"])
    assert verified["purpose"] == "share"
    assert verified["sub"] == minted["sub"]
    assert verified["profile"] == quantize(PERSONA.profile).to_dict()
    assert ok_json(["token", "show", shared])["purpose"] == "share"


def test_alias_create_refuses_a_bad_token_or_share(minted: dict[str, Any]) -> None:
    refused(invoke(["alias", "create", "--token", "hello"]), TokenProblem.NOT_VALUETUNE)
    clean_failure(
        invoke(["alias", "create", "--token", minted["token"], "--share", "profile"]),
        "--share must be precis or token",
    )


def test_alias_create_reads_the_token_from_stdin(minted: dict[str, Any]) -> None:
    alias = ok_json(["alias", "create", "--token", "-", "--words", "6"], input=minted["token"])[
        "alias"
    ]
    assert len(alias.split("-")) == 6
    assert ok_json(["alias", "resolve", alias])["found"] is True


def test_alias_rotate(minted: dict[str, Any]) -> None:
    old = ok_json(["alias", "create", "--token", minted["token"]])["alias"]
    content = ok_json(["alias", "resolve", old])["content"]
    new = ok_json(["alias", "rotate", old])["alias"]
    assert new != old
    assert ok_json(["alias", "resolve", new])["content"] == content

    gone = invoke(["alias", "resolve", old, "--json"])
    assert gone.exit_code == 1
    assert json.loads(gone.stdout) == {"alias": old, "found": False, "share": None, "content": None}
    clean_failure(invoke(["alias", "resolve", old]), "does not resolve")


def test_alias_revoke(minted: dict[str, Any]) -> None:
    alias = ok_json(["alias", "create", "--token", minted["token"]])["alias"]
    assert ok(["alias", "revoke", alias.replace("-", " ")]).stdout == "alias revoked\n"
    clean_failure(invoke(["alias", "resolve", alias]), "does not resolve")
    clean_failure(invoke(["alias", "revoke", alias]), "no such alias")


def test_alias_of_unknown_words_names_the_word(minted: dict[str, Any]) -> None:
    words = load_wordlist()
    typed = f"{words[10]} {words[20]} qqqq {words[30]}"
    clean_failure(invoke(["alias", "resolve", typed]), "'qqqq' (word 3 of the alias)")
    clean_failure(invoke(["alias", "resolve", typed, "--json"]), "'qqqq'")


# -- precis ------------------------------------------------------------------------------


def test_precis_of_a_token_by_length(minted: dict[str, Any]) -> None:
    texts = {}
    for length in PrecisLength:
        first = ok(["precis", minted["token"], "--length", length.value]).stdout
        assert ok(["precis", minted["token"], "--length", length.value]).stdout == first
        assert first == expected_precis(length) + "\n"
        texts[length] = first
    assert texts[PrecisLength.SHORT] != texts[PrecisLength.LONG]
    assert len(texts[PrecisLength.SHORT]) < len(texts[PrecisLength.LONG])
    assert ok(["precis", minted["token"]]).stdout == texts[PrecisLength.MEDIUM]
    doc = ok_json(["precis", minted["token"], "--length", "LONG"])
    assert doc == {"precis": expected_precis(PrecisLength.LONG), "length": "long"}


@pytest.mark.parametrize("share", ["precis", "token"])
def test_precis_of_an_alias(minted: dict[str, Any], share: str) -> None:
    alias = ok_json(["alias", "create", "--token", minted["token"], "--share", share])["alias"]
    for length in (PrecisLength.SHORT, PrecisLength.LONG):
        from_alias = ok(["precis", alias.upper(), "--length", length.value]).stdout
        assert from_alias == expected_precis(length) + "\n"


def test_precis_refuses_an_unknown_length_or_alias(minted: dict[str, Any]) -> None:
    clean_failure(
        invoke(["precis", minted["token"], "--length", "tiny"]),
        "--length must be short, medium or long",
    )
    alias = ok_json(["alias", "create", "--token", minted["token"]])["alias"]
    ok(["alias", "revoke", alias])
    clean_failure(invoke(["precis", alias]), "does not resolve")
