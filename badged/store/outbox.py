"""The outbox tables (batches, batch_files, exchange_items): SQL only, no sending.

A batch is written whole (files, recipients, Message-ID, the people it tells the CROUS
about) before anything is sent; the sender then marks each attempt failed or sent. Times
are ISO 8601 UTC text with seconds (see `iso`), so they compare as strings.

Nothing here opens a transaction: the caller owns it (`badged.crous.mail.write_batch`
wraps `insert_batch` in one).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PENDING, SENT = "pending", "sent"


def iso(at: datetime) -> str:
    """`at` as stored: UTC, seconds, `+00:00` (naive datetimes are taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class NewFile:
    name: str
    content: bytes
    charset: str | None
    sha256: str


@dataclass(frozen=True)
class StoredFile:
    """A file of a batch; `content` is b"" once the batch was purged (size and sha256 stay)."""

    name: str
    content: bytes
    charset: str | None
    size: int
    sha256: str


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    sha256: str
    charset: str | None


@dataclass(frozen=True)
class Batch:
    """A stored batch with its files, as the sender needs it."""

    id: int
    school_id: str | None
    kind: str
    transport: str
    message_id: str
    mail_from: str | None
    recipients: list[str]
    subject: str | None
    body: str | None
    academic_year: int | None
    state: str
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    created_at: str
    sent_at: str | None
    archive_path: str | None
    files: list[StoredFile]
    delivered_to: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchInfo:
    """One line of `badged exchange list`: a batch, its delivery state and its files."""

    id: int
    kind: str
    transport: str
    created_at: str
    state: str
    attempts: int
    last_attempt_at: str | None
    next_attempt_at: str | None
    last_error: str | None
    sent_at: str | None
    message_id: str
    recipients: list[str]
    archive_path: str | None
    purged_at: str | None
    items: int
    files: list[FileInfo]


def insert_batch(conn: sqlite3.Connection, *, school_id: str, kind: str, transport: str,
                 message_id: str, mail_from: str, recipients: list[str], subject: str,
                 body: str, academic_year: int | None, created_at: datetime) -> int:
    """Insert a pending batch (in the caller's transaction); its id."""
    cur = conn.execute(
        "INSERT INTO batches (school_id, kind, transport, message_id, recipients, state, "
        "attempts, next_attempt_at, created_at, mail_from, subject, body, academic_year) "
        "VALUES (?, ?, ?, ?, ?, 'pending', 0, NULL, ?, ?, ?, ?, ?)",
        (school_id, kind, transport, message_id, json.dumps(recipients), iso(created_at),
         mail_from, subject, body, academic_year))
    assert cur.lastrowid is not None
    return cur.lastrowid


def set_message_id(conn: sqlite3.Connection, batch_id: int, message_id: str) -> None:
    """Set the Message-ID of a batch not yet attempted (it names the batch id)."""
    conn.execute("UPDATE batches SET message_id = ? WHERE id = ? AND attempts = 0",
                 (message_id, batch_id))


def insert_files(conn: sqlite3.Connection, batch_id: int, files: list[NewFile]) -> None:
    conn.executemany(
        "INSERT INTO batch_files (batch_id, name, content, sha256, charset, size, position) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(batch_id, f.name, f.content, f.sha256, f.charset, len(f.content), i)
         for i, f in enumerate(files)])


def insert_items(conn: sqlite3.Connection, batch_id: int, kind: str,
                 items: list[tuple[str, str, str]]) -> None:
    """One row per person told in the batch: (person_id, fingerprint, reason)."""
    conn.executemany(
        "INSERT INTO exchange_items (batch_id, kind, person_id, fingerprint, reason) "
        "VALUES (?, ?, ?, ?, ?)",
        [(batch_id, kind, person, fingerprint, reason)
         for person, fingerprint, reason in items])


_BATCH_COLUMNS = (
    "id, school_id, kind, transport, message_id, mail_from, recipients, subject, body, "
    "academic_year, state, attempts, next_attempt_at, last_error, created_at, sent_at, "
    "archive_path, delivered_to")


def _files(conn: sqlite3.Connection, batch_id: int) -> list[StoredFile]:
    return [StoredFile(name, bytes(content), charset,
                       len(content) if size is None else size, sha256)
            for name, content, charset, size, sha256 in conn.execute(
                "SELECT name, content, charset, size, sha256 FROM batch_files "
                "WHERE batch_id = ? ORDER BY position, name", (batch_id,))]


