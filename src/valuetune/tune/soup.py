"""Method `soup`: a fitting adapter at once, mixed from adapters trained in advance.

A *soup library* belongs to one base model and holds DPO adapters trained with the
`dpo` recipe for two kinds of profile:

- one per exemplar persona (`persona:<id>`), trained on that persona's preferences;
- one per value axis (`axis:<id>`), trained on a profile that values that axis alone.

A reply's utility is linear in the profile's values (`Scenario.ranking`), so a holder
whose value vector points in direction `t` wants the preference `sum_a t_a * axis_a`.
The soup takes what the nearest persona explains and fills the rest from the axes:

    rho   = exp(-(d / sigma)^2)     closeness to the nearest persona (1 at the persona)
    c_p   = rho * max(0, t . u_p)   weight of that persona's adapter (u_p its unit vector)
    c_a   = (t - c_p u_p)_a         weight of each axis adapter (the residual direction)

so the weighted directions add up to `t` exactly, and a holder at a persona gets that
persona's adapter alone. `sigma` is the personas' median nearest-neighbour distance.
The adapters are merged with PEFT's `add_weighted_adapter(combination_type="cat")`,
which concatenates their ranks: the merged update is exactly the weighted sum of the
components' updates. Building a soup takes seconds; no training happens per holder.
"""

from __future__ import annotations

import copy
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from valuetune.errors import ValuetuneError
from valuetune.llm.base import BackendError, LLMBackend
from valuetune.llm.local import TransformersBackend
from valuetune.tune.artifacts import (
    METADATA,
    ArtifactError,
    jti_hash,
    model_fingerprint,
    read_metadata,
    sha256_bytes,
    write_metadata,
    writing_artifact,
)
from valuetune.tune.dpo import (
    ADAPTER_KIND,
    DPOSettings,
    load_adapter,
    train_adapter,
)
from valuetune.tune.methods import AlignmentMethod, TuneRequest
from valuetune.tune.scenarios import ScenarioBank
from valuetune.values.axes import load_axes
from valuetune.values.personas import Persona
from valuetune.values.profile import ValueProfile

LIBRARY_KIND = "library/soup"
SOUP_KIND = "alignment/soup"
LIBRARY_SETTINGS = DPOSettings(pairs=128, epochs=2.0)
"""The recipe per component: fewer pairs than a personal fine-tune, as there are many."""
MIN_WEIGHT = 0.02
"""Components weighted less than this are left out of the merge (they barely matter)."""


@dataclass(frozen=True)
class Component:
    name: str
    """`persona:<id>` or `axis:<id>`."""
    values: tuple[float, ...]
    """The value vector the component was trained for."""
    path: str
    """Its adapter directory, relative to the library."""

    @property
    def kind(self) -> str:
        return self.name.split(":", 1)[0]


def axis_profile(axis: str, schema: str = "axes/v1") -> ValueProfile:
    """A profile that values `axis` alone (its pole at +1, every other axis and style 0)."""
    values = {a: float(a == axis) for a in load_axes(schema).value_ids}
    return ValueProfile.from_mappings(values, {}, [], schema=schema)


def library_plan(
    personas: Sequence[Persona], axes: Sequence[str], schema: str = "axes/v1"
) -> list[tuple[str, ValueProfile]]:
    """The components of a library: (name, profile trained for), personas first."""
    plan = [(f"persona:{p.id}", p.profile) for p in personas]
    plan += [(f"axis:{a}", axis_profile(a, schema)) for a in axes]
    return plan


def _dir_name(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower())


def default_library(root: Path, backend: TransformersBackend) -> Path:
    """Where the soup library for `backend`'s model lives under a data directory."""
    return root / "soup" / model_fingerprint(backend)[:16]


