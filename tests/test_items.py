"""The item bank: coverage, keying, uniqueness, valid parameters, refusal of bad items."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from valuetune.errors import InvalidAnswerError, SchemaError
from valuetune.values.axes import load_axes
from valuetune.values.items import ItemKind, load_item_bank, parse_item, parse_item_bank

BANK = load_item_bank()
AXES = load_axes()


def test_bank_has_at_least_160_items_of_every_kind() -> None:
    kinds = Counter(item.kind for item in BANK)
    assert len(BANK) >= 160
    assert kinds[ItemKind.LIKERT] >= 100
    assert kinds[ItemKind.CHOICE] >= 20
    assert kinds[ItemKind.BOUNDARY] == len(AXES.boundaries)
    assert 2 <= kinds[ItemKind.ATTENTION] <= 6


def test_every_value_axis_has_six_items_with_both_keyings() -> None:
    for axis in AXES.value_ids:
        likert = [i for i in BANK.of_kind(ItemKind.LIKERT) if i.primary_dim() == axis]
        assert len(likert) >= 6, axis
        signs = {np.sign(i.loadings[axis]) for i in likert}
        assert signs == {-1.0, 1.0}, f"{axis} lacks balanced keying"
        choices = [i for i in BANK.of_kind(ItemKind.CHOICE) if i.primary_dim() == axis]
        assert choices, f"no forced-choice scenario contrasts {axis}"


def test_every_style_dimension_and_boundary_is_asked() -> None:
    for dim in AXES.style_ids:
        items = [i for i in BANK.of_kind(ItemKind.LIKERT) if i.primary_dim() == dim]
        assert len(items) >= 2, dim
    assert {i.boundary for i in BANK.of_kind(ItemKind.BOUNDARY)} == set(AXES.boundary_ids)


def test_no_duplicate_ids_or_texts() -> None:
    texts = [" ".join(i.text.casefold().split()) for i in BANK]
    assert len(set(texts)) == len(texts)
    options = [o.text.casefold() for i in BANK.of_kind(ItemKind.CHOICE) for o in i.options]
    assert len(set(options)) == len(options)
    assert len({i.id for i in BANK}) == len(BANK)


def test_parameters_are_valid() -> None:
    a, d = BANK.parameters()
    for row, item in enumerate(BANK):
        if not item.graded:
            assert not a[row].any()
            continue
        assert 0.5 <= np.abs(a[row]).max() <= 3.0, item.id
        finite = d[row][np.isfinite(d[row])]
        assert len(finite) == item.n_categories - 1
        assert np.all(np.diff(finite) < 0), item.id
        assert np.all(np.abs(finite) <= 4.0), item.id
        dims = set(item.loadings)
        assert dims <= set(AXES.value_ids) or dims <= set(AXES.style_ids), item.id
    assert not a.flags.writeable


def test_attention_checks_instruct_distinct_answers() -> None:
    expected = [i.expected for i in BANK.of_kind(ItemKind.ATTENTION)]
    assert len(set(expected)) == len(expected)


def test_answers_are_checked_against_the_item() -> None:
    likert = BANK.of_kind(ItemKind.LIKERT)[0]
    choice = BANK.of_kind(ItemKind.CHOICE)[0]
    assert likert.check_answer(4) == 4
    assert choice.check_answer(1) == 1
    for bad in (5, -1, 2.0, "3", True, None):
        with pytest.raises(InvalidAnswerError):
            likert.check_answer(bad)
    with pytest.raises(InvalidAnswerError, match=r"0\.\.1"):
        choice.check_answer(2)
    with pytest.raises(InvalidAnswerError, match="unknown item"):
        BANK.get("no-such-item")


@pytest.mark.parametrize(
    "doc, message",
    [
        (
            {
                "id": "x",
                "kind": "likert",
                "text": "t",
                "loadings": {"care": 1},
                "thresholds": [1, 2, 0, -1],
            },
            "decrease",
        ),
        (
            {
                "id": "x",
                "kind": "likert",
                "text": "t",
                "loadings": {"care": 1},
                "thresholds": [1, 0],
            },
            "needs 4",
        ),
        (
            {
                "id": "x",
                "kind": "likert",
                "text": "t",
                "loadings": {"nope": 1},
                "thresholds": [2, 1, 0, -1],
            },
            "unknown dimensions",
        ),
        (
            {"id": "x", "kind": "likert", "text": "t", "loadings": {}, "thresholds": [2, 1, 0, -1]},
            "loads on no",
        ),
        ({"id": "x", "kind": "telepathy", "text": "t"}, "malformed"),
        ({"id": "x", "kind": "boundary", "text": "t", "boundary": "nope"}, "not a boundary"),
        ({"id": "x", "kind": "attention", "text": "t", "expected": 9}, "out of range"),
        ({"kind": "likert"}, "without an id"),
        (
            {
                "id": "x",
                "kind": "likert",
                "text": "  ",
                "loadings": {"care": 1},
                "thresholds": [2, 1, 0, -1],
            },
            "no text",
        ),
    ],
)
def test_malformed_items_are_refused(doc: dict[str, object], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        parse_item(doc, AXES)


def test_duplicate_texts_are_refused() -> None:
    item = {"kind": "likert", "text": "Same", "loadings": {"care": 1}, "thresholds": [2, 1, 0, -1]}
    with pytest.raises(SchemaError, match="repeats an item text"):
        parse_item_bank([{**item, "id": "a"}, {**item, "id": "b", "text": "same"}], AXES)
