"""Minting and verifying tokens end to end: real key ring, real database (both backends)."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyseto
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from valuetune.errors import ValuetuneError
from valuetune.store import Database, SurveyStore
from valuetune.store.tokens import TokenStore
from valuetune.token.keys import KeyRing, check_random_key
from valuetune.token.paseto import TokenError, TokenProblem, footer_of, local_key, seal
from valuetune.token.payload import QUANTIZATION_BOUND, quantize
from valuetune.token.tokens import PURPOSES, TokenService
from valuetune.values.axes import load_axes
from valuetune.values.personas import load_personas
from valuetune.values.profile import ValueProfile

AXES = load_axes()
PERSONA = load_personas()[0].profile
B64 = string.ascii_letters + string.digits + "-_"


class Clock:
    """A settable clock for expiry tests (the service takes any callable)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def service(ring: KeyRing, tokens: TokenStore) -> TokenService:
    return TokenService(ring, tokens)


@pytest.fixture(scope="module")
def sqlite_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenService]:
    home = tmp_path_factory.mktemp("svc")
    db = Database.open(f"sqlite:///{home / 'db.sqlite3'}")
    yield TokenService(KeyRing.open(home), TokenStore(db))
    db.dispose()


@pytest.fixture(scope="module")
def persona_token(sqlite_service: TokenService) -> str:
    return sqlite_service.mint(PERSONA).token


def _problem(service: TokenService, token: str, purpose: str = "preference") -> TokenProblem:
    with pytest.raises(TokenError) as info:
        service.verify(token, purpose)  # type: ignore[arg-type]
    return info.value.problem


def test_mint_verify_round_trips_to_the_quantized_profile(service: TokenService) -> None:
    for persona in load_personas():
        minted = service.mint(persona.profile)
        verified = service.verify(minted.token)
        assert verified.profile() == quantize(persona.profile)
        assert verified.jti == minted.jti and verified.sub == minted.sub
        assert len(minted.token) <= 400


def test_a_full_profile_fits_in_400_characters(service: TokenService) -> None:
    full = ValueProfile.from_mappings(
        {a: -3.9 for a in AXES.value_ids},
        {s: 3.9 for s in AXES.style_ids},
        AXES.boundary_ids,
        values_se={a: 0.9 for a in AXES.value_ids},
    )
    minted = service.mint(full)
    assert len(minted.token) <= 400
    assert service.verify(minted.token).profile() == quantize(full)


def test_the_token_hides_the_values(service: TokenService) -> None:
    token = service.mint(PERSONA).token
    for needle in ("axes", "care", PERSONA.to_json()[:20], "valuetune"):
        assert needle not in token
    assert set(footer_of(token)) == {"kid"}  # the footer is readable by anyone: only the key id


