"""Aliases end to end: `AliasService` over the real `TokenStore`, on SQLite and PostgreSQL.

Time is injected through the service's own `clock`, `wall` and `sleep` parameters, so the
timing floor and the rate-limit window are checked exactly and without waiting.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from valuetune.errors import ValuetuneError
from valuetune.store import Database, SurveyStore
from valuetune.store.tokens import TokenStore
from valuetune.token.alias import AliasService, RateLimitedError, precis_content
from valuetune.token.keys import KeyRing
from valuetune.token.payload import quantize
from valuetune.token.precis import PrecisLength, write_precis
from valuetune.token.tokens import TokenService
from valuetune.token.words import AliasFormatError, load_wordlist, new_alias
from valuetune.values.personas import load_personas

PERSONA = load_personas()[0].profile
# Binary fractions, so that sums of fake times are exact and `==` is a fair test.
FLOOR = 0.5
# A wall-clock instant in the middle of a 60 s window, before 2038.
WALL_START = 1_800_000_030.0


class FakeTime:
    """A settable clock whose `sleep` advances it and records each call."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class SlowRegistry:
    """The real `TokenStore` behind the `AliasRegistry` interface, with a slow lookup."""

    def __init__(self, inner: TokenStore, clock: FakeTime, delay: float) -> None:
        self.inner, self.clock, self.delay = inner, clock, delay

    def put_alias(self, lookup: str, sub: str, share: str, content: str) -> None:
        self.inner.put_alias(lookup, sub, share, content)

    def get_alias(self, lookup: str) -> tuple[str, str, str] | None:
        self.clock.now += self.delay
        return self.inner.get_alias(lookup)

    def delete_alias(self, lookup: str) -> bool:
        return self.inner.delete_alias(lookup)

    def allow(self, bucket: str, limit: int, window_seconds: int, now: float) -> bool:
        return self.inner.allow(bucket, limit, window_seconds, now)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def wall() -> FakeTime:
    return FakeTime(WALL_START)


@pytest.fixture
def service(tokens: TokenStore, ring: KeyRing, clock: FakeTime, wall: FakeTime) -> AliasService:
    return AliasService(
        tokens, ring.alias_key(), floor_seconds=FLOOR, clock=clock, wall=wall, sleep=clock.sleep
    )


@pytest.fixture
def sub(tokens: TokenStore) -> str:
    """A subject the store knows, recorded the way minting records it."""
    subject = secrets.token_urlsafe(12)
    now = datetime.now(UTC).replace(microsecond=0)
    tokens.record_issued(
        secrets.token_urlsafe(16), subject, "preference", "test-kid", now, now + timedelta(days=1)
    )
    return subject


def persona_precis() -> str:
    return precis_content({n.value: write_precis(quantize(PERSONA), n) for n in PrecisLength})


def test_create_then_resolve_returns_share_and_content(service: AliasService, sub: str) -> None:
    content = persona_precis()
    alias = service.create(sub, "precis", content)
    words = alias.split("-")
    assert len(words) == 4
    assert set(words) <= set(load_wordlist())

    resolution = service.resolve(alias, "client-a")
    assert resolution.found is True
    assert resolution.alias == alias
    assert resolution.share == "precis"
    assert resolution.content == content
    assert set(json.loads(content)) == {"short", "medium", "long"}


def test_alias_for_a_minted_token_resolves_to_a_share_token(
    ring: KeyRing, tokens: TokenStore, service: AliasService
) -> None:
    issuer = TokenService(ring, tokens)
    verified = issuer.verify(issuer.mint(PERSONA).token)
    shared = issuer.mint_share(verified)
    alias = service.create(verified.sub, "token", shared.token, n_words=5)
    assert len(alias.split("-")) == 5

    resolution = service.resolve(alias, "client-a")
    assert (resolution.found, resolution.share, resolution.content) == (True, "token", shared.token)
    assert resolution.content is not None
    handed_out = issuer.verify(resolution.content, "share")
    assert handed_out.sub == verified.sub
    assert handed_out.claims["ref"] == verified.jti
    assert handed_out.profile() == quantize(PERSONA)