def _batch(conn: sqlite3.Connection, row: Any) -> Batch:
    (id_, school_id, kind, transport, message_id, mail_from, recipients, subject, body,
     academic_year, state, attempts, next_attempt_at, last_error, created_at, sent_at,
     archive_path, delivered_to) = tuple(row)
    assert isinstance(id_, int)
    return Batch(
        id=id_, school_id=school_id, kind=kind, transport=transport,
        message_id=message_id, mail_from=mail_from,
        recipients=json.loads(recipients),
        subject=subject, body=body, academic_year=academic_year,
        state=state, attempts=attempts, next_attempt_at=next_attempt_at,
        last_error=last_error, created_at=created_at, sent_at=sent_at,
        archive_path=archive_path, files=_files(conn, id_),
        delivered_to=json.loads(delivered_to) if delivered_to else [])


def get(conn: sqlite3.Connection, batch_id: int) -> Batch | None:
    row = conn.execute(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE id = ?",
                       (batch_id,)).fetchone()
    return None if row is None else _batch(conn, row)


def due(conn: sqlite3.Connection, now: datetime, transport: str = "mail") -> list[Batch]:
    """Pending batches of `transport` due for an attempt (never tried, or their time has
    come), oldest first."""
    rows = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE state = 'pending' AND transport = ? "
        "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id",
        (transport, iso(now))).fetchall()
    return [_batch(conn, row) for row in rows]


def pending(conn: sqlite3.Connection, transport: str = "mail") -> list[Batch]:
    """Every pending batch of `transport`, due or not, oldest first."""
    rows = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE state = 'pending' AND transport = ? "
        "ORDER BY id", (transport,)).fetchall()
    return [_batch(conn, row) for row in rows]


def pending_count(conn: sqlite3.Connection, transport: str | None = None) -> int:
    if transport is None:
        row = conn.execute("SELECT count(*) FROM batches WHERE state = 'pending'").fetchone()
    else:
        row = conn.execute("SELECT count(*) FROM batches WHERE state = 'pending' "
                           "AND transport = ?", (transport,)).fetchone()
    return int(row[0])


def mark_failed(conn: sqlite3.Connection, batch_id: int, *, error: str, now: datetime,
                next_attempt_at: datetime, delivered_to: tuple[str, ...] = ()) -> None:
    """One more failed attempt: the batch stays pending until `next_attempt_at`.
    `delivered_to`: recipients that accepted it this time (added to the earlier ones)."""
    # Read, then write: only the outbox lease holder changes a pending batch.
    row = conn.execute("SELECT delivered_to FROM batches WHERE id = ?", (batch_id,)).fetchone()
    done = json.loads(row[0]) if row and row[0] else []
    done += [r for r in delivered_to if r not in done]
    conn.execute(
        "UPDATE batches SET attempts = attempts + 1, last_error = ?, last_attempt_at = ?, "
        "next_attempt_at = ?, delivered_to = ? WHERE id = ? AND state = 'pending'",
        (error, iso(now), iso(next_attempt_at), json.dumps(done) if done else None, batch_id))


def mark_sent(conn: sqlite3.Connection, batch_id: int, *, now: datetime,
              archive_path: str | None, message: bytes | None = None) -> None:
    """The server (or the maildir) took the batch: sent, with its archive if written, else
    with the bytes sent (`message`), kept until `set_archive`."""
    conn.execute(
        "UPDATE batches SET state = 'sent', attempts = attempts + 1, sent_at = ?, "
        "last_attempt_at = ?, next_attempt_at = NULL, archive_path = ?, sent_message = ? "
        "WHERE id = ? AND state = 'pending'",
        (iso(now), iso(now), archive_path, None if archive_path else message, batch_id))


def set_archive(conn: sqlite3.Connection, batch_id: int, archive_path: str) -> None:
    """The archive is written: record it and drop the copy of the bytes sent."""
    conn.execute("UPDATE batches SET archive_path = ?, sent_message = NULL "
                 "WHERE id = ? AND state = 'sent'", (archive_path, batch_id))


def sent_message(conn: sqlite3.Connection, batch_id: int) -> bytes | None:
    """The bytes sent for a batch not archived yet (None once archived, or if unknown)."""
    row = conn.execute("SELECT sent_message FROM batches WHERE id = ?", (batch_id,)).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])


