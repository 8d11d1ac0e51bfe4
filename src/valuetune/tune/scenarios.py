"""The scenario bank: value-laden dilemmas with candidate replies annotated by value.

Each scenario is a user asking an assistant for advice, with 2-4 candidate replies that
recommend different courses of action. Every reply carries loadings on the value axes and
on the style dimensions, so a profile ranks the replies: utility = θ_values · loadings +
STYLE_WEIGHT · θ_style · style. Fields follow the Moral Stories layout (norm, situation,
intention, actions with consequences), so external sets in that layout load too
(`load_moral_stories`); their actions carry no loadings until annotated.

The split is fixed: a scenario is held out when the first byte of sha256(id) is below
`HELDOUT_FRACTION`·256. Held-out scenarios are never used for training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from valuetune.errors import SchemaError
from valuetune.packaged import packaged_documents
from valuetune.values.axes import AxesSchema, load_axes
from valuetune.values.profile import ValueProfile

HELDOUT_FRACTION = 0.2
STYLE_WEIGHT = 0.5
"""Style matters less than values when ranking replies; a full style match is worth half."""
SCENARIO_FILES = (
    "work_family.json",
    "health_friends.json",
    "civic_faith.json",
    "world_tech.json",
    "money_work.json",
    "family_school.json",
    "wellbeing_friends.json",
    "love_online.json",
    "neighbours_citizens.json",
    "belief_justice.json",
    "earth_machines.json",
    "travel_shopping.json",
)
"""The built-in bank: the first 320 scenarios, then the 2026-11-29 additions by domain pair."""
Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class Action:
    text: str
    loadings: Mapping[str, float]
    style: Mapping[str, float] = field(default_factory=dict)
    consequence: str = ""

    def utility(self, profile: ValueProfile) -> float:
        """How well this reply fits `profile`."""
        axes = profile.axes
        value = sum(profile.values[axes.value_ids.index(a)] * w for a, w in self.loadings.items())
        style = sum(profile.style[axes.style_ids.index(s)] * w for s, w in self.style.items())
        return value + STYLE_WEIGHT * style


@dataclass(frozen=True)
class Scenario:
    id: str
    domain: str
    norm: str
    situation: str
    intention: str
    prompt: str
    actions: tuple[Action, ...]

    @property
    def split(self) -> Split:
        first = hashlib.sha256(self.id.encode()).digest()[0]
        return "heldout" if first < HELDOUT_FRACTION * 256 else "train"

    @property
    def annotated(self) -> bool:
        return all(a.loadings for a in self.actions)

    def ranking(self, profile: ValueProfile) -> list[tuple[int, float]]:
        """Action indices with utilities, best first (ties keep bank order)."""
        scored = [(i, a.utility(profile)) for i, a in enumerate(self.actions)]
        return sorted(scored, key=lambda pair: -pair[1])

    def contrast_axis(self) -> str | None:
        """The value axis on which the replies differ most."""
        axes = {a for action in self.actions for a in action.loadings}
        if not axes:
            return None

        def spread(axis: str) -> float:
            weights = [action.loadings.get(axis, 0.0) for action in self.actions]
            return max(weights) - min(weights)

        return max(sorted(axes), key=spread)


def _check_weights(raw: Any, known: tuple[str, ...], where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: expected an object of weights")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SchemaError(f"{where}: unknown dimensions {unknown}")
    weights = {str(k): float(v) for k, v in raw.items()}
    if any(not -1.0 <= w <= 1.0 for w in weights.values()):
        raise SchemaError(f"{where}: weights must be in [-1, 1]")
    return weights


def parse_scenario(doc: Mapping[str, Any], axes: AxesSchema) -> Scenario:
    sid = doc.get("id")
    if not isinstance(sid, str) or not sid:
        raise SchemaError(f"scenario without an id: {str(doc)[:80]}")
    try:
        actions = tuple(
            Action(
                text=str(a["text"]).strip(),
                loadings=_check_weights(a.get("loadings", {}), axes.value_ids, f"{sid} loadings"),
                style=_check_weights(a.get("style", {}), axes.style_ids, f"{sid} style"),
                consequence=str(a.get("consequence", "")),
            )
            for a in doc["actions"]
        )
        scenario = Scenario(
            id=sid,
            domain=str(doc["domain"]),
            norm=str(doc.get("norm", "")),
            situation=str(doc.get("situation", "")),
            intention=str(doc.get("intention", "")),
            prompt=str(doc["prompt"]).strip(),
            actions=actions,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"scenario {sid} is malformed: {exc!r}") from None
    if not 2 <= len(scenario.actions) <= 4:
        raise SchemaError(f"scenario {sid} needs 2 to 4 actions")
    if not scenario.prompt or any(not a.text for a in scenario.actions):
        raise SchemaError(f"scenario {sid} has an empty prompt or reply")
    return scenario


@dataclass(frozen=True)
class ScenarioBank:
    scenarios: tuple[Scenario, ...]

    def __post_init__(self) -> None:
        ids = [s.id for s in self.scenarios]
        if len(set(ids)) != len(ids):
            raise SchemaError("scenario bank repeats an id")

    def __len__(self) -> int:
        return len(self.scenarios)

    def split(self, which: Split) -> list[Scenario]:
        return [s for s in self.scenarios if s.split == which]

    def domains(self) -> list[str]:
        return sorted({s.domain for s in self.scenarios})

    def digest(self) -> str:
        """sha256 of the bank's content: artifacts record which bank they came from."""
        text = json.dumps(
            [s.id for s in self.scenarios] + [a.text for s in self.scenarios for a in s.actions]
        )
        return hashlib.sha256(text.encode()).hexdigest()


def parse_bank(docs: Iterable[Mapping[str, Any]], schema: str = "axes/v1") -> ScenarioBank:
    axes = load_axes(schema)
    return ScenarioBank(tuple(parse_scenario(doc, axes) for doc in docs))


@cache
def load_scenario_bank(schema: str = "axes/v1") -> ScenarioBank:
    """The built-in scenario bank."""
    docs = packaged_documents("valuetune.tune", "scenarios", SCENARIO_FILES, "scenarios")
    return parse_bank(docs, schema)


def load_moral_stories(path: Path, domain: str = "moral-stories") -> ScenarioBank:
    """Load a JSONL file in the Moral Stories layout.

    Each row has norm, situation, intention, moral_action, immoral_action and optionally
    moral_consequence / immoral_consequence. Rows become scenarios with two unannotated
    actions (no loadings): usable for evaluation display and annotation, not for
    personal pairs until annotated.
    """
    docs = []
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise SchemaError(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            docs.append(
                {
                    "id": str(row.get("ID", f"{path.stem}-{number}")),
                    "domain": domain,
                    "norm": row["norm"],
                    "situation": row["situation"],
                    "intention": row["intention"],
                    "prompt": f"{row['situation']} {row['intention']} What should I do?",
                    "actions": [
                        {
                            "text": row["moral_action"],
                            "consequence": row.get("moral_consequence", ""),
                        },
                        {
                            "text": row["immoral_action"],
                            "consequence": row.get("immoral_consequence", ""),
                        },
                    ],
                }
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SchemaError(f"{path}:{number} is not a Moral Stories row: {exc!r}") from None
    return parse_bank(docs)


def rank_agreement(order: Sequence[int], other: Sequence[int]) -> bool:
    """Whether two rankings put the same action first."""
    return bool(order) and bool(other) and order[0] == other[0]
