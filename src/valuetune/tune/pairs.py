"""Personal preference pairs: which reply a profile prefers, scenario by scenario.

For each training scenario the profile ranks the replies by utility (see scenarios.py).
A pair (chosen, rejected) is kept when the utility gap is at least `margin`, so pairs
reflect clear preferences rather than noise. Pairs are attributed to the value axis that
contributes most to their gap, and no axis may supply more than `max_share` of the pairs,
so training does not learn one axis at the expense of the rest. Rows are written in TRL's
conversational preference format.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from valuetune.tune.artifacts import jti_hash, sha256_bytes, write_metadata, writing_artifact
from valuetune.tune.scenarios import Action, Scenario, ScenarioBank
from valuetune.values.profile import ValueProfile

PairOrder = Literal["strongest", "sampled"]
"""Which eligible pairs a limit takes first: the largest utility gaps, or a hash-ordered sample."""


@dataclass(frozen=True)
class PreferencePair:
    scenario_id: str
    prompt: str
    chosen: str
    rejected: str
    margin: float
    axis: str

    def to_row(self, system: str | None = None) -> dict[str, Any]:
        """TRL conversational preference row: prompt, chosen and rejected as messages."""
        prompt = [{"role": "user", "content": self.prompt}]
        if system:
            prompt.insert(0, {"role": "system", "content": system})
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
            "scenario_id": self.scenario_id,
            "axis": self.axis,
            "margin": round(self.margin, 4),
        }


def _driving_axis(profile: ValueProfile, better: Action, worse: Action) -> str:
    """The value axis whose loadings contribute most to the utility gap."""
    axes = profile.axes
    contributions = {
        axis: profile.values[axes.value_ids.index(axis)]
        * (better.loadings.get(axis, 0.0) - worse.loadings.get(axis, 0.0))
        for axis in set(better.loadings) | set(worse.loadings)
    }
    return max(sorted(contributions), key=lambda a: contributions[a]) if contributions else "style"


def build_pairs(
    profile: ValueProfile,
    scenarios: Sequence[Scenario],
    *,
    margin: float = 0.3,
    max_share: float = 0.2,
    limit: int | None = None,
    first_choice_only: bool = False,
    cover_scenarios: bool = False,
    order: PairOrder = "strongest",
) -> list[PreferencePair]:
    """Preference pairs for `profile`, strongest first (or sampled), balanced across axes.

    With `order="sampled"` a `limit` takes a sample of the eligible pairs instead of the
    strongest: they come in the order of a hash of their texts, so the sample is
    deterministic, does not depend on the order of `scenarios`, and spreads over the
    pool's margins. From a large bank the strongest few pairs are its extremes (the 256
    strongest of the 2,682-scenario bank's 3,833 first-choice pairs for the progressive
    test persona have margins 3.1-5, where the pool's median is 1.6).

    With `first_choice_only`, the chosen reply is always the one the profile ranks first
    (the reply persona fit asks the model to pick), paired with each clearly worse one.
    With `cover_scenarios`, each scenario's strongest pair comes before any scenario's
    second: a `limit` spends itself on as many scenarios as it can, not on the few with
    the widest gaps.
    """
    candidates: list[PreferencePair] = []
    for scenario in scenarios:
        if not scenario.annotated:
            continue
        ranked = scenario.ranking(profile)
        for i, (best, best_u) in enumerate(ranked[:1] if first_choice_only else ranked):
            for worse, worse_u in ranked[i + 1 :]:
                gap = best_u - worse_u
                if gap < margin:
                    continue
                better_action, worse_action = scenario.actions[best], scenario.actions[worse]
                candidates.append(
                    PreferencePair(
                        scenario.id,
                        scenario.prompt,
                        better_action.text,
                        worse_action.text,
                        gap,
                        _driving_axis(profile, better_action, worse_action),
                    )
                )
    if order == "sampled":
        candidates.sort(key=_sample_key)
    elif order == "strongest":
        candidates.sort(key=lambda p: (-p.margin, p.scenario_id, p.chosen))
    else:
        raise ValueError(f"unknown pair order {order!r}: use 'strongest' or 'sampled'")
    if cover_scenarios:  # each scenario's first pair in that order, then the rest
        strongest: list[PreferencePair] = []
        rest: list[PreferencePair] = []
        covered: set[str] = set()
        for pair in candidates:
            (rest if pair.scenario_id in covered else strongest).append(pair)
            covered.add(pair.scenario_id)
        candidates = strongest + rest
    target = len(candidates) if limit is None else min(limit, len(candidates))
    cap = max(1, int(max_share * target + 0.999))
    per_axis: dict[str, int] = defaultdict(int)
    chosen: list[PreferencePair] = []
    held_back: list[PreferencePair] = []
    for pair in candidates:
        if per_axis[pair.axis] < cap:
            per_axis[pair.axis] += 1
            chosen.append(pair)
        else:
            held_back.append(pair)
        if len(chosen) >= target:
            break
    # fill up with the first held-back pairs if balancing left room unused
    chosen.extend(held_back[: max(0, target - len(chosen))])
    return chosen[:target]


def _sample_key(pair: PreferencePair) -> bytes:
    text = "\x1f".join((pair.scenario_id, pair.chosen, pair.rejected))
    return hashlib.sha256(text.encode()).digest()


def pairs_jsonl(pairs: Sequence[PreferencePair], system: str | None = None) -> bytes:
    """The pairs as TRL rows, one JSON object a line: the bytes every dataset hash is of."""
    lines = [json.dumps(p.to_row(system), ensure_ascii=False, sort_keys=True) for p in pairs]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def write_pair_dataset(
    out: Path,
    pairs: Sequence[PreferencePair],
    *,
    bank: ScenarioBank,
    jti: str,
    settings: dict[str, Any],
    system: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write `train.jsonl` and its metadata; the directory appears only when complete."""
    data = pairs_jsonl(pairs, system)
    per_axis: dict[str, int] = defaultdict(int)
    for p in pairs:
        per_axis[p.axis] += 1
    with writing_artifact(out, overwrite=overwrite) as work:
        (work / "train.jsonl").write_bytes(data)
        return write_metadata(
            work,
            "preference-pairs",
            pairs=len(pairs),
            scenarios=len({p.scenario_id for p in pairs}),
            per_axis=dict(sorted(per_axis.items())),
            dataset_sha256=sha256_bytes(data),
            scenario_bank_sha256=bank.digest(),
            token_jti_hash=jti_hash(jti),
            settings=settings,
            row_format="trl-conversational-preference",
        )
