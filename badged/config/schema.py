"""JSON Schemas of the config files, generated from the model (one source of truth)."""

from __future__ import annotations

from typing import Any

from .model import KINDS, HostConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def kind_schema(kind: str) -> dict[str, Any]:
    model = HostConfig if kind == "host" else KINDS[kind]
    schema = model.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, **schema}


def all_schemas() -> dict[str, Any]:
    """One document: each kind under `$defs`, for editors to reference by fragment."""
    defs: dict[str, Any] = {}
    for kind in [*KINDS, "host"]:
        schema = kind_schema(kind)
        schema.pop("$schema")
        nested = schema.pop("$defs", {})
        defs.update(nested)
        defs[kind] = schema
    return {"$schema": SCHEMA_DIALECT, "title": "badged config tree", "$defs": defs,
            "anyOf": [{"$ref": f"#/$defs/{kind}"} for kind in [*KINDS, "host"]]}


KIND_NAMES = [*KINDS, "host"]
