"""Erase a person's records from the store (GDPR retention, badged.enrolment.retention).

Every personal field goes: the `people` row (name, birth date, e-mail, INE, id), the
CROUS's per-person state (`crous_api_holders`, their `crous_api_errors`), and the person's
id wherever another table names them (`person_id` columns: exchange items, door exports,
what the API CROUS was told of a card…), replaced by a random pseudonym that links those
rows together and to nobody. Their cards stay, unlinked (`person_id` NULL), with their
history. Free-text columns (reasons, errors, event details) lose any of the person's
values. What the CROUS was told stays as counts (items per batch) and checksums (file
sha256 and sizes, line fingerprints); the file contents are dropped by the caller.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass

from .db import utcnow

PSEUDONYM_PREFIX = "purged:"
REDACTED = "[purged]"

# Free text that may quote a person (operators' reasons, error messages, event details).
FREE_TEXT = (("card_state_changes", "reason"), ("batches", "last_error"),
             ("job_runs", "last_error"), ("events", "detail"), ("crous_api_runs", "outcome"),
             ("access_exports", "last_error"))
# Per-person state that means nothing once the person is gone: deleted, not pseudonymised.
PER_PERSON_STATE = ("crous_api_holders",)


@dataclass(frozen=True)
class Erased:
    cards: int  # cards unlinked


def candidates(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """People who may have left: marked as leaving, or with an end of rights."""
    return list(conn.execute(
        "SELECT id, source, leaving_since, end_of_rights FROM people "
        "WHERE leaving_since IS NOT NULL OR end_of_rights IS NOT NULL ORDER BY id"))


def batches_of(conn: sqlite3.Connection, person_id: str) -> list[tuple[int, str | None, str]]:
    """(id, archive path, state) of the batches whose files name the person, not purged."""
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT DISTINCT b.id, b.archive_path, b.state FROM exchange_items AS i "
        "JOIN batches AS b ON b.id = i.batch_id WHERE i.person_id = ? AND b.purged_at IS NULL "
        "ORDER BY b.id", (person_id,))]


def cards_of(conn: sqlite3.Connection, person_id: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT csn FROM cards WHERE person_id = ?",
                                       (person_id,))]


def purge_batch_files(conn: sqlite3.Connection, batch_id: int, now: str) -> None:
    """Drop a batch's file contents and archive path (names, sizes and sha256 stay). A batch
    not sent yet cannot be sent without its files: it is marked failed."""
    conn.execute("UPDATE batch_files SET content = X'' WHERE batch_id = ?", (batch_id,))
    conn.execute(
        "UPDATE batches SET purged_at = ?, archive_path = NULL, sent_message = NULL, "
        "state = CASE state WHEN "
        "'sent' THEN 'sent' ELSE 'failed' END, last_error = CASE state WHEN 'sent' THEN "
        "last_error ELSE 'files purged (a person past retention_days): not sent' END "
        "WHERE id = ?", (now, batch_id))


def _tables_with(conn: sqlite3.Connection, column: str) -> list[str]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return [t for t in tables
            if any(c[1] == column for c in conn.execute(f'PRAGMA table_info("{t}")'))]


def personal_values(person: sqlite3.Row) -> list[str]:
    """The person's values as they may be quoted in free text (longest first)."""
    first, last = person["first_name"], person["last_name"]
    values = {person["id"], person["ine"], person["email"], person["birth_date"],
              f"{first} {last}", f"{last} {first}", first, last}
    return sorted((v for v in values if v and len(v) >= 3), key=len, reverse=True)


def erase(conn: sqlite3.Connection, person_id: str) -> Erased:
    """Erase one person (inside the caller's transaction). See the module docstring."""
    person = conn.execute("SELECT * FROM people WHERE id = ?", (person_id,)).fetchone()
    if person is None:
        return Erased(0)
    csns = cards_of(conn, person_id)
    alias = PSEUDONYM_PREFIX + secrets.token_hex(8)
    now = utcnow()
    marks = ", ".join("?" * len(csns))
    conn.execute(f"DELETE FROM crous_api_errors WHERE person_id = ? OR (subject = 'person' "
                 f"AND key = ?) OR (subject = 'card' AND key IN ({marks}))",
                 (person_id, person_id, *csns))
    for table in PER_PERSON_STATE:
        conn.execute(f"DELETE FROM {table} WHERE person_id = ?", (person_id,))
    conn.execute("UPDATE crous_api_cards SET identifier = ? WHERE person_id = ?",
                 (alias, person_id))
    conn.execute("UPDATE events SET detail = json_remove(detail, '$.person_id') "
                 "WHERE json_valid(detail) AND json_extract(detail, '$.person_id') = ?",
                 (person_id,))
    unlinked = conn.execute("UPDATE cards SET person_id = NULL, updated_at = ? "
                            "WHERE person_id = ?", (now, person_id)).rowcount
    for table in _tables_with(conn, "person_id"):
        if table not in ("cards", "people"):
            conn.execute(f'UPDATE "{table}" SET person_id = ? WHERE person_id = ?',
                         (alias, person_id))
    for value in personal_values(person):
        for table, column in FREE_TEXT:
            conn.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?) "
                         f"WHERE instr({column}, ?) > 0", (value, REDACTED, value))
    conn.execute("DELETE FROM people WHERE id = ?", (person_id,))
    return Erased(unlinked)


def record(conn: sqlite3.Connection, people: int, cards: int, batches: int,
           actor: str) -> None:
    """One purge run, as counts only."""
    conn.execute("INSERT INTO people_purges (at, people, cards, batches, actor) "
                 "VALUES (?, ?, ?, ?, ?)", (utcnow(), people, cards, batches, actor))


def purged_total(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(sum(people), 0) FROM people_purges")
               .fetchone()[0])
