"""Reading the JSON documents that ship inside the package (item bank, scenario bank)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from valuetune.errors import SchemaError


def packaged_documents(
    package: str, folder: str, files: Sequence[str], key: str
) -> list[Mapping[str, Any]]:
    """The `key` list of each built-in JSON file under `package/data/folder`, concatenated."""
    base = resources.files(package).joinpath("data", folder)
    docs: list[Mapping[str, Any]] = []
    for name in files:
        try:
            docs.extend(json.loads(base.joinpath(name).read_text("utf-8"))[key])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SchemaError(f"built-in file {folder}/{name} is unreadable: {exc}") from None
    return docs
