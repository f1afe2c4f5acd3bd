"""Door-system exports: the cards to export, and what each export last delivered."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

# Cards that are (or were) in use; `destroyed` is kept so that a card destroyed while
# active is blocked, never silently left valid in the door system.
EXPORTED_STATES = ("active", "lost", "stolen", "broken", "expired", "destroyed")


@dataclass(frozen=True)
class ExportState:
    export: str
    destination: str | None
    digest: str | None
    files: list[str]
    cards: int | None
    change_marker: int
    last_success_at: float | None
    last_written_at: float | None
    last_run_at: float | None
    last_error: str | None
    failures: int
    next_attempt_at: float | None


class DeliveredCard(NamedTuple):
    """One card the door system holds (a tuple: an export reads tens of thousands)."""

    person_id: str
    status: str  # valid | blocked
    fingerprint: str


def change_marker(conn: sqlite3.Connection) -> int:
    """The id of the last card state change (enrolments included): cheap to poll."""
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM card_state_changes")
               .fetchone()[0])


# The columns of `cards_with_holders`, in order.
CARD_COLUMNS = ("csn", "state", "crous_number", "enrolled_at", "updated_at", "person_id",
                "last_name", "first_name", "birth_date", "email", "ine", "category",
                "end_of_rights", "leaving_since", "source")


def cards_with_holders(conn: sqlite3.Connection) -> list[tuple]:
    """Every exported card with its holder (plain tuples, CARD_COLUMNS), by holder then
    enrolment."""
    marks = ", ".join("?" * len(EXPORTED_STATES))
    cursor = conn.cursor()
    cursor.row_factory = None  # tuples: a population is tens of thousands of rows
    rows = cursor.execute(
        "SELECT c.csn, c.state, c.crous_number, c.enrolled_at, c.updated_at, "
        "p.id, p.last_name, p.first_name, p.birth_date, p.email, p.ine, "
        "p.category, p.end_of_rights, p.leaving_since, p.source "
        "FROM cards AS c JOIN people AS p ON p.id = c.person_id "
        f"WHERE c.state IN ({marks})", EXPORTED_STATES).fetchall()
    # Sorted here, not by SQLite: it would sort the wide joined rows through a temporary
    # B-tree; by holder, then enrolment (a card never enrolled: its last change), then CSN.
    rows.sort(key=lambda r: (r[5], r[3] or r[4], r[0]))
    return rows


def state(conn: sqlite3.Connection, export: str) -> ExportState | None:
    row = conn.execute("SELECT * FROM access_exports WHERE export = ?", (export,)).fetchone()
    if row is None:
        return None
    values = dict(row)
    values["files"] = json.loads(values["files"]) if values["files"] else []
    return ExportState(**values)


def delivered(conn: sqlite3.Connection, export: str) -> dict[str, DeliveredCard]:
    """csn → what the door system holds from this export (empty before the first)."""
    cursor = conn.cursor()
    cursor.row_factory = None
    return {csn: DeliveredCard(person, status, fingerprint)
            for csn, person, status, fingerprint in cursor.execute(
                "SELECT csn, person_id, status, fingerprint FROM access_export_cards "
                "WHERE export = ?", (export,))}


def record_success(conn: sqlite3.Connection, export: str, *, destination: str, digest: str,
                   files: list[str], upsert: Iterable[tuple[str, str, str, str]],
                   remove: Iterable[str], count: int, marker: int, at: float,
                   written: bool) -> None:
    """One successful run (written or found unchanged), in one transaction.

    The cards the door system now holds are the previous ones with `upsert` (csn,
    person_id, status, fingerprint: new or changed lines) and without `remove` (cards gone).
    """
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO access_exports (export, destination, digest, files, cards, "
            "change_marker, last_success_at, last_written_at, last_run_at, last_error, "
            "failures, next_attempt_at) VALUES (:export, :destination, :digest, :files, "
            ":cards, :marker, :at, CASE WHEN :written THEN :at END, :at, NULL, 0, NULL) "
            "ON CONFLICT (export) DO UPDATE SET destination = :destination, digest = :digest, "
            "files = CASE WHEN :written THEN :files ELSE files END, cards = :cards, "
            "change_marker = :marker, last_success_at = :at, "
            "last_written_at = CASE WHEN :written THEN :at ELSE last_written_at END, "
            "last_run_at = :at, last_error = NULL, failures = 0, next_attempt_at = NULL",
            {"export": export, "destination": destination, "digest": digest,
             "files": json.dumps(files), "cards": count, "marker": marker, "at": at,
             "written": written})
        conn.executemany("DELETE FROM access_export_cards WHERE export = ? AND csn = ?",
                         ((export, csn) for csn in remove))
        conn.executemany(
            "INSERT OR REPLACE INTO access_export_cards (export, csn, person_id, status, "
            "fingerprint) VALUES (?, ?, ?, ?, ?)", ((export, *card) for card in upsert))


def record_failure(conn: sqlite3.Connection, export: str, *, error: str, at: float,
                   next_attempt_at: float) -> int:
    """One failed run; returns the failures since the last success."""
    with conn:
        conn.execute(
            "INSERT INTO access_exports (export, last_run_at, last_error, failures, "
            "next_attempt_at) VALUES (?, ?, ?, 1, ?) ON CONFLICT (export) DO UPDATE SET "
            "last_run_at = excluded.last_run_at, last_error = excluded.last_error, "
            "failures = failures + 1, next_attempt_at = excluded.next_attempt_at",
            (export, at, error, next_attempt_at))
    return int(conn.execute("SELECT failures FROM access_exports WHERE export = ?",
                            (export,)).fetchone()[0])
