"""People: holders of cards, keyed by their institutional id."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from typing import Any

from .db import utcnow


@dataclass(frozen=True)
class Person:
    id: str
    last_name: str
    first_name: str
    category: str  # student | staff
    email: str | None = None
    ine: str | None = None
    birth_date: str | None = None
    academic_year: int | None = None
    first_enrolment_year: int | None = None
    status_code: str | None = None
    staff_index: int | None = None
    end_of_rights: str | None = None
    source: str | None = None
    leaving_since: str | None = None


_COLUMNS = [f.name for f in fields(Person)]


def get(conn: sqlite3.Connection, person_id: str) -> Person | None:
    row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM people WHERE id = ?",
                       (person_id,)).fetchone()
    return Person(**dict(row)) if row else None


def upsert(conn: sqlite3.Connection, person: Person) -> None:
    """Insert or update a person by id; creation time is kept."""
    values: dict[str, Any] = {c: getattr(person, c) for c in _COLUMNS}
    now = utcnow()
    sets = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "id")
    conn.execute(
        f"INSERT INTO people ({', '.join(_COLUMNS)}, created_at, updated_at) "
        f"VALUES ({', '.join(':' + c for c in _COLUMNS)}, :now, :now) "
        f"ON CONFLICT (id) DO UPDATE SET {sets}, updated_at = :now",
        {**values, "now": now},
    )
