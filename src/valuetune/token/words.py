"""Alias words: the wordlist, minting aliases and reading them back.

An alias such as "maple-orbit-canyon-river" is a memorable handle for a preference token:
not a secret, but hard enough to guess that a stranger cannot stumble on someone's token.
Its strength is `alias_entropy_bits`. The wordlist (`data/words_v1.txt`, described in
docs/wordlist.md) is a filtered BIP-39 English list whose first 4 letters identify each
word, so a person may type just those letters and the alias still reads unambiguously.
Standard library only: this is pure domain code.
"""

from __future__ import annotations

import bisect
import math
import re
import secrets
from functools import cache
from importlib import resources

from valuetune.errors import SchemaError, ValuetuneError

DEFAULT_WORDS = 4
MIN_WORDS = 3
MAX_WORDS = 6
# A smaller list gives under 10 bits a word, and a 3-word alias under 30 bits.
MIN_LIST_SIZE = 1024

WORDLIST_FILE = "data/words_v1.txt"
SEPARATOR = "-"
EXAMPLE = "maple-orbit-canyon-river"

# What people put between words when typing or transcribing a spoken alias: hyphen, any
# whitespace, dot, underscore, comma, slash. Any run counts as one separator.
_SEPARATORS = re.compile(r"[-\s._,/]+")
_WORD = re.compile(r"[a-z]+")
_TYPED_WORD = re.compile(r"[A-Za-z]+")


class AliasFormatError(ValuetuneError):
    """Text given as an alias is not 3 to 6 words from the alias wordlist."""


def parse_wordlist(text: str) -> tuple[str, ...]:
    """Parse wordlist text: '#' comment lines and blank lines skipped, one word per line.

    Raises SchemaError unless the words are unique, lowercase ascii letters, sorted (lookup
    and prefix expansion bisect the list) and at least MIN_LIST_SIZE many.
    """
    words: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not _WORD.fullmatch(line):
            raise SchemaError(
                f"alias wordlist line {number}: {line!r} is not a lowercase ascii word"
            )
        if words and line <= words[-1]:
            problem = "is repeated" if line == words[-1] else "is out of sorted order"
            raise SchemaError(f"alias wordlist line {number}: {line!r} {problem}")
        words.append(line)
    if len(words) < MIN_LIST_SIZE:
        raise SchemaError(
            f"alias wordlist has {len(words)} words; at least {MIN_LIST_SIZE} are needed"
        )
    return tuple(words)


@cache
def load_wordlist() -> tuple[str, ...]:
    """The packaged alias wordlist, sorted; read and checked once per process."""
    text = resources.files("valuetune.token").joinpath(WORDLIST_FILE).read_text("utf-8")
    return parse_wordlist(text)


@cache
def unique_prefix_length() -> int:
    """The shortest k such that the first k letters of every list word are distinct.

    A typed fragment of at least k letters that starts a list word therefore names exactly
    one word. Computed rather than assumed, so a future list keeps the guarantee honest.
    """
    words = load_wordlist()
    # k = the longest word's length always works, since the words themselves are distinct.
    longest = max(len(w) for w in words)
    return next(k for k in range(1, longest + 1) if len({w[:k] for w in words}) == len(words))


def _check_word_count(n_words: int) -> None:
    if not MIN_WORDS <= n_words <= MAX_WORDS:
        raise AliasFormatError(f"an alias has {MIN_WORDS} to {MAX_WORDS} words, not {n_words}")


def new_alias(n_words: int = DEFAULT_WORDS) -> str:
    """A fresh alias of n_words list words, each drawn independently with `secrets`.

    Words may repeat: independent draws are what `alias_entropy_bits` counts.
    """
    _check_word_count(n_words)
    words = load_wordlist()
    return SEPARATOR.join(secrets.choice(words) for _ in range(n_words))


def alias_entropy_bits(n_words: int = DEFAULT_WORDS) -> float:
    """Bits of guessing work for a random alias of n_words words: n * log2(list size)."""
    _check_word_count(n_words)
    return n_words * math.log2(len(load_wordlist()))


def _expand_word(typed: str) -> str | None:
    """The list word `typed` names (whole word, or a unique prefix of >= k letters)."""
    if not _TYPED_WORD.fullmatch(typed):
        return None
    fragment = typed.lower()
    words = load_wordlist()
    at = bisect.bisect_left(words, fragment)
    if at < len(words) and words[at] == fragment:
        return fragment
    if len(fragment) < unique_prefix_length():
        return None
    # Words starting with `fragment` sit together from `at`; the unique-prefix property
    # means at most one does, but check the next one rather than trust it.
    matches = [w for w in words[at : at + 2] if w.startswith(fragment)]
    return matches[0] if len(matches) == 1 else None


def normalize_alias(text: str) -> str:
    """The canonical "word-word-word-word" form of an alias as a person typed or said it.

    Accepts any ascii letter case, surrounding spaces, and runs of hyphens, spaces, dots,
    underscores, commas or slashes between words, so "Maple Orbit  canyon.river" reads as
    "maple-orbit-canyon-river". Autocomplete: a word may be given by its first k letters or
    more (k = `unique_prefix_length()`, 4 for words_v1) when they start exactly one list
    word, so "mapl orbi cany rive" reads the same. Raises AliasFormatError, naming the
    first unknown word or the expected number of words.
    """
    typed = [part for part in _SEPARATORS.split(text) if part]
    if not typed:
        raise AliasFormatError(
            f"the alias is empty: give {MIN_WORDS} to {MAX_WORDS} words from the alias "
            f"wordlist, such as {EXAMPLE!r}"
        )
    if not MIN_WORDS <= len(typed) <= MAX_WORDS:
        raise AliasFormatError(
            f"an alias has {MIN_WORDS} to {MAX_WORDS} words, not {len(typed)}: separate "
            f"words with hyphens or spaces, such as {EXAMPLE!r}"
        )
    canonical: list[str] = []
    for position, part in enumerate(typed, start=1):
        word = _expand_word(part)
        if word is None:
            raise AliasFormatError(
                f"{part!r} (word {position} of the alias) is not in the alias wordlist: "
                f"check its spelling, or type at least its first {unique_prefix_length()} "
                "letters"
            )
        canonical.append(word)
    return SEPARATOR.join(canonical)