def has_work(conn: sqlite3.Connection, now: datetime) -> bool:
    """Whether a delivery run would do anything: a mail batch due, or one to archive."""
    return bool(conn.execute(
        "SELECT EXISTS (SELECT 1 FROM batches WHERE transport = 'mail' AND ("
        "(state = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)) OR "
        "(state = 'sent' AND archive_path IS NULL AND purged_at IS NULL)))",
        (iso(now),)).fetchone()[0])


def sent_unarchived(conn: sqlite3.Connection) -> list[Batch]:
    """Sent batches whose archive could not be written (the next run writes it)."""
    rows = conn.execute(
        f"SELECT {_BATCH_COLUMNS} FROM batches WHERE state = 'sent' AND archive_path IS NULL "
        "AND purged_at IS NULL AND transport = 'mail' ORDER BY id").fetchall()
    return [_batch(conn, row) for row in rows]


def purgeable(conn: sqlite3.Connection, sent_before: datetime) -> list[tuple[int, str]]:
    """(id, archive path) of the sent, archived, not yet purged batches sent before the
    cutoff. Pending batches are never returned, nor sent ones not archived yet."""
    return [(id_, path) for id_, path in conn.execute(
        "SELECT id, archive_path FROM batches WHERE state = 'sent' AND purged_at IS NULL "
        "AND archive_path IS NOT NULL AND sent_at < ? ORDER BY id", (iso(sent_before),))]


def mark_purged(conn: sqlite3.Connection, batch_id: int, now: datetime) -> None:
    """Drop the file contents and the archive path; the rows, sizes, checksums and items
    stay (what was told to the CROUS, and when)."""
    conn.execute("UPDATE batch_files SET content = X'' WHERE batch_id = ?", (batch_id,))
    conn.execute("UPDATE batches SET purged_at = ?, archive_path = NULL "
                 "WHERE id = ? AND state = 'sent'", (iso(now), batch_id))


def history(conn: sqlite3.Connection, limit: int | None = None) -> list[BatchInfo]:
    """Every batch, newest first, with its files (no contents) and its item count."""
    sql = ("SELECT b.id, b.kind, b.transport, b.created_at, b.state, b.attempts, "
           "b.last_attempt_at, b.next_attempt_at, b.last_error, b.sent_at, b.message_id, "
           "b.recipients, b.archive_path, b.purged_at, "
           "(SELECT count(*) FROM exchange_items i WHERE i.batch_id = b.id) "
           "FROM batches b ORDER BY b.id DESC")
    params: tuple[object, ...] = ()
    if limit is not None:
        sql += " LIMIT ?"
        params = (limit,)
    files: dict[int, list[FileInfo]] = {}
    for batch_id, name, size, sha256, charset in conn.execute(
            "SELECT batch_id, name, coalesce(size, length(content)), sha256, charset "
            "FROM batch_files ORDER BY batch_id, position, name"):
        files.setdefault(batch_id, []).append(FileInfo(name, size, sha256, charset))
    out = []
    for row in conn.execute(sql, params).fetchall():
        (id_, kind, transport, created_at, state, attempts, last_attempt_at, next_attempt_at,
         last_error, sent_at, message_id, recipients, archive_path, purged_at,
         items) = tuple(row)
        out.append(BatchInfo(
            id=id_, kind=kind, transport=transport, created_at=created_at, state=state,
            attempts=attempts, last_attempt_at=last_attempt_at,
            next_attempt_at=next_attempt_at, last_error=last_error, sent_at=sent_at,
            message_id=message_id, recipients=json.loads(recipients),
            archive_path=archive_path, purged_at=purged_at, items=items,
            files=files.get(id_, [])))
    return out


def make_due(conn: sqlite3.Connection, batch_id: int | None = None) -> list[int]:
    """Pending mail batches (all, or `batch_id`) due now, whatever their backoff: the ids.
    Their attempts and last error stay (what happened before is still true)."""
    where, params = "state = 'pending' AND transport = 'mail'", ()
    if batch_id is not None:
        where, params = where + " AND id = ?", (batch_id,)
    ids = [row[0] for row in conn.execute(f"SELECT id FROM batches WHERE {where} ORDER BY id",
                                          params)]
    conn.execute(f"UPDATE batches SET next_attempt_at = NULL WHERE {where}", params)
    return ids


def state_of(conn: sqlite3.Connection, batch_id: int) -> tuple[str, str | None] | None:
    """(state, purged_at) of a batch, None if there is no such batch."""
    row = conn.execute("SELECT state, purged_at FROM batches WHERE id = ?",
                       (batch_id,)).fetchone()
    return None if row is None else (row[0], row[1])
