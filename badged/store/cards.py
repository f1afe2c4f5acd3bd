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
    row = conn.execute("SELECT num_carte FROM crous_card_links WHERE csn = ?",
                       (csn.upper(),)).fetchone()
    return int(row[0]) if row else None


def link(conn: sqlite3.Connection, csn: str, person_id: str, crous_number: int | None,
         actor: str = "badged") -> None:
    """Link a new card to its holder, active; the creation is recorded like a state change."""
    now = utcnow()
    conn.execute(
        "INSERT INTO cards (csn, person_id, crous_number, state, enrolled_at, updated_at) "
        "VALUES (?, ?, ?, 'active', ?, ?)",
        (csn.upper(), person_id, crous_number, now, now),
    )
    conn.execute(
        "INSERT INTO card_state_changes (csn, old_state, new_state, reason, actor, at) "
        "VALUES (?, NULL, 'active', 'enrolled', ?, ?)", (csn.upper(), actor, now))


def for_person(conn: sqlite3.Connection, person_id: str) -> list[Card]:
    rows = conn.execute("SELECT csn, person_id, crous_number, state, enrolled_at FROM cards "
                        "WHERE person_id = ? ORDER BY enrolled_at, csn", (person_id,))
    return [Card(**dict(r)) for r in rows]


def holder_of_crous_number(conn: sqlite3.Connection, crous_number: int) -> str | None:
    """The CSN the CROUS CSV links to this CROUS card number, if any."""
    row = conn.execute("SELECT csn FROM crous_card_links WHERE num_carte = ?",
                       (crous_number,)).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class StateChange:
    csn: str
    old_state: str | None
    new_state: str
    reason: str | None
    actor: str
    at: str
    crous_reason: str | None
    crous_sent_at: str | None


def set_state(conn: sqlite3.Connection, csn: str, old: str | None, new: str,
              reason: str | None, actor: str, crous_reason: str | None) -> None:
    """Change a card's state and record who, when and why (queued for the CROUS)."""
    now = utcnow()
    conn.execute("UPDATE cards SET state = ?, updated_at = ? WHERE csn = ?", (new, now, csn))
    conn.execute(
        "INSERT INTO card_state_changes (csn, old_state, new_state, reason, actor, at, "
        "crous_reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (csn, old, new, reason, actor, now, crous_reason),
    )


def history(conn: sqlite3.Connection, csn: str) -> list[StateChange]:
    rows = conn.execute(
        "SELECT csn, old_state, new_state, reason, actor, at, crous_reason, crous_sent_at "
        "FROM card_state_changes WHERE csn = ? ORDER BY id", (csn,))
    return [StateChange(**dict(r)) for r in rows]


def unsent_changes(conn: sqlite3.Connection) -> list[StateChange]:
    """State changes the CROUS has not been told about yet, oldest first."""
    rows = conn.execute(
        "SELECT csn, old_state, new_state, reason, actor, at, crous_reason, crous_sent_at "
        "FROM card_state_changes WHERE crous_sent_at IS NULL ORDER BY id")
    return [StateChange(**dict(r)) for r in rows]