def build_library(
    backend: TransformersBackend,
    out: Path,
    bank: ScenarioBank,
    plan: Sequence[tuple[str, ValueProfile]],
    settings: DPOSettings = LIBRARY_SETTINGS,
    *,
    cancel: threading.Event | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Train every planned component not yet in `out`, then write the library's index.

    Finished components are kept and skipped, and a component cut short resumes from its
    checkpoint, so the same call after a kill or a cancel carries on where it stopped.
    """
    if not plan:
        raise ValuetuneError("a soup library needs at least one persona or axis")
    base_hash = model_fingerprint(backend)
    out.mkdir(parents=True, exist_ok=True)
    if (out / METADATA).is_file():
        existing = read_metadata(out, LIBRARY_KIND)
        if existing.get("base_model_sha256") != base_hash:
            raise ArtifactError(f"{out} holds a soup library for another base model")
    train = bank.split("train")
    components: list[Component] = []
    for i, (name, profile) in enumerate(plan):
        target = out / "components" / _dir_name(name)
        if progress:
            progress(name, i, len(plan))
        if not (target / METADATA).is_file():
            pairs = settings.training_pairs(profile, train)
            if not pairs:
                raise ValuetuneError(f"no training scenario separates the preferences of {name}")
            train_adapter(
                backend,
                pairs,
                settings,
                target,
                cancel=cancel,
                metadata={"component": name, "scenario_bank_sha256": bank.digest()},
            )
        meta = read_metadata(target, ADAPTER_KIND)
        if meta.get("base_model_sha256") != base_hash:
            raise ArtifactError(f"component {name} in {out} was trained for another base model")
        components.append(Component(name, profile.values, str(target.relative_to(out))))
    with tempfile.TemporaryDirectory(dir=out, prefix=".index-") as scratch:
        meta = write_metadata(
            Path(scratch),
            LIBRARY_KIND,
            base_model=backend.model_id,
            base_model_sha256=base_hash,
            schema=plan[0][1].schema,
            scenario_bank_sha256=bank.digest(),
            config={k: v for k, v in asdict(settings).items() if k != "time_budget_s"},
            components=[asdict(c) for c in components],
        )
        os.replace(Path(scratch) / METADATA, out / METADATA)  # the index appears complete
    return meta


def read_library(library: Path) -> tuple[dict[str, Any], list[Component]]:
    if not (library / METADATA).is_file():
        raise ArtifactError(
            f"no soup library at {library}; build one with `valuetune soup build` "
            "(it trains one adapter per persona and per value axis, once per base model)"
        )
    meta = read_metadata(library, LIBRARY_KIND)
    try:
        components = [
            Component(str(c["name"]), tuple(float(v) for v in c["values"]), str(c["path"]))
            for c in meta["components"]
        ]
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"the soup library index in {library} is damaged") from None
    return meta, components


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def persona_scale(components: Sequence[Component]) -> float:
    """The personas' median nearest-neighbour distance (1.0 with fewer than two)."""
    points = [np.array(c.values) for c in components if c.kind == "persona"]
    if len(points) < 2:
        return 1.0
    nearest = [
        min(float(np.linalg.norm(p - q)) for j, q in enumerate(points) if j != i)
        for i, p in enumerate(points)
    ]
    return float(np.median(nearest)) or 1.0


def soup_weights(
    profile: ValueProfile, components: Sequence[Component], axes: Sequence[str]
) -> dict[str, float]:
    """Each component's weight for `profile` (see the module docstring)."""
    v = np.array(profile.values, dtype=float)
    t = _unit(v)
    weights: dict[str, float] = {}
    residual = t.copy()
    personas = [c for c in components if c.kind == "persona"]
    if personas:
        nearest = min(personas, key=lambda c: float(np.linalg.norm(v - np.array(c.values))))
        distance = float(np.linalg.norm(v - np.array(nearest.values)))
        closeness = math.exp(-((distance / persona_scale(components)) ** 2))
        u = _unit(np.array(nearest.values, dtype=float))
        weight = closeness * max(0.0, float(t @ u))
        weights[nearest.name] = weight
        residual = t - weight * u
    for component in components:
        if component.kind == "axis":
            axis = component.name.split(":", 1)[1]
            weights[component.name] = float(residual[list(axes).index(axis)])
    return {name: round(w, 6) for name, w in weights.items() if abs(w) >= MIN_WEIGHT}


def merge_adapters(
    backend: TransformersBackend,
    library: Path,
    components: Sequence[Component],
    weights: dict[str, float],
    out: Path,
    *,
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the weighted sum of the components' adapters as one PEFT adapter to `out`."""
    from peft import PeftModel

    chosen = [c for c in components if c.name in weights]
    if not chosen:
        raise ValuetuneError("the soup has no component with a weight above the threshold")
    names = [f"c{i}" for i in range(len(chosen))]
    try:
        model: Any = PeftModel.from_pretrained(
            copy.deepcopy(backend.model), str(library / chosen[0].path), adapter_name=names[0]
        )
        for name, component in zip(names[1:], chosen[1:], strict=True):
            model.load_adapter(str(library / component.path), adapter_name=name)
    except Exception as exc:  # safetensors, json and shape errors all mean a damaged library
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"the soup library in {library} is damaged: {first}") from None
    model.add_weighted_adapter(
        names, [weights[c.name] for c in chosen], "default", combination_type="cat"
    )
    for name in names:
        model.delete_adapter(name)
    model.set_adapter("default")
    with writing_artifact(out, overwrite=overwrite) as work:
        model.save_pretrained(str(work))
        return write_metadata(
            work,
            SOUP_KIND,
            method="soup",
            base_model_sha256=model_fingerprint(backend),
            weights={c.name: weights[c.name] for c in chosen},
            rank=int(model.peft_config["default"].r),
            **metadata,
        )


class SoupMethod(AlignmentMethod):
    name = "soup"
    cost = 2

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        """The data directory whose `soup/<model>` holds the library (see `default_library`)."""

    def library(self, request: TuneRequest) -> Path:
        if "library" in request.settings:
            return Path(request.settings["library"])
        if self.root is None or not isinstance(request.backend, TransformersBackend):
            raise BackendError("a soup needs a local transformers model and a library")
        return default_library(self.root, request.backend)

    def build(self, request: TuneRequest, out: Path) -> dict[str, Any]:
        backend = request.backend
        if not isinstance(backend, TransformersBackend):
            raise BackendError("a soup of LoRA adapters needs a local transformers model")
        library = self.library(request)
        meta, components = read_library(library)
        if meta.get("base_model_sha256") != model_fingerprint(backend):
            raise ArtifactError(f"the soup library in {library} is for another base model")
        if meta.get("schema") != request.profile.schema:
            raise ArtifactError(f"the soup library in {library} is for {meta.get('schema')}")
        weights = soup_weights(request.profile, components, request.profile.axes.value_ids)
        return merge_adapters(
            backend,
            library,
            components,
            weights,
            out,
            overwrite=bool(request.settings.get("overwrite")),
            metadata={
                "token_jti_hash": jti_hash(request.jti),
                "base_model": request.base_model,
                "schema": request.profile.schema,
                "library_sha256": sha256_bytes((library / METADATA).read_bytes()),
            },
        )

    def apply(self, backend: LLMBackend, artifact: Path) -> LLMBackend:
        if not isinstance(backend, TransformersBackend):
            raise BackendError("a LoRA adapter needs a local transformers model")
        return load_adapter(backend, artifact, kind=SOUP_KIND)
