"""De-identified exports of the survey for analysis: CSV, JSON Lines, Parquet.

One row per included respondent who completed the survey. What is left out, on purpose:
respondent ids (each export draws a fresh random salt, so its pseudonyms link rows within
one file and nothing else), exact times (the start date and the minutes taken only),
the answers to single items, tokens and aliases, and demographics, which are stored
apart and would make rows easier to re-identify; coverage by group is on the dashboard,
with small groups suppressed.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from valuetune.store.demographics import DemographicsStore
from valuetune.store.survey import SurveyStore
from valuetune.values.items import ItemBank
from valuetune.values.quality import assess_quality

FORMATS = ("csv", "jsonl", "parquet")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


def export_columns(bank: ItemBank) -> list[str]:
    axes = bank.axes
    return [
        "pseudonym",
        "started_on",
        "minutes",
        "answered",
        "skipped",
        "quality_flags",
        *(f"value_{a}" for a in axes.value_ids),
        *(f"value_{a}_se" for a in axes.value_ids),
        *(f"style_{d}" for d in axes.style_ids),
        *(f"style_{d}_se" for d in axes.style_ids),
        "boundaries",
        "placement_economic",
        "placement_social",
    ]


def export_rows(
    survey: SurveyStore, demographics: DemographicsStore, bank: ItemBank
) -> list[dict[str, Any]]:
    """The de-identified rows, in random order (never the order people took part)."""
    salt = secrets.token_bytes(16)
    profiles = survey.profiles(complete_only=True)
    answers = survey.all_timed_answers()
    placements = demographics.placements_by_respondent()
    rows = []
    for summary in survey.respondents():
        profile = profiles.get(summary.id)
        if profile is None or summary.excluded or summary.completed_at is None:
            continue
        report = assess_quality(bank, answers.get(summary.id, []))
        placement = placements.get(summary.id, (None, None))
        minutes = (summary.completed_at - summary.created_at).total_seconds() / 60
        row: dict[str, Any] = {
            "pseudonym": hmac.new(salt, summary.id.encode(), hashlib.sha256).hexdigest()[:16],
            "started_on": summary.created_at.date().isoformat(),
            "minutes": round(minutes, 1),
            "answered": report.answered,
            "skipped": report.skipped,
            "quality_flags": ",".join(sorted(report.flags)),
        }
        axes = bank.axes
        row |= {
            f"value_{a}": round(v, 3) for a, v in zip(axes.value_ids, profile.values, strict=True)
        }
        row |= {
            f"value_{a}_se": round(v, 3)
            for a, v in zip(axes.value_ids, profile.values_se, strict=True)
        }
        row |= {
            f"style_{d}": round(v, 3) for d, v in zip(axes.style_ids, profile.style, strict=True)
        }
        row |= {
            f"style_{d}_se": round(v, 3)
            for d, v in zip(axes.style_ids, profile.style_se, strict=True)
        }
        row["boundaries"] = ",".join(sorted(profile.boundaries))
        row["placement_economic"], row["placement_social"] = placement
        rows.append(row)
    secrets.SystemRandom().shuffle(rows)
    return rows


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue().encode()


def write_jsonl(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> bytes:
    lines = (json.dumps({c: row[c] for c in columns}, ensure_ascii=False) for row in rows)
    return "".join(line + "\n" for line in lines).encode()


def write_parquet(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    listed = list(rows)
    table = pa.Table.from_pylist(listed, schema=_schema(columns)) if listed else None
    out = io.BytesIO()
    pq.write_table(table if table is not None else _schema(columns).empty_table(), out)
    return out.getvalue()


def _schema(columns: Sequence[str]) -> Any:
    import pyarrow as pa

    text = {"pseudonym", "started_on", "quality_flags", "boundaries"}
    whole = {"answered", "skipped", "placement_economic", "placement_social"}
    return pa.schema(
        [
            (c, pa.string() if c in text else pa.int64() if c in whole else pa.float64())
            for c in columns
        ]
    )


WRITERS: dict[str, Callable[[Iterable[dict[str, Any]], Sequence[str]], bytes]] = {
    "csv": write_csv,
    "jsonl": write_jsonl,
    "parquet": write_parquet,
}
