"""Preference pairs, artifacts and the précis method on a small hand-made scenario bank."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from valuetune.errors import SchemaError
from valuetune.llm.base import (
    ContinuationScore,
    Generation,
    GenerationOptions,
    LLMBackend,
    Message,
)
from valuetune.tune.artifacts import METADATA, ArtifactError, read_metadata, writing_artifact
from valuetune.tune.methods import TuneRequest
from valuetune.tune.pairs import build_pairs, write_pair_dataset
from valuetune.tune.precis import PrecisBackend, PrecisMethod, with_system
from valuetune.tune.scenarios import ScenarioBank, load_moral_stories, parse_bank
from valuetune.values.axes import load_axes
from valuetune.values.profile import ValueProfile

AXES = load_axes()


def _profile(**values: float) -> ValueProfile:
    return ValueProfile.from_mappings({a: values.get(a, 0.0) for a in AXES.value_ids})


def _scenario(sid: str, axis: str, domain: str = "work") -> dict[str, object]:
    return {
        "id": sid,
        "domain": domain,
        "norm": "n",
        "situation": "s",
        "intention": "i",
        "prompt": f"Question {sid} about {axis}?",
        "actions": [
            {"text": f"{sid}: the {axis} high reply", "loadings": {axis: 0.9}},
            {"text": f"{sid}: a middle reply", "loadings": {axis: 0.1}},
            {
                "text": f"{sid}: the {axis} low reply",
                "loadings": {axis: -0.8},
                "style": {"directness": 0.5},
            },
        ],
    }


@pytest.fixture(scope="module")
def bank() -> ScenarioBank:
    docs = [
        _scenario(f"s{i:03d}", axis)
        for i, axis in enumerate(
            ["care", "economic", "religiosity", "care", "care", "care", "liberty"] * 6
        )
    ]
    return parse_bank(docs)


def test_split_is_fixed_and_roughly_one_in_five(bank: ScenarioBank) -> None:
    heldout = bank.split("heldout")
    assert 0 < len(heldout) < len(bank)
    assert {s.id for s in heldout} == {
        s.id for s in parse_bank([_scenario(s.id, "care") for s in bank.scenarios]).split("heldout")
    }


def test_pairs_prefer_the_profile_and_respect_the_margin(bank: ScenarioBank) -> None:
    profile = _profile(care=1.5, economic=-1.0, religiosity=1.2, liberty=0.8)
    pairs = build_pairs(profile, bank.split("train"), margin=0.5)
    assert pairs
    by_text = {a.text: a for s in bank.scenarios for a in s.actions}
    for pair in pairs:
        assert (
            by_text[pair.chosen].utility(profile) - by_text[pair.rejected].utility(profile) >= 0.5
        )
        assert pair.margin >= 0.5
    heldout = {s.id for s in bank.split("heldout")}
    assert not heldout & {p.scenario_id for p in pairs}


def test_opposite_profiles_get_reversed_pairs(bank: ScenarioBank) -> None:
    one = build_pairs(_profile(care=1.5), bank.split("train"))
    other = build_pairs(_profile(care=-1.5), bank.split("train"))
    assert {(p.chosen, p.rejected) for p in one} == {(p.rejected, p.chosen) for p in other}


def test_first_choice_only_pairs_always_choose_the_top_ranked_reply(bank: ScenarioBank) -> None:
    profile = _profile(care=2.0, economic=-1.0)
    train = bank.split("train")
    every = build_pairs(profile, train)
    first = build_pairs(profile, train, first_choice_only=True)
    top = {s.id: s.actions[s.ranking(profile)[0][0]].text for s in train if s.annotated}
    assert first and all(p.chosen == top[p.scenario_id] for p in first)
    assert len(first) < len(every)
    assert {(p.chosen, p.rejected) for p in first} <= {(p.chosen, p.rejected) for p in every}


def test_pairs_are_balanced_across_axes(bank: ScenarioBank) -> None:
    profile = _profile(care=2.0, economic=1.0, religiosity=1.0, liberty=1.0)
    pairs = build_pairs(profile, bank.split("train"), margin=0.3, max_share=0.3, limit=20)
    counts: dict[str, int] = {}
    for p in pairs:
        counts[p.axis] = counts.get(p.axis, 0) + 1
    assert len(pairs) == 20
    assert max(counts.values()) <= 6  # 30% of 20, though care has by far the most pairs
    assert len(counts) == 4


def test_rows_are_trl_conversational_preference_rows(bank: ScenarioBank, tmp_path: Path) -> None:
    pairs = build_pairs(_profile(care=1.0), bank.split("train"))
    meta = write_pair_dataset(
        tmp_path / "data", pairs, bank=bank, jti="abc", settings={"margin": 0.3}
    )
    rows = [
        json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()
    ]
    assert len(rows) == meta["pairs"] == len(pairs)
    row = rows[0]
    assert row["prompt"][0]["role"] == "user"
    assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
    assert meta["token_jti_hash"] != "abc" and "abc" not in json.dumps(meta)
    assert (
        read_metadata(tmp_path / "data", "preference-pairs")["dataset_sha256"]
        == meta["dataset_sha256"]
    )
    with pytest.raises(ArtifactError, match="already exists"):
        write_pair_dataset(tmp_path / "data", pairs, bank=bank, jti="abc", settings={})


def test_a_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), writing_artifact(tmp_path / "out") as work:
        (work / "half.bin").write_bytes(b"x" * 100)
        raise RuntimeError("killed")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArtifactError, match="not a finished"):
        read_metadata(tmp_path)
    (tmp_path / METADATA).write_text("{broken")
    with pytest.raises(ArtifactError, match="corrupted"):
        read_metadata(tmp_path)


def test_moral_stories_rows_load_as_unannotated_scenarios(tmp_path: Path) -> None:
    row = {
        "ID": "ms1",
        "norm": "It's good to be honest.",
        "situation": "Ana broke a vase.",
        "intention": "Ana wants to avoid trouble.",
        "moral_action": "Ana tells her host.",
        "immoral_action": "Ana hides the pieces.",
        "moral_consequence": "The host thanks her.",
    }
    path = tmp_path / "ms.jsonl"
    path.write_text(json.dumps(row) + "\n\n")
    bank = load_moral_stories(path)
    scenario = bank.scenarios[0]
    assert scenario.id == "ms1" and len(scenario.actions) == 2 and not scenario.annotated
    assert build_pairs(_profile(care=2.0), bank.scenarios) == []
    path.write_text('{"norm": "x"}\n')
    with pytest.raises(SchemaError, match="not a Moral Stories row"):
        load_moral_stories(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["actions"].pop() and d["actions"].pop(), "2 to 4"),
        (lambda d: d["actions"][0]["loadings"].update(bogus=1.0), "unknown dimensions"),
        (lambda d: d["actions"][0]["loadings"].update(care=3.0), r"\[-1, 1\]"),
        (lambda d: d.update(prompt="  "), "empty"),
        (lambda d: d.pop("actions"), "malformed"),
    ],
)
def test_malformed_scenarios_are_refused(change: object, message: str) -> None:
    doc = _scenario("bad", "care")
    change(doc)  # type: ignore[operator]
    with pytest.raises(SchemaError, match=message):
        parse_bank([doc])


class EchoBackend(LLMBackend):
    """Records the messages it sees; implements the real interface."""

    name = "echo"

    def __init__(self) -> None:
        self.seen: list[list[Message]] = []

    def generate(self, messages, options):  # type: ignore[no-untyped-def]
        self.seen.append(list(messages))
        return Generation("ok", 1, 1, "stop")

    def score(self, messages, continuations):  # type: ignore[no-untyped-def]
        self.seen.append(list(messages))
        return [ContinuationScore(-1.0, 1) for _ in continuations]

    def perplexity(self, texts):  # type: ignore[no-untyped-def]
        return 10.0


def test_precis_method_builds_an_artifact_and_prefixes_the_system_message(
    bank: ScenarioBank, tmp_path: Path
) -> None:
    echo = EchoBackend()
    profile = _profile(care=2.0, religiosity=-1.5)
    request = TuneRequest(echo, profile, "jti-1", bank, "echo", {})
    meta = PrecisMethod().build(request, tmp_path / "p")
    assert (
        meta["method"] == "precis" and read_metadata(tmp_path / "p")["kind"] == "alignment/precis"
    )
    aligned = PrecisMethod().apply(echo, tmp_path / "p")
    aligned.generate([Message("user", "hi")], GenerationOptions())
    aligned.score([Message("system", "Be brief."), Message("user", "hi")], ["a"])
    first, second = echo.seen
    assert first[0].role == "system" and "suffering" in first[0].content
    assert second[0].content.endswith("Be brief.") and len(second) == 2
    assert aligned.perplexity(["x"]) == 10.0
    assert isinstance(aligned, PrecisBackend)
    assert with_system([], "x") == [Message("system", "x")]


def test_covering_scenarios_spends_a_limit_on_as_many_scenarios_as_it_can(
    bank: ScenarioBank,
) -> None:
    profile = _profile(care=2.0, economic=1.0, religiosity=1.0, liberty=1.0)
    train = bank.split("train")
    every = build_pairs(profile, train, max_share=1.0)
    eligible = {p.scenario_id for p in every}
    limit = len(eligible) + 2
    assert limit < len(every)  # some scenarios have several pairs: the limit must choose
    plain = build_pairs(profile, train, max_share=1.0, limit=limit)
    covering = build_pairs(profile, train, max_share=1.0, limit=limit, cover_scenarios=True)
    assert {p.scenario_id for p in covering} == eligible
    assert len({p.scenario_id for p in plain}) < len(eligible)
    # each scenario's pair is its strongest; the two left over are the strongest seconds
    strongest = {s: max(p.margin for p in every if p.scenario_id == s) for s in eligible}
    firsts = covering[: len(eligible)]
    assert all(p.margin == strongest[p.scenario_id] for p in firsts)
    assert [p.margin for p in firsts] == sorted((p.margin for p in firsts), reverse=True)
    seconds = sorted((p for p in every if p not in firsts), key=lambda p: -p.margin)
    assert covering[len(eligible) :] == seconds[:2]


def test_a_sampled_limit_spreads_over_the_pool_where_the_strongest_are_its_extremes() -> None:
    from valuetune.tune.scenarios import load_scenario_bank
    from valuetune.values.personas import get_persona

    profile = get_persona("progressive-activist").profile
    train = load_scenario_bank().split("train")
    pool = build_pairs(profile, train, first_choice_only=True)
    strongest = build_pairs(profile, train, first_choice_only=True, limit=256)
    sampled = build_pairs(profile, train, first_choice_only=True, limit=256, order="sampled")
    margins = sorted(p.margin for p in pool)
    quartiles = (margins[len(margins) // 4], margins[3 * len(margins) // 4])
    assert len(sampled) == len(strongest) == 256
    assert set(sampled) <= set(pool)
    assert min(p.margin for p in strongest) > margins[int(0.8 * len(margins))]  # top fifth
    middle = sorted(p.margin for p in sampled)[128]
    assert quartiles[0] <= middle <= quartiles[1]
    cap = int(0.2 * 256 + 0.999)
    assert max(Counter(p.axis for p in sampled).values()) <= cap
    # deterministic, and independent of the order the scenarios come in
    again = build_pairs(profile, train[::-1], first_choice_only=True, limit=256, order="sampled")
    assert again == sampled
    with pytest.raises(ValueError, match="unknown pair order"):
        build_pairs(profile, train, order="random")  # type: ignore[arg-type]
