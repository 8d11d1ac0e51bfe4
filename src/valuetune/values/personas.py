"""Exemplar personas: archetypal value profiles with a description, and nearest-persona lookup.

Personas are archetypes written for this project, not real people. Their profiles carry
no uncertainty (standard errors 0): they are points, not measurements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from valuetune.errors import NotFoundError, SchemaError
from valuetune.values.profile import ValueProfile


@dataclass(frozen=True)
class Persona:
    id: str
    name: str
    summary: str
    description: str
    profile: ValueProfile


def parse_personas(doc: Any, schema: str = "axes/v1") -> tuple[Persona, ...]:
    try:
        personas = tuple(
            Persona(
                id=str(p["id"]),
                name=str(p["name"]),
                summary=str(p["summary"]),
                description=str(p["description"]),
                profile=ValueProfile.from_mappings(
                    p["values"], p.get("style", {}), p.get("boundaries", []), schema=schema
                ),
            )
            for p in doc["personas"]
        )
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"persona file is malformed: {exc!r}") from None
    ids = [p.id for p in personas]
    if len(set(ids)) != len(ids):
        raise SchemaError("persona file repeats an id")
    return personas


@cache
def load_personas(schema: str = "axes/v1") -> tuple[Persona, ...]:
    """The built-in personas for `schema`."""
    name = "personas_" + schema.replace("axes/", "") + ".json"
    try:
        text = resources.files("valuetune.values").joinpath("data", name).read_text("utf-8")
    except FileNotFoundError:
        raise SchemaError(f"no built-in personas for {schema}") from None
    return parse_personas(json.loads(text), schema)


def get_persona(persona_id: str, schema: str = "axes/v1") -> Persona:
    for persona in load_personas(schema):
        if persona.id == persona_id:
            return persona
    known = ", ".join(p.id for p in load_personas(schema))
    raise NotFoundError(f"no persona {persona_id!r}; known personas: {known}")


def nearest_personas(
    profile: ValueProfile, k: int = 3, personas: tuple[Persona, ...] | None = None
) -> list[tuple[Persona, float]]:
    """The `k` personas closest to `profile` (Euclidean over value axes), with distances."""
    pool = personas if personas is not None else load_personas(profile.schema)
    ranked = sorted(((p, profile.distance(p.profile)) for p in pool), key=lambda pair: pair[1])
    return ranked[:k]
