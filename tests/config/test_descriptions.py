"""Every field of every kind (and of the host file) carries a description in the JSON
Schema, so that editors (yaml-language-server) show what a key means."""

from __future__ import annotations

from typing import Any

import pytest

from badged.config.schema import KIND_NAMES, kind_schema


def undescribed(schema: dict[str, Any]) -> list[str]:
    """`Object.field` of every property without a description, nested objects included."""
    missing = []
    objects = {"(top)": schema, **schema.get("$defs", {})}
    for name, obj in objects.items():
        for field, prop in obj.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{obj.get('title', name)}.{field}")
    return missing


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_field_has_a_description(kind: str) -> None:
    assert undescribed(kind_schema(kind)) == []


def test_a_description_reaches_the_schema_beside_a_reference() -> None:
    """A nested object's field (a `$ref`) keeps its own description."""
    props = kind_schema("schools")["properties"]
    assert "$ref" in props["enrolment"] or "allOf" in props["enrolment"]
    assert "Enrolment policy" in props["enrolment"]["description"]
    assert "glob" in kind_schema("schools")["$defs"]["ReaderRule"]["properties"]["name"][
        "description"]