def test_a_miss_has_the_same_fields_as_a_hit(service: AliasService, sub: str) -> None:
    hit = service.resolve(service.create(sub, "precis", persona_precis()), "client-a")
    never_created = new_alias()
    miss = service.resolve(never_created.upper(), "client-a")
    assert miss.to_dict().keys() == hit.to_dict().keys()
    assert miss.to_dict() == {
        "alias": never_created,
        "found": False,
        "share": None,
        "content": None,
    }
    assert hit.found is True


VARIANTS: dict[str, Callable[[list[str]], str]] = {
    "upper": lambda w: "-".join(w).upper(),
    "spaces": lambda w: " ".join(w),
    "mixed separators": lambda w: f"  {w[0]}_{w[1]}.{w[2]} , {w[3]}/ ",
    "title case, runs of hyphens": lambda w: "--".join(x.title() for x in w),
    "four-letter prefixes": lambda w: " ".join(x[:4] for x in w),
}


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_case_and_separator_variants_resolve(
    service: AliasService, sub: str, variant: Callable[[list[str]], str]
) -> None:
    alias = service.create(sub, "precis", "shared text")
    typed = variant(alias.split("-"))
    resolution = service.resolve(typed, "client-a")
    assert (resolution.found, resolution.alias, resolution.content) == (True, alias, "shared text")


def test_revoke_stops_resolution(service: AliasService, sub: str) -> None:
    alias = service.create(sub, "precis", "shared text")
    other = service.create(sub, "precis", "other text")
    assert service.revoke(alias.upper().replace("-", " ")) is True
    assert service.resolve(alias, "client-a").found is False
    assert service.revoke(alias) is False
    # only that alias went
    assert service.resolve(other, "client-a").content == "other text"


def test_rotate_moves_the_content_to_a_new_alias(service: AliasService, sub: str) -> None:
    content = persona_precis()
    old = service.create(sub, "precis", content, n_words=3)
    new = service.rotate(old.replace("-", " "))
    assert new != old
    assert len(new.split("-")) == 3
    resolved = service.resolve(new, "client-a")
    assert (resolved.found, resolved.share, resolved.content) == (True, "precis", content)
    assert service.resolve(old, "client-a").found is False
    with pytest.raises(ValuetuneError, match="no alias"):
        service.rotate(old)


def test_the_alias_text_is_never_stored(
    service: AliasService, ring: KeyRing, database: Database, sub: str
) -> None:
    alias = service.create(sub, "token", "v4.local.stand-in")
    words = alias.split("-")
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM aliases")).mappings().all()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0].values()).lower()
    for form in ("-".join(words), " ".join(words), "".join(words), "_".join(words)):
        assert form not in stored
    expected = hmac.new(ring.alias_key(), alias.encode("ascii"), hashlib.sha256).hexdigest()
    assert rows[0]["lookup"] == service.lookup(alias) == expected
    assert rows[0]["lookup"] != hashlib.sha256(alias.encode("ascii")).hexdigest()


def test_lookup_depends_on_the_issuer_key(
    tokens: TokenStore, service: AliasService, sub: str
) -> None:
    alias = service.create(sub, "precis", "shared text")
    other_issuer = AliasService(tokens, secrets.token_bytes(32), floor_seconds=0)
    assert other_issuer.lookup(alias) != service.lookup(alias)
    assert other_issuer.resolve(alias, "client-a").found is False


def test_alias_key_must_be_32_bytes(tokens: TokenStore) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        AliasService(tokens, b"short")


def test_unknown_share_is_refused(service: AliasService, sub: str) -> None:
    with pytest.raises(ValuetuneError, match="share must be one of"):
        service.create(sub, "profile", "x")  # type: ignore[arg-type]


# -- timing floor ----------------------------------------------------------------------


def test_hit_and_miss_each_take_exactly_the_floor(
    service: AliasService, clock: FakeTime, sub: str
) -> None:
    alias = service.create(sub, "precis", "shared text")
    for typed, found in ((alias, True), (new_alias(), False)):
        clock.sleeps.clear()
        started = clock.now
        assert service.resolve(typed, "client-a").found is found
        assert clock.now - started == FLOOR
        assert clock.sleeps == [FLOOR]


