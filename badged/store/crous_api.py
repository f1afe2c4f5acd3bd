"""What the API CROUS was told (holders, cards), what it refused, and the sync runs.

The sync commits after every write the CROUS accepted, so a crash loses at most the record
of the write in flight: the next run looks that object up before writing it again.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .db import utcnow


@dataclass(frozen=True)
class ToldHolder:
    person_id: str
    identifier: str
    fingerprint: str
    due_date: str | None


@dataclass(frozen=True)
class ToldCard:
    csn: str
    person_id: str
    identifier: str
    id_zdc: int
    told_state: str | None
    pending_write: str | None


@dataclass(frozen=True)
class ApiError:
    subject: str
    key: str
    person_id: str | None
    operation: str
    status: int | None
    code: str | None
    message: str
    blocking: bool
    tries: int
    fingerprint: str | None
    first_at: str
    last_at: str


def holders(conn: sqlite3.Connection) -> dict[str, ToldHolder]:
    return {r[0]: ToldHolder(*r) for r in conn.execute(
        "SELECT person_id, identifier, fingerprint, due_date FROM crous_api_holders")}


def cards(conn: sqlite3.Connection) -> dict[str, ToldCard]:
    return {r[0]: ToldCard(*r) for r in conn.execute(
        "SELECT csn, person_id, identifier, id_zdc, told_state, pending_write "
        "FROM crous_api_cards")}


def errors(conn: sqlite3.Connection) -> list[ApiError]:
    rows = conn.execute(
        "SELECT subject, key, person_id, operation, status, code, message, blocking, tries, "
        "fingerprint, first_at, last_at FROM crous_api_errors ORDER BY blocking DESC, "
        "last_at DESC, subject, key")
    return [ApiError(*r[:7], bool(r[7]), *r[8:]) for r in rows]


def error_counts(conn: sqlite3.Connection) -> dict[bool, int]:
    """People (and cards) in error, by blocking flag."""
    counts = {True: 0, False: 0}
    for blocking, n in conn.execute(
            "SELECT blocking, count(DISTINCT coalesce(person_id, key)) FROM crous_api_errors "
            "GROUP BY blocking"):
        counts[bool(blocking)] = n
    return counts


def tell_holder(conn: sqlite3.Connection, person_id: str, identifier: str, fingerprint: str,
                due_date: str | None, *, renamed: bool = True) -> None:
    """The CROUS now holds this person as `identifier` with what `fingerprint` says
    (`renamed`: their cards' identifier may have changed too)."""
    conn.execute(
        "INSERT INTO crous_api_holders (person_id, identifier, fingerprint, due_date, told_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (person_id) DO UPDATE SET "
        "identifier = excluded.identifier, fingerprint = excluded.fingerprint, "
        "due_date = excluded.due_date, told_at = excluded.told_at",
        (person_id, identifier, fingerprint, due_date, utcnow()))
    if renamed:
        conn.execute("UPDATE crous_api_cards SET identifier = ? WHERE person_id = ? "
                     "AND identifier <> ?", (identifier, person_id, identifier))


def tell_card(conn: sqlite3.Connection, csn: str, person_id: str, identifier: str,
              id_zdc: int, state: str | None, pending_write: str | None = None) -> None:
    """Record a card's told state (None: nothing told yet) and any write in flight."""
    conn.execute(
        "INSERT INTO crous_api_cards (csn, person_id, identifier, id_zdc, told_state, "
        "pending_write, told_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (csn) DO UPDATE SET "
        "person_id = excluded.person_id, identifier = excluded.identifier, "
        "id_zdc = excluded.id_zdc, told_state = excluded.told_state, "
        "pending_write = excluded.pending_write, told_at = excluded.told_at",
        (csn, person_id, identifier, id_zdc, state, pending_write, utcnow()))


def mark_changes_sent(conn: sqlite3.Connection, csn: str, up_to_id: int) -> int:
    """The card's queued state changes up to `up_to_id` are told (or need not be)."""
    return conn.execute(
        "UPDATE card_state_changes SET crous_sent_at = ? WHERE csn = ? AND id <= ? "
        "AND crous_sent_at IS NULL", (utcnow(), csn, up_to_id)).rowcount


def record_error(conn: sqlite3.Connection, subject: str, key: str, person_id: str | None,
                 operation: str, status: int | None, code: str | None, message: str,
                 blocking: bool, fingerprint: str | None) -> int:
    """Store (or update) the failure of a person or card; returns its try count."""
    now = utcnow()
    conn.execute(
        "INSERT INTO crous_api_errors (subject, key, person_id, operation, status, code, "
        "message, blocking, tries, fingerprint, first_at, last_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT (subject, key) DO UPDATE SET "
        "person_id = excluded.person_id, operation = excluded.operation, "
        "status = excluded.status, code = excluded.code, message = excluded.message, "
        "blocking = excluded.blocking, tries = tries + 1, fingerprint = excluded.fingerprint, "
        "last_at = excluded.last_at",
        (subject, key, person_id, operation, status, code, message, int(blocking),
         fingerprint, now, now))
    return int(conn.execute("SELECT tries FROM crous_api_errors WHERE subject = ? AND key = ?",
                            (subject, key)).fetchone()[0])


def clear_error(conn: sqlite3.Connection, subject: str, key: str) -> None:
    conn.execute("DELETE FROM crous_api_errors WHERE subject = ? AND key = ?", (subject, key))


def start_run(conn: sqlite3.Connection) -> int:
    cur = conn.execute("INSERT INTO crous_api_runs (started_at) VALUES (?)", (utcnow(),))
    return int(cur.lastrowid or 0)


def finish_run(conn: sqlite3.Connection, run_id: int, *, calls: int, done: int, failed: int,
               pending: int, outcome: str, duration: float) -> None:
    conn.execute(
        "UPDATE crous_api_runs SET finished_at = ?, calls = ?, done = ?, failed = ?, "
        "pending = ?, outcome = ?, duration = ? WHERE id = ?",
        (utcnow(), calls, done, failed, pending, outcome, duration, run_id))


def pending_changes(conn: sqlite3.Connection) -> int:
    """What the CROUS still has to be told: the last run's leftovers, plus the card state
    changes queued since it started (or all queued ones, before any run)."""
    last = conn.execute("SELECT started_at, pending FROM crous_api_runs "
                        "WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1").fetchone()
    if last is None:
        return int(conn.execute("SELECT count(DISTINCT csn) FROM card_state_changes "
                                "WHERE crous_sent_at IS NULL").fetchone()[0])
    newer = conn.execute("SELECT count(DISTINCT csn) FROM card_state_changes "
                         "WHERE crous_sent_at IS NULL AND at > ?", (last[0],)).fetchone()[0]
    return int(last[1]) + int(newer)


def last_runs(conn: sqlite3.Connection) -> tuple[float | None, float | None]:
    """(started_at of the last finished run, of the last run not aborted) as Unix times."""
    from datetime import datetime

    def ts(row: sqlite3.Row | None) -> float | None:
        return datetime.fromisoformat(row[0]).timestamp() if row and row[0] else None

    last = conn.execute("SELECT finished_at FROM crous_api_runs WHERE finished_at IS NOT NULL "
                        "ORDER BY id DESC LIMIT 1").fetchone()
    ok = conn.execute("SELECT finished_at FROM crous_api_runs WHERE finished_at IS NOT NULL "
                      "AND outcome NOT LIKE 'aborted%' ORDER BY id DESC LIMIT 1").fetchone()
    return ts(last), ts(ok)