profiles = st.builds(
    lambda v, s, se, b: ValueProfile(
        "axes/v1", tuple(v), tuple(se), tuple(s), tuple(se[:6]), frozenset(b)
    ),
    st.lists(st.floats(-4, 4), min_size=16, max_size=16),
    st.lists(st.floats(-4, 4), min_size=6, max_size=6),
    st.lists(st.floats(0, 4), min_size=16, max_size=16),
    st.sets(st.sampled_from(AXES.boundary_ids)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(profiles)
def test_quantized_round_trip_and_error_bound(
    sqlite_service: TokenService, profile: ValueProfile
) -> None:
    carried = sqlite_service.verify(sqlite_service.mint(profile).token).profile()
    assert carried == quantize(profile)
    for a, b in zip(profile.values + profile.style, carried.values + carried.style, strict=True):
        assert abs(a - b) <= QUANTIZATION_BOUND
    assert carried.boundaries == profile.boundaries
    assert quantize(carried) == carried  # quantization is idempotent


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_every_single_character_change_is_refused(
    sqlite_service: TokenService, persona_token: str, data: st.DataObject
) -> None:
    token = persona_token
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from(B64 + ".~ "))
    if token[position] == replacement:
        return
    changed = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(TokenError):
        sqlite_service.verify(changed)


def test_every_position_of_a_token_is_protected(sqlite_service: TokenService) -> None:
    """Exhaustive over positions: flip each character to its neighbour in the alphabet."""
    token = sqlite_service.mint(PERSONA).token
    for position, char in enumerate(token):
        alphabet = B64 if char in B64 else B64 + "."
        replacement = (
            alphabet[(alphabet.index(char) + 1) % len(alphabet)] if char in alphabet else "A"
        )
        with pytest.raises(TokenError):
            sqlite_service.verify(token[:position] + replacement + token[position + 1 :])


def test_rotation_keeps_old_tokens_and_unknown_keys_fail_closed(
    service: TokenService, ring: KeyRing, tokens: TokenStore, tmp_path: Path
) -> None:
    before = service.mint(PERSONA)
    ring.rotate("local")
    after = service.mint(PERSONA)
    assert before.kid != after.kid
    assert service.verify(before.token).jti == before.jti
    assert service.verify(after.token).jti == after.jti
    reopened = TokenService(KeyRing.open(tmp_path / "issuer"), tokens)
    assert reopened.verify(before.token).jti == before.jti
    stranger = TokenService(KeyRing.open(tmp_path / "other-issuer"), tokens)
    assert _problem(stranger, before.token) is TokenProblem.UNKNOWN_KEY


def test_expiry(ring: KeyRing, tokens: TokenStore) -> None:
    clock = Clock()
    service = TokenService(ring, tokens, clock=clock)
    minted = service.mint(PERSONA, ttl=timedelta(days=1))
    clock.now += timedelta(hours=23)
    assert service.verify(minted.token)
    clock.now += timedelta(hours=2)
    assert _problem(service, minted.token) is TokenProblem.EXPIRED


def test_revocation_by_jti_and_by_subject(ring: KeyRing, tokens: TokenStore) -> None:
    clock = Clock()
    service = TokenService(ring, tokens, clock=clock)
    first, second = service.mint(PERSONA), service.mint(PERSONA)
    tokens.revoke(first.jti)
    assert _problem(service, first.token) is TokenProblem.REVOKED
    assert service.verify(second.token).jti == second.jti
    third = service.mint(PERSONA, sub=second.sub)
    tokens.revoke_subject(second.sub)
    assert _problem(service, second.token) is TokenProblem.REVOKED
    assert _problem(service, third.token) is TokenProblem.REVOKED
    clock.now += timedelta(seconds=2)
    fresh = service.mint(PERSONA, sub=second.sub)
    assert service.verify(fresh.token).sub == second.sub


def test_tokens_of_erased_respondents_are_refused(
    service: TokenService, database: Database, tokens: TokenStore
) -> None:
    survey = SurveyStore(database)
    respondent = survey.create_respondent("axes/v1")
    survey.save_profile(respondent, PERSONA, complete=True)
    sub = tokens.subject_for_respondent(respondent)
    assert tokens.subject_for_respondent(respondent) == sub
    minted = service.mint(survey.profile(respondent), sub=sub)
    assert service.verify(minted.token)
    survey.delete_respondent(respondent)
    assert _problem(service, minted.token) is TokenProblem.ERASED
    assert tokens.issued(minted.jti).subject_erased


def test_wrong_purpose_is_named(service: TokenService) -> None:
    verified = service.verify(service.mint(PERSONA).token)
    share = service.mint_share(verified)
    reference = service.mint_reference(verified)
    assert _problem(service, share.token) is TokenProblem.WRONG_PURPOSE
    assert _problem(service, reference.token) is TokenProblem.WRONG_PURPOSE
    assert _problem(service, service.mint(PERSONA).token, "share") is TokenProblem.WRONG_PURPOSE
    assert service.verify(share.token, "share").profile() == quantize(PERSONA)
    assert share.expires_at <= verified.expires_at


def test_reference_tokens_verify_offline_with_the_public_key_and_carry_no_values(
    service: TokenService, ring: KeyRing
) -> None:
    verified = service.verify(service.mint(PERSONA).token)
    reference = service.mint_reference(verified)
    public = next(e for e in ring.entries() if e.kind == "public" and e.current).public_paserk
    assert public is not None and public.startswith("k4.public.")
    third_party_key = pyseto.Key.from_paserk(public)
    decoded = pyseto.decode(
        third_party_key, reference.token, implicit_assertion=PURPOSES["reference"][1]
    )
    claims = json.loads(decoded.payload)
    assert claims["ref"] == verified.jti and "p" not in claims
    assert service.verify(reference.token, "reference").claims["ref"] == verified.jti


def test_forged_tokens_from_another_key_with_our_key_id_are_refused(
    service: TokenService, ring: KeyRing
) -> None:
    kid, _ = ring.current("local")
    forged = seal(
        local_key(check_random_key(secrets.token_bytes(32))),
        {
            "exp": "2099-01-01T00:00:00Z",
            "iss": "valuetune",
            "sub": "x",
            "jti": "y",
            "iat": "2026-01-01T00:00:00Z",
            "v": "axes/v1",
            "p": "AA",
        },
        {"kid": kid},
        PURPOSES["preference"][1],
    )
    assert _problem(service, forged) is TokenProblem.TAMPERED


@pytest.mark.parametrize(
    "raw", [bytes(32), b"\x07" * 32, bytes(range(32)), bytes(range(0x70, 0x90)), b"password" * 4]
)
def test_weak_key_material_is_refused(raw: bytes, ring: KeyRing) -> None:
    with pytest.raises(TokenError) as info:
        ring.import_key("local", raw)
    assert info.value.problem is TokenProblem.WEAK_KEY


def test_key_files_are_private_and_a_damaged_ring_is_reported(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "h")
    folder = tmp_path / "h" / "keys"
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert len(ring.entries()) == 2
    (folder / "ring.json").write_text("{not json")
    with pytest.raises(ValuetuneError, match="damaged"):
        KeyRing.open(tmp_path / "h")


def test_retiring_a_previous_key_refuses_its_tokens(
    service: TokenService, ring: KeyRing, tmp_path: Path
) -> None:
    old = service.mint(PERSONA)
    with pytest.raises(ValuetuneError, match="rotate first"):
        ring.retire(old.kid)
    ring.rotate("local")
    new = service.mint(PERSONA)
    ring.retire(old.kid)
    assert _problem(service, old.token) is TokenProblem.UNKNOWN_KEY
    assert service.verify(new.token).jti == new.jti
    reopened = KeyRing.open(tmp_path / "issuer")
    assert all(old.kid not in (e.kid, e.short_id) for e in reopened.entries())
    assert not any(old.kid in p.name for p in (tmp_path / "issuer" / "keys").iterdir())
