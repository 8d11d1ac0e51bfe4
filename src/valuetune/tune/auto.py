"""Method `auto`: the cheapest method that fits the holder well enough.

Candidates go cheapest first (`AlignmentMethod.cost`). Each but the dearest is built and
its persona fit measured on a fixed sample of *training* scenarios (the held-out ones
stay unseen, so `valuetune eval` of an auto artifact is still a fair test); the first to
reach the threshold is kept. When none does, the dearest (the personal fine-tune) is
built without a test: it is the best the registry can do. A candidate that cannot be
built here (a soup without a library) is noted and skipped.

Work happens in a staging directory beside the output, renamed into place when complete,
so a killed run resumes: cheap candidates rebuild in seconds and a fine-tune resumes from
its checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from valuetune.errors import ValuetuneError
from valuetune.evaluate.fit import persona_fit
from valuetune.llm.base import LLMBackend
from valuetune.tune.artifacts import (
    METADATA,
    jti_hash,
    read_metadata,
    refuse_occupied,
    write_metadata,
)
from valuetune.tune.methods import FIT_THRESHOLD, AlignmentMethod, MethodRegistry, TuneRequest
from valuetune.tune.scenarios import Scenario, ScenarioBank

AUTO_KIND = "alignment/auto"
VALIDATION_SCENARIOS = 60


def validation_scenarios(bank: ScenarioBank, n: int = VALIDATION_SCENARIOS) -> list[Scenario]:
    """A fixed sample of annotated training scenarios (by hash of id, not bank order)."""
    train = [s for s in bank.split("train") if s.annotated]
    return sorted(train, key=lambda s: hashlib.sha256(f"validation:{s.id}".encode()).digest())[:n]


class AutoMethod(AlignmentMethod):
    name = "auto"
    cost = 100  # it builds one or more of the others

    def __init__(self, registry: MethodRegistry, threshold: float = FIT_THRESHOLD) -> None:
        self.registry, self.threshold = registry, threshold

    def candidates(self) -> list[AlignmentMethod]:
        return [self.registry.get(n) for n in self.registry.names() if n != self.name]

    def build(self, request: TuneRequest, out: Path) -> dict[str, Any]:
        candidates = self.candidates()
        if not candidates:
            raise ValuetuneError("no alignment method is registered")
        out = out.resolve()
        refuse_occupied(out, overwrite=bool(request.settings.get("overwrite")))
        staging = out.parent / f".{out.name}.auto"
        staging.mkdir(parents=True, exist_ok=True)
        inner = replace(request, settings={**request.settings, "overwrite": True})
        validation = validation_scenarios(request.bank)
        tried: list[dict[str, Any]] = []
        chosen = candidates[-1]
        for method in candidates[:-1]:
            target = staging / method.name
            try:
                method.build(inner, target)
            except ValuetuneError as exc:
                tried.append({"method": method.name, "skipped": str(exc)})
                continue
            aligned = method.apply(request.backend, target)
            fit = persona_fit(aligned, request.profile, validation).fit
            tried.append({"method": method.name, "validation_fit": round(fit, 4)})
            if fit >= self.threshold:
                chosen = method
                break
            shutil.rmtree(target)
        else:
            if not (staging / chosen.name / METADATA).is_file():  # not finished before a kill
                chosen.build(inner, staging / chosen.name)
            tried.append({"method": chosen.name, "validation_fit": None})
        for stale in staging.iterdir():  # candidates not kept
            if stale.name != chosen.name:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        meta = write_metadata(
            staging,
            AUTO_KIND,
            method="auto",
            chosen=chosen.name,
            threshold=self.threshold,
            validation_scenarios=len(validation),
            candidates=tried,
            token_jti_hash=jti_hash(request.jti),
            base_model=request.base_model,
            schema=request.profile.schema,
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
        return meta

    def apply(self, backend: LLMBackend, artifact: Path) -> LLMBackend:
        meta = read_metadata(artifact, AUTO_KIND)
        chosen = str(meta.get("chosen"))
        return self.registry.get(chosen).apply(backend, artifact / chosen)
