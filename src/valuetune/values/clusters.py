"""Clustering respondents' profiles into groups (k-means with k-means++ seeding).

Each group is described by its centroid and the persona nearest to it, so an admin sees
"a group of 14 close to green-communitarian" rather than a bare label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from valuetune.values.personas import Persona, nearest_personas
from valuetune.values.profile import ValueProfile


@dataclass(frozen=True)
class Cluster:
    members: tuple[str, ...]
    centroid: ValueProfile
    nearest_persona: Persona
    persona_distance: float


@dataclass(frozen=True)
class Clustering:
    k: int
    clusters: tuple[Cluster, ...]
    silhouette: float


def _kmeans(
    x: NDArray[np.float64], k: int, rng: np.random.Generator, iters: int = 100
) -> NDArray[np.int_]:
    # k-means++: each next centre drawn with probability proportional to squared distance.
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        total = d2.sum()
        probs = d2 / total if total > 0 else np.full(len(x), 1.0 / len(x))
        centres.append(x[rng.choice(len(x), p=probs)])
    c = np.array(centres)
    labels = np.zeros(len(x), dtype=np.int_)
    for _ in range(iters):
        new = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(k):
            if np.any(labels == j):
                c[j] = x[labels == j].mean(axis=0)
    return labels


def _silhouette(x: NDArray[np.float64], labels: NDArray[np.int_]) -> float:
    dist = np.sqrt(((x[:, None, :] - x[None]) ** 2).sum(-1))
    groups = np.unique(labels)
    if len(groups) < 2:
        return 0.0
    scores = []
    for i in range(len(x)):
        own = labels == labels[i]
        if own.sum() <= 1:
            scores.append(0.0)
            continue
        a = dist[i, own].sum() / (own.sum() - 1)
        b = min(dist[i, labels == g].mean() for g in groups if g != labels[i])
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(scores))


def cluster_profiles(
    profiles: Mapping[str, ValueProfile], k: int | None = None, *, seed: int = 0, max_k: int = 8
) -> Clustering:
    """Group profiles by their value axes; with `k` None, pick k in 2..max_k by silhouette."""
    ids = list(profiles)
    if len(ids) < 2:
        raise ValueError("clustering needs at least two profiles")
    x = np.array([profiles[i].vector for i in ids])
    candidates = [k] if k is not None else list(range(2, min(max_k, len(ids) - 1) + 1)) or [2]
    best: tuple[float, int, NDArray[np.int_]] | None = None
    for kk in candidates:
        if not 1 <= kk <= len(ids):
            raise ValueError(f"k must be between 1 and {len(ids)}")
        labels = _kmeans(x, kk, np.random.default_rng(seed))
        score = _silhouette(x, labels)
        if best is None or score > best[0]:
            best = (score, kk, labels)
    assert best is not None
    score, kk, labels = best
    clusters = []
    for j in np.unique(labels):
        members = tuple(ids[i] for i in np.flatnonzero(labels == j))
        centroid = ValueProfile.mean(profiles[m] for m in members)
        persona, distance = nearest_personas(centroid, 1)[0]
        clusters.append(Cluster(members, centroid, persona, distance))
    clusters.sort(key=lambda c: -len(c.members))
    return Clustering(kk, tuple(clusters), score)
