"""The `dpo` recipe on the real embedded model (slow): it learns, stays sane, round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from valuetune.evaluate.fit import preference_margin
from valuetune.evaluate.report import general_text
from valuetune.llm.base import Message
from valuetune.llm.local import TransformersBackend
from valuetune.tune.dpo import DPOSettings, load_adapter, train_adapter
from valuetune.tune.pairs import build_pairs
from valuetune.tune.scenarios import load_scenario_bank
from valuetune.values.personas import get_persona

SETTINGS = DPOSettings(pairs=24, epochs=2, trainable_layers=4, beta=2.0, checkpoint_every=100)


@pytest.mark.slow
def test_dpo_on_the_embedded_model_prefers_the_holders_replies(tmp_path: Path) -> None:
    backend = TransformersBackend.embedded(tmp_path / "home")
    profile = get_persona("progressive-activist").profile
    pairs = build_pairs(
        profile, load_scenario_bank().split("train"), limit=SETTINGS.pairs, first_choice_only=True
    )
    before = preference_margin(backend, pairs)
    meta = train_adapter(backend, pairs, SETTINGS, tmp_path / "adapter", metadata={})
    assert meta["trainable_layers"] == [26, 27, 28, 29]
    aligned = load_adapter(backend, tmp_path / "adapter")
    assert preference_margin(aligned, pairs) > before + 0.1
    # general text stays readable: this small run moves perplexity by well under half
    texts = general_text()
    assert aligned.perplexity(texts) < 1.5 * backend.perplexity(texts)
    again = load_adapter(backend, tmp_path / "adapter")
    chat = [Message("user", pairs[0].prompt)]
    replies = [pairs[0].chosen, pairs[0].rejected]
    assert [s.logprob for s in again.score(chat, replies)] == [
        s.logprob for s in aligned.score(chat, replies)
    ]
