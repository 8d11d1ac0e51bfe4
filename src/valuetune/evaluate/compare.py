"""`valuetune compare`: every method side by side, and the cheapest that fits well enough."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from valuetune.errors import ValuetuneError
from valuetune.evaluate.report import baseline, evaluate_method
from valuetune.tune.methods import FIT_THRESHOLD, AlignmentMethod, TuneRequest

PERPLEXITY_LIMIT = 0.10
"""Largest relative perplexity increase on general text a recommended method may cause."""


def compare_methods(
    request: TuneRequest,
    methods: Sequence[AlignmentMethod],
    workdir: Path,
    *,
    threshold: float = FIT_THRESHOLD,
    perplexity_limit: float = PERPLEXITY_LIMIT,
) -> dict[str, Any]:
    """Build, apply and evaluate each method (cheapest first) on the held-out scenarios.

    The recommendation is the cheapest method whose fit reaches `threshold` while general-
    text perplexity rises by at most `perplexity_limit`; when none does, there is none,
    and `best` names the method with the highest fit.
    """
    base = request.backend
    base_side = baseline(base, request.profile, request.bank)
    rows: list[dict[str, Any]] = []
    for method in sorted(methods, key=lambda m: m.cost):
        started = time.perf_counter()
        try:
            meta = method.build(request, workdir / method.name)
        except ValuetuneError as exc:
            rows.append({"method": method.name, "cost": method.cost, "error": str(exc)})
            continue
        built = time.perf_counter() - started
        doc = evaluate_method(
            base,
            method.apply(base, workdir / method.name),
            request.profile,
            request.bank,
            method=method.name,
            base_side=base_side,
        )
        rows.append(
            {
                "method": method.name,
                "cost": method.cost,
                **{k: doc[k] for k in ("fit", "fit_ci", "gain", "rank_correlation")},
                "perplexity_change": doc["perplexity_change"],
                "build_seconds": round(built, 2),
                "meets": doc["fit"] >= threshold and doc["perplexity_change"] <= perplexity_limit,
                "artifact_kind": meta.get("kind"),
                "per_axis": doc["per_axis"],
            }
        )
    evaluated = [r for r in rows if "fit" in r]
    meeting = [r for r in evaluated if r["meets"]]
    recommended = meeting[0]["method"] if meeting else None
    best = max(evaluated, key=lambda r: r["fit"])["method"] if evaluated else None
    if recommended:
        reason = f"{recommended} is the cheapest method with fit >= {threshold:.2f}"
    elif best:
        reason = f"no method reached fit {threshold:.2f}; {best} fits best"
    else:
        reason = "no method could be built"
    return {
        "base_fit": round(base_side.fit.fit, 4),
        "base_fit_ci": [round(x, 4) for x in base_side.fit.fit_ci],
        "threshold": threshold,
        "perplexity_limit": perplexity_limit,
        "n_items": base_side.fit.n,
        "methods": rows,
        "recommended": recommended,
        "best": best,
        "reason": reason,
    }
