"""What the change sets read: people with their active card, and what was already sent."""

from __future__ import annotations

import sqlite3
from operator import itemgetter

# What a person's line is made of, in this order (see crous/changes.py).
PERSON_COLUMNS = ("p.id", "p.ine", "p.last_name", "p.first_name", "p.email", "p.birth_date",
                  "p.category", "p.academic_year", "p.first_enrolment_year", "p.status_code",
                  "p.staff_index", "p.end_of_rights", "p.source", "p.leaving_since", "c.csn",
                  "c.crous_number")


def people_for_lines(conn: sqlite3.Connection) -> sqlite3.Cursor:
    """Every person as a plain tuple of PERSON_COLUMNS (with their active card's CSN and
    CROUS number, if any), by id: one query for the whole change-set pass (the cursor
    itself: iterated in C, where a generator would add a frame per person)."""
    return _tuples(conn).execute(
        f"SELECT {', '.join(PERSON_COLUMNS)} FROM people p LEFT JOIN cards c "
        "ON c.person_id = p.id AND c.state = 'active' ORDER BY p.id")


def _tuples(conn: sqlite3.Connection) -> sqlite3.Cursor:
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples: a Row per item costs more than the work
    return cursor


def last_sent(conn: sqlite3.Connection, kind: str) -> dict[str, tuple[str, int]]:
    """person id → (fingerprint, batch id) of the last line of this kind sent for them.

    One pass over the (kind, person, batch) index: with a single max(), SQLite takes the
    bare columns from the row holding the maximum (twice as fast as a window function).
    """
    rows = _tuples(conn).execute(
        "SELECT person_id, fingerprint, max(batch_id) FROM exchange_items WHERE kind = ? "
        "GROUP BY person_id", (kind,))
    return {person: (fingerprint, batch) for person, fingerprint, batch in rows}


def ever_sent(conn: sqlite3.Connection) -> set[str]:
    """People the CROUS has heard of from us, in any kind."""
    return set(map(itemgetter(0), _tuples(conn).execute(
        "SELECT person_id FROM exchange_items")))


def first_sent_since(conn: sqlite3.Connection, kind: str, since: str) -> str | None:
    """When the first batch of `kind` sent at or after `since` (ISO UTC) was sent, if any."""
    row = conn.execute("SELECT min(sent_at) FROM batches WHERE kind = ? AND state = 'sent' "
                       "AND sent_at >= ?", (kind, since)).fetchone()
    return row[0] if row else None
