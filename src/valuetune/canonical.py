"""Canonical JSON: the one byte form that profiles, token payloads and metadata are hashed in.

Sorted keys, compact separators, ASCII only, and floats written with a fixed number of
decimals (negative zero written as zero), so equal values always give equal bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_PRECISION = 3


def canonical_json(value: Any, precision: int = DEFAULT_PRECISION) -> str:
    """Serialize `value` (dicts, lists, str, int, float, bool, None) canonically."""
    parts: list[str] = []
    _write(value, precision, parts)
    return "".join(parts)


def _write(value: Any, precision: int, out: list[str]) -> None:
    if value is None or isinstance(value, bool):
        out.append(json.dumps(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"canonical JSON has no form for {value!r}")
        text = f"{value:.{precision}f}"
        if float(text) == 0.0:
            text = f"{0.0:.{precision}f}"
        out.append(text)
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=True))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise TypeError(f"canonical JSON keys must be strings, not {type(key).__name__}")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=True))
            out.append(":")
            _write(value[key], precision, out)
        out.append("}")
    elif isinstance(value, Sequence):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, precision, out)
        out.append("]")
    else:
        raise TypeError(f"canonical JSON cannot encode {type(value).__name__}")
