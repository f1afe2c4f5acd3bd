"""What the change sets read: people with their active card, and what was already sent."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator


def people_with_cards(conn: sqlite3.Connection) -> Iterator[sqlite3.Row]:
    """Every person, with the CSN and CROUS number of their active card (if any)."""
    yield from conn.execute(
        "SELECT p.*, c.csn AS csn, c.crous_number AS crous_number FROM people p "
        "LEFT JOIN cards c ON c.person_id = p.id AND c.state = 'active' ORDER BY p.id")


def last_sent(conn: sqlite3.Connection, kind: str) -> dict[str, tuple[str, int]]:
    """person id → (fingerprint, batch id) of the last line of this kind sent for them."""
    rows = conn.execute(
        "SELECT person_id, fingerprint, batch_id FROM ("
        "  SELECT person_id, fingerprint, batch_id, row_number() OVER ("
        "    PARTITION BY person_id ORDER BY batch_id DESC) AS n "
        "  FROM exchange_items WHERE kind = ?) WHERE n = 1", (kind,))
    return {person: (fingerprint, batch) for person, fingerprint, batch in rows}


def ever_sent(conn: sqlite3.Connection) -> set[str]:
    """People the CROUS has heard of from us, in any kind."""
    return {r[0] for r in conn.execute("SELECT DISTINCT person_id FROM exchange_items")}


def first_sent_since(conn: sqlite3.Connection, kind: str, since: str) -> str | None:
    """When the first batch of `kind` sent at or after `since` (ISO UTC) was sent, if any."""
    row = conn.execute("SELECT min(sent_at) FROM batches WHERE kind = ? AND state = 'sent' "
                       "AND sent_at >= ?", (kind, since)).fetchone()
    return row[0] if row else None
