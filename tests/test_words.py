"""Alias words: the packaged list's shape and provenance, minting, reading back, refusals."""

from __future__ import annotations

import math
import re
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valuetune.errors import SchemaError, ValuetuneError
from valuetune.token.words import (
    DEFAULT_WORDS,
    EXAMPLE,
    MAX_WORDS,
    MIN_LIST_SIZE,
    MIN_WORDS,
    AliasFormatError,
    alias_entropy_bits,
    load_wordlist,
    new_alias,
    normalize_alias,
    parse_wordlist,
    unique_prefix_length,
)

WORDS = load_wordlist()
WORD_SET = frozenset(WORDS)
RAW = resources.files("valuetune.token").joinpath("data/words_v1.txt").read_text("utf-8")
HEADER = [line for line in RAW.splitlines() if line.startswith("#")]


def _valid_text(n: int) -> str:
    return "\n".join(
        f"w{chr(97 + i // 676)}{chr(97 + i // 26 % 26)}{chr(97 + i % 26)}" for i in range(n)
    )


# ---- the packaged list -------------------------------------------------------------


def test_list_is_large_unique_lowercase_ascii_3_to_8_letters_and_sorted() -> None:
    assert len(WORDS) >= MIN_LIST_SIZE
    assert len(WORD_SET) == len(WORDS)
    assert list(WORDS) == sorted(WORDS)
    bad = [w for w in WORDS if not re.fullmatch(r"[a-z]{3,8}", w)]
    assert bad == []


def test_list_has_unique_4_letter_prefixes() -> None:
    assert unique_prefix_length() == 4
    assert len({w[:4] for w in WORDS}) == len(WORDS)
    assert len({w[:3] for w in WORDS}) < len(WORDS)  # so 4 is the shortest that works


def test_header_states_source_licence_attribution_and_true_count() -> None:
    text = "\n".join(HEADER)
    assert "Source:" in text and "BIP-39" in text and "mnemonic 0.21" in text
    assert "Licence: MIT" in text
    assert "Copyright (c) 2013-2016 Pavol Rusnak" in text
    assert "shall be included in all" in text  # the MIT notice itself travels with the list
    stated = re.search(r"^# Words: (\d+)\.", RAW, re.MULTILINE)
    assert stated is not None and int(stated.group(1)) == len(WORDS)


def test_filtered_words_are_absent() -> None:
    # one from each removal rule in docs/wordlist.md
    for word in ("ugly", "grief", "bomb", "virus", "affair", "satoshi", "color", "write", "kid"):
        assert word not in WORD_SET, word
    # their neighbours that stay, so the check is not vacuous
    for word in ("maple", "orbit", "canyon", "river", "kit", "ride"):
        assert word in WORD_SET, word


# ---- parse_wordlist refuses malformed files -----------------------------------------


