"""Cards and their link to a holder and a CROUS card number."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .db import utcnow

STATES = ("active", "lost", "stolen", "broken", "expired", "destroyed")


@dataclass(frozen=True)
class Card:
    csn: str
    person_id: str | None
    crous_number: int | None
    state: str
    enrolled_at: str | None


def get(conn: sqlite3.Connection, csn: str) -> Card | None:
    row = conn.execute("SELECT csn, person_id, crous_number, state, enrolled_at FROM cards "
                       "WHERE csn = ?", (csn.upper(),)).fetchone()
    return Card(**dict(row)) if row else None


def count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for state, n in conn.execute("SELECT state, count(*) FROM cards GROUP BY state"):
        counts[state] = n
    return counts


def crous_number_for(conn: sqlite3.Connection, csn: str) -> int | None:
    """The CROUS card number the imported CROUS CSV gives for this CSN, if any."""
    row = conn.execute("SELECT num_carte FROM crous_cards WHERE csn = ?",
                       (csn.upper(),)).fetchone()
    return int(row[0]) if row else None


def link(conn: sqlite3.Connection, csn: str, person_id: str, crous_number: int | None) -> None:
    now = utcnow()
    conn.execute(
        "INSERT INTO cards (csn, person_id, crous_number, state, enrolled_at, updated_at) "
        "VALUES (?, ?, ?, 'active', ?, ?)",
        (csn.upper(), person_id, crous_number, now, now),
    )
