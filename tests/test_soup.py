"""The `soup` method: library of persona and axis adapters, weights, exact weighted merge."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from valuetune.llm.local import TransformersBackend  # noqa: E402
from valuetune.tune.artifacts import ArtifactError, read_metadata  # noqa: E402
from valuetune.tune.dpo import DPOSettings, load_adapter  # noqa: E402
from valuetune.tune.methods import TuneRequest  # noqa: E402
from valuetune.tune.scenarios import ScenarioBank, parse_bank  # noqa: E402
from valuetune.tune.soup import (  # noqa: E402
    Component,
    SoupMethod,
    axis_profile,
    build_library,
    library_plan,
    read_library,
    soup_weights,
)
from valuetune.values.axes import load_axes  # noqa: E402
from valuetune.values.personas import Persona  # noqa: E402
from valuetune.values.profile import ValueProfile  # noqa: E402

AXES = load_axes().value_ids
TINY = DPOSettings(
    pairs=8,
    epochs=1,
    learning_rate=5e-3,
    batch_size=4,
    trainable_layers=2,
    lora_r=2,
    lora_alpha=4,
    checkpoint_every=100,
    beta=0.5,
)


def _profile(**values: float) -> ValueProfile:
    return ValueProfile.from_mappings({a: values.get(a, 0.0) for a in AXES})


def _persona(pid: str, **values: float) -> Persona:
    return Persona(pid, pid, "", "", _profile(**values))


def _component(name: str, profile: ValueProfile) -> Component:
    return Component(name, profile.values, name)


@pytest.fixture
def tiny(embedded_tokenizer: Any, make_tiny_llama: Any) -> TransformersBackend:
    return TransformersBackend(make_tiny_llama(4), embedded_tokenizer, model_id="tiny")


@pytest.fixture
def bank() -> ScenarioBank:
    docs = [
        {
            "id": f"s{i:03d}",
            "domain": "work",
            "prompt": f"My colleague needs a hand with task {i}; what should I do?",
            "actions": [
                {"text": f"Stay late and help, case {i}.", "loadings": {"care": 0.9}},
                {"text": f"Let them choose, case {i}.", "loadings": {"liberty": 0.9}},
                {"text": f"Go home, case {i}.", "loadings": {"care": -0.6, "liberty": -0.3}},
            ],
        }
        for i in range(40)
    ]
    return parse_bank(docs)


def test_a_holder_at_a_persona_gets_that_persona_alone() -> None:
    carer = _profile(care=1.5, equality=1.0)
    components = [
        _component("persona:carer", carer),
        _component("persona:free", _profile(liberty=2)),
    ]
    components += [_component(f"axis:{a}", axis_profile(a)) for a in AXES]
    assert soup_weights(carer, components, AXES) == {"persona:carer": pytest.approx(1.0)}


def test_weighted_directions_add_up_to_the_holders_direction() -> None:
    personas = [_profile(care=1.5, equality=1.0), _profile(liberty=2.0, economic=1.0)]
    components = [_component(f"persona:p{i}", p) for i, p in enumerate(personas)]
    components += [_component(f"axis:{a}", axis_profile(a)) for a in AXES]
    holder = _profile(care=1.2, equality=0.4, liberty=-0.8, sanctity=0.5)
    weights = soup_weights(holder, components, AXES)
    total = sum(
        w * np.array(c.values) / np.linalg.norm(c.values)
        for c in components
        for name, w in weights.items()
        if c.name == name
    )
    target = np.array(holder.values) / np.linalg.norm(holder.values)
    np.testing.assert_allclose(total, target, atol=0.05)  # components under 0.02 left out
    assert 0 < weights["persona:p0"] < 1  # near the carer persona, not at it
    assert "persona:p1" not in weights  # only the nearest persona takes part
    assert weights["axis:liberty"] < 0  # a value the holder rejects pulls the other way


def test_library_builds_once_and_the_soup_is_the_exact_weighted_sum(
    tiny: TransformersBackend, bank: ScenarioBank, tmp_path: Path
) -> None:
    plan = library_plan([_persona("carer", care=2.0)], ["care", "liberty"])
    library = tmp_path / "library"
    seen: list[str] = []
    build_library(tiny, library, bank, plan, TINY, progress=lambda n, i, k: seen.append(n))
    meta, components = read_library(library)
    assert meta["config"]["pairs"] == TINY.pairs
    assert [c.name for c in components] == ["persona:carer", "axis:care", "axis:liberty"]
    assert seen == [c.name for c in components]
    first = {c.name: read_metadata(library / c.path)["created_at"] for c in components}
    # a second build reuses every finished component
    build_library(tiny, library, bank, plan, TINY)
    assert {c.name: read_metadata(library / c.path)["created_at"] for c in components} == first

    holder = _profile(care=1.0, liberty=-1.0)
    request = TuneRequest(tiny, holder, "jti-7", bank, "tiny", {"library": str(library)})
    soup = SoupMethod().build(request, tmp_path / "soup")
    weights = soup["weights"]
    assert set(weights) <= {c.name for c in components} and weights["axis:liberty"] < 0

    def delta(model: Any) -> dict[str, Any]:
        base = dict(tiny.model.named_parameters())
        return {k: p.detach() - base[k].detach() for k, p in model.named_parameters()}

    expected: dict[str, Any] = {}
    for c in components:
        if c.name in weights:
            for key, value in delta(load_adapter(tiny, library / c.path).model).items():
                expected[key] = expected.get(key, 0) + weights[c.name] * value
    merged = delta(SoupMethod().apply(tiny, tmp_path / "soup").model)  # type: ignore[attr-defined]
    for key, value in merged.items():
        torch.testing.assert_close(value, expected[key], atol=1e-5, rtol=1e-4)
    assert any(float(v.abs().max()) > 0 for v in merged.values())
    assert soup["token_jti_hash"] != "jti-7"


def test_missing_or_foreign_library_gives_a_clear_error(
    tiny: TransformersBackend, bank: ScenarioBank, tmp_path: Path, make_tiny_llama: Any
) -> None:
    request = TuneRequest(tiny, _profile(care=1), "j", bank, "tiny", {})
    with pytest.raises(ArtifactError, match="valuetune soup build"):
        SoupMethod(tmp_path / "home").build(request, tmp_path / "out")
    library = tmp_path / "library"
    build_library(tiny, library, bank, library_plan([], ["care"]), replace(TINY, pairs=4))
    other = TransformersBackend(make_tiny_llama(4, seed=1), tiny.tokenizer, model_id="other")
    foreign = replace(request, backend=other, settings={"library": str(library)})
    with pytest.raises(ArtifactError, match="another base model"):
        SoupMethod().build(foreign, tmp_path / "out")
    assert not (tmp_path / "out").exists()