def test_parse_skips_comments_and_blank_lines() -> None:
    text = "# header\n\n" + _valid_text(MIN_LIST_SIZE) + "\n# trailing note\n"
    assert len(parse_wordlist(text)) == MIN_LIST_SIZE


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("zzzz\nzzzz", "repeated"),
        ("Zebra", "lowercase ascii"),
        ("zebra9", "lowercase ascii"),
        ("zèbre", "lowercase ascii"),
        ("aaaa", "sorted order"),
    ],
)
def test_parse_refuses_malformed_lists(extra: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        parse_wordlist(_valid_text(MIN_LIST_SIZE) + "\n" + extra)


def test_parse_refuses_a_short_list() -> None:
    with pytest.raises(SchemaError, match=f"{MIN_LIST_SIZE - 1} words"):
        parse_wordlist(_valid_text(MIN_LIST_SIZE - 1))


# ---- minting -----------------------------------------------------------------------


def test_new_alias_has_default_count_of_listed_words() -> None:
    parts = new_alias().split("-")
    assert len(parts) == DEFAULT_WORDS
    assert all(p in WORD_SET for p in parts)


@pytest.mark.parametrize("n", range(MIN_WORDS, MAX_WORDS + 1))
def test_new_alias_honours_word_count(n: int) -> None:
    assert len(new_alias(n).split("-")) == n


def test_new_aliases_differ() -> None:
    aliases = [new_alias() for _ in range(50)]
    assert len(set(aliases)) == 50
    # words vary across draws too, not just their order
    assert len({w for a in aliases for w in a.split("-")}) > 100


@pytest.mark.parametrize("n", [0, MIN_WORDS - 1, MAX_WORDS + 1])
def test_new_alias_refuses_word_counts_outside_range(n: int) -> None:
    with pytest.raises(AliasFormatError, match=f"{MIN_WORDS} to {MAX_WORDS} words"):
        new_alias(n)


# ---- reading back ------------------------------------------------------------------


def test_normalize_round_trips_new_aliases() -> None:
    for n in range(MIN_WORDS, MAX_WORDS + 1):
        alias = new_alias(n)
        assert normalize_alias(alias) == alias


@pytest.mark.parametrize(
    "typed",
    [
        "Maple Orbit  canyon.river",
        "  MAPLE-ORBIT-CANYON-RIVER  ",
        "maple_orbit,canyon/river",
        "maple, orbit / canyon -- river.",
        "maple\torbit\ncanyon river",
    ],
)
def test_normalize_accepts_what_people_type(typed: str) -> None:
    assert normalize_alias(typed) == EXAMPLE


def test_normalize_expands_unique_prefixes() -> None:
    assert normalize_alias("mapl orbi cany rive") == EXAMPLE
    assert normalize_alias("Mapl-orbit-canyo-river") == EXAMPLE
    # every word is reachable from its first 4 letters
    for word in WORDS:
        assert normalize_alias(f"{word[:4]} {word} {word}") == f"{word}-{word}-{word}"


def test_normalize_prefers_whole_words_over_prefixes() -> None:
    # "act" is a word and also starts "action"; "busi" starts only "business"
    assert {"act", "action", "bus", "busy", "business"} <= WORD_SET
    assert normalize_alias("act bus busy") == "act-bus-busy"
    assert normalize_alias("acti busi busy") == "action-business-busy"


def test_normalize_refuses_short_prefixes() -> None:
    # "map" starts "maple" only, but 3 letters are below the autocomplete length
    assert [w for w in WORDS if w.startswith("map")] == ["maple"]
    with pytest.raises(AliasFormatError, match="'map'"):
        normalize_alias("map orbit canyon river")


def test_normalize_names_the_first_unknown_word() -> None:
    with pytest.raises(AliasFormatError, match=r"'Candle' \(word 3 of the alias\)") as info:
        normalize_alias("maple orbit Candle rivr")
    assert "rivr" not in str(info.value)


@pytest.mark.parametrize("typed", ["maple orbit", "maple", " - . "])
def test_normalize_refuses_too_few_words(typed: str) -> None:
    with pytest.raises(AliasFormatError, match=f"{MIN_WORDS} to {MAX_WORDS} words|empty"):
        normalize_alias(typed)


def test_normalize_refuses_too_many_words() -> None:
    with pytest.raises(AliasFormatError, match="not 7"):
        normalize_alias("maple orbit canyon river maple orbit canyon")


@pytest.mark.parametrize("typed", ["", "   ", "-.,/_"])
def test_normalize_refuses_empty_input(typed: str) -> None:
    with pytest.raises(AliasFormatError, match="empty"):
        normalize_alias(typed)


def test_alias_format_error_is_a_user_error() -> None:
    assert issubclass(AliasFormatError, ValuetuneError)


# ---- entropy -----------------------------------------------------------------------


@pytest.mark.parametrize("n", range(MIN_WORDS, MAX_WORDS + 1))
def test_entropy_is_words_times_log2_of_list_size(n: int) -> None:
    assert alias_entropy_bits(n) == pytest.approx(n * math.log2(len(WORDS)))


def test_default_alias_has_at_least_40_bits() -> None:
    assert alias_entropy_bits() == alias_entropy_bits(DEFAULT_WORDS) >= 40


# ---- arbitrary input ---------------------------------------------------------------

# Mostly list words and prefixes, so that many draws are valid aliases, mixed with junk
# pieces and separators ("+", none at all) that must be refused.
_pieces = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(WORDS).map(lambda w: w[:4].upper()),
    st.sampled_from(WORDS).map(str.title),
    st.text(min_size=1, max_size=6),
)
_separators = st.sampled_from(["-", " ", ".", "_", ",", "/", " - ", "\t", "--", ", ", "+", ""])


@st.composite
def alias_like(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(_pieces, min_size=0, max_size=8))
    return "".join(p + draw(_separators) for p in pieces)


@given(st.one_of(st.text(), alias_like()))
def test_normalize_returns_listed_words_or_refuses_cleanly(text: str) -> None:
    try:
        alias = normalize_alias(text)
    except AliasFormatError as exc:
        assert str(exc)
        return
    words = alias.split("-")
    assert MIN_WORDS <= len(words) <= MAX_WORDS
    assert all(w in WORD_SET for w in words)
    assert normalize_alias(alias) == alias