@pytest.mark.parametrize(
    ("delay", "sleeps"),
    [(0.125, [FLOOR - 0.125]), (FLOOR, []), (0.75, [])],
    ids=["under the floor", "at the floor", "past the floor"],
)
def test_only_the_time_left_under_the_floor_is_slept(
    tokens: TokenStore,
    ring: KeyRing,
    clock: FakeTime,
    sub: str,
    delay: float,
    sleeps: list[float],
) -> None:
    slow = AliasService(
        SlowRegistry(tokens, clock, delay),
        ring.alias_key(),
        floor_seconds=FLOOR,
        clock=clock,
        sleep=clock.sleep,
    )
    alias = slow.create(sub, "precis", "shared text")
    for typed in (alias, new_alias()):
        clock.sleeps.clear()
        started = clock.now
        slow.resolve(typed, "client-a")
        assert clock.sleeps == sleeps
        assert clock.now - started == max(FLOOR, delay)


# -- rate limit ------------------------------------------------------------------------


def test_rate_limit_per_client_and_window(
    tokens: TokenStore, ring: KeyRing, clock: FakeTime, wall: FakeTime, sub: str
) -> None:
    limited = AliasService(
        tokens,
        ring.alias_key(),
        limit=3,
        window_seconds=60,
        clock=clock,
        wall=wall,
        sleep=clock.sleep,
    )
    alias = limited.create(sub, "precis", "shared text")
    # hits and misses both count
    assert limited.resolve(alias, "client-a").found
    assert not limited.resolve(new_alias(), "client-a").found
    assert limited.resolve(alias, "client-a").found
    with pytest.raises(RateLimitedError, match="at most 3 per 60 s") as info:
        limited.resolve(alias, "client-a")
    assert info.value.exit_code == 4

    # another client has its own budget
    for _ in range(3):
        assert limited.resolve(alias, "client-b").found
    with pytest.raises(RateLimitedError):
        limited.resolve(alias, "client-b")

    # still within the window: still refused
    wall.now += 20
    with pytest.raises(RateLimitedError):
        limited.resolve(alias, "client-a")

    # the next window starts afresh
    wall.now += 60
    for _ in range(3):
        assert limited.resolve(alias, "client-a").found
    with pytest.raises(RateLimitedError):
        limited.resolve(alias, "client-a")


def test_rate_limit_survives_2038(
    tokens: TokenStore,
    ring: KeyRing,
    clock: FakeTime,
    sub: str,
) -> None:
    after_2038 = FakeTime(2**31 + 120.0)
    service = AliasService(
        tokens, ring.alias_key(), clock=clock, wall=after_2038, sleep=clock.sleep
    )
    alias = service.create(sub, "precis", "shared text")
    assert service.resolve(alias, "client-a").found


# -- erasure and bad input -------------------------------------------------------------


def test_an_erased_subjects_alias_does_not_resolve(
    service: AliasService, tokens: TokenStore, store: SurveyStore
) -> None:
    respondent = store.create_respondent("axes/v1")
    store.save_profile(respondent, PERSONA, complete=True)
    subject = tokens.subject_for_respondent(respondent)
    alias = service.create(subject, "precis", persona_precis())
    assert service.resolve(alias, "client-a").found

    store.delete_respondent(respondent)
    gone = service.resolve(alias, "client-a")
    assert gone.to_dict() == {"alias": alias, "found": False, "share": None, "content": None}
    # nor does one created for the pseudonym after erasure
    late = service.create(subject, "precis", "shared text")
    assert service.resolve(late, "client-a").found is False


def _some_words(n: int) -> list[str]:
    words = load_wordlist()
    return [words[i * 97 % len(words)] for i in range(n)]


MALFORMED = {
    "empty": "",
    "only separators": " - . _ ",
    "two words": "-".join(_some_words(2)),
    "seven words": "-".join(_some_words(7)),
    "unknown word": "-".join([*_some_words(2), "qqqq", *_some_words(1)]),
    "short prefix": " ".join(w[:2] for w in _some_words(4)),
    "digits": "-".join([*_some_words(3), "1234"]),
    "non-ascii": "-".join([*_some_words(3), "caf\u00e9"]),
}


@pytest.mark.parametrize("typed", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_alias_text_is_refused(service: AliasService, typed: str) -> None:
    with pytest.raises(AliasFormatError):
        service.resolve(typed, "client-a")
    with pytest.raises(AliasFormatError):
        service.revoke(typed)
    with pytest.raises(AliasFormatError):
        service.rotate(typed)
