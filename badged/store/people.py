"""People: holders of cards, keyed by their institutional id.

Registry exports (`badged population import`) feed this table in bulk through `staged`: the
file's good rows are classified in memory against the stored people they name (read with
one statement), then only the new and changed rows are written, one `executemany` each
(INEs that move are freed first); the leaving marks likewise. Nothing is committed unless
`ImportBatch.write` was called.

Leaving: a person absent from a full export of their source gets `leaving_since` (the day it
was first noticed; kept while they stay absent, cleared when they come back). The mark is
not the departure itself: the change sets treat a person as gone only once
`leaving_since` is older than the source's `leaving_grace_days`, so an export that misses
people for a day or two tells the CROUS nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from itertools import repeat
from operator import add, itemgetter
from typing import Any

from .db import bulk_write, utcnow


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

# The columns a registry export may fill, with their type (staging uses the same affinity,
# so "2026" or "0475" from a file compare equal to the stored integers).
IMPORTABLE = {"id": "TEXT", "ine": "TEXT", "last_name": "TEXT", "first_name": "TEXT",
              "birth_date": "TEXT", "email": "TEXT", "academic_year": "INTEGER",
              "first_enrolment_year": "INTEGER", "status_code": "TEXT",
              "staff_index": "INTEGER", "end_of_rights": "TEXT"}


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


def count(conn: sqlite3.Connection, source: str | None = None) -> int:
    """How many people are stored (of one source if given)."""
    if source is None:
        return int(conn.execute("SELECT count(*) FROM people").fetchone()[0])
    return int(conn.execute("SELECT count(*) FROM people WHERE source = ?",
                            (source,)).fetchone()[0])


def leaving(conn: sqlite3.Connection, source: str | None = None) -> list[Person]:
    """People marked as leaving (absent from a full export), oldest mark first.

    The mark alone does not make them gone: see the module docstring (grace days).
    """
    where = "leaving_since IS NOT NULL" + (" AND source = ?" if source is not None else "")
    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM people WHERE {where} "
                        "ORDER BY leaving_since, id", () if source is None else (source,))
    return [Person(**dict(row)) for row in rows]


# --- bulk import of a registry export ------------------------------------------------------

_INTEGER = frozenset(c for c, kind in IMPORTABLE.items() if kind == "INTEGER")


@dataclass(frozen=True)
class IneConflict:
    """A row whose INE is held by another stored person, who keeps it."""

    line: int
    id: str
    ine: str
    holder: str


def _integer(value: Any) -> Any:
    """A file's digits as the INTEGER column stores them ("0475" → 475), like SQLite's
    INTEGER affinity (the rows' years and indexes are checked digits, or already ints)."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


class ImportBatch:
    """A registry export's rows, classified in memory against the stored people they name,
    inside an open write transaction (see `staged`).

    Only the stored people the file names (by id or INE) are read, with one statement each,
    and only the rows that change anything are written, one `executemany` per kind of
    change: a first import into an empty store costs its parse plus one bulk insert.
    """

    def __init__(self, conn: sqlite3.Connection, columns: Sequence[str],
                 rows: Iterable[Sequence[Any]]) -> None:
        self._conn = conn
        self._names = tuple(columns)  # of row[1:]
        self._columns = tuple(c for c in columns if c != "id")
        self._integers = [i + 1 for i, c in enumerate(columns) if c in _INTEGER]
        at = columns.index("id") + 1  # after the line number
        self._rows: dict[str, Sequence[Any]] = {row[at]: row for row in rows}  # file order
        self._ine_at = columns.index("ine") + 1 if "ine" in columns else None
        self._present: set[str] = set()
        self.written = False
        self._empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM people)").fetchone()[0]
        # Stored people named by the file: id → (row columns, category, source,
        # leaving_since), as the rows will be compared with them.
        self._stored: dict[str, tuple[Any, ...]] = {}
        self._holders: dict[str, str] = {}  # INE → stored holder, for the file's INEs
        if not self._empty:
            at_id = self._names.index("id")
            self._stored = {r[at_id]: tuple(r) for r in self._conn.execute(
                f"SELECT {', '.join(self._names)}, category, source, leaving_since "
                "FROM people WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(self._rows)),))}
            if self._ine_at is not None:
                at_ine = self._ine_at
                ines = [row[at_ine] for row in self._rows.values() if row[at_ine]]
                self._holders = dict(self._conn.execute(
                    "SELECT ine, id FROM people WHERE ine IN (SELECT value FROM json_each(?))",
                    (json.dumps(ines),)))
        self._plan: tuple[list[str], list[str]] | None = None  # (created, updated) ids

    def _values(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """A row's values as stored (row columns order)."""
        values = list(row)
        for i in self._integers:
            values[i] = _integer(values[i])
        return tuple(values[1:])

    def ine_conflicts(self) -> list[IneConflict]:
        """Rows whose INE another person holds and keeps (not in this batch), by line.

        A holder who is in the batch releases or keeps their INE by their own row: a swap
        or a correction of two INEs in one export is fine.
        """
        if self._ine_at is None or not self._holders:
            return []
        found = []
        for pid, row in self._rows.items():
            ine = row[self._ine_at]
            holder = self._holders.get(ine) if ine is not None else None
            if holder is not None and holder != pid and holder not in self._rows:
                found.append(IneConflict(row[0], pid, ine, holder))
        return sorted(found, key=lambda c: c.line)

    def unknown(self) -> list[tuple[int, str]]:
        """(line, id) of rows that are not stored people yet."""
        return sorted((row[0], pid) for pid, row in self._rows.items()
                      if pid not in self._stored)

    def discard(self, ids: Iterable[str]) -> None:
        """Drop rows from the batch: never written, but their people count as present."""
        ids = list(ids)
        self.present(ids)
        for pid in ids:
            self._rows.pop(pid, None)
        self._plan = None

    def present(self, ids: Iterable[str]) -> None:
        """People in the file whose rows are not written (rejected): never marked leaving."""
        self._present.update(ids)

    def _classify(self, category: str, source: str) -> tuple[list[str], list[str]]:
        if self._plan is None:
            stored = self._stored
            created = [pid for pid in self._rows if pid not in stored]
            tail = (category, source, None)
            updated = [pid for pid, row in self._rows.items()
                       if pid in stored and stored[pid] != self._values(row) + tail]
            self._plan = (created, updated)
        return self._plan

    def counts(self, category: str, source: str) -> tuple[int, int, int]:
        """(created, updated, unchanged) if the batch were written now."""
        created, updated = self._classify(category, source)
        return len(created), len(updated), len(self._rows) - len(created) - len(updated)

    def write(self, category: str, source: str) -> None:
        """Upsert the rows: mapped columns, category, source; clears leaving marks.

        Columns the source does not map keep their stored values. Commits when `staged`
        exits.
        """
        self.written = True
        created, updated = self._classify(category, source)
        self._leaving_candidates = (source, self._still_of(source))
        if not created and not updated:  # a re-import of the same export: nothing to write
            return
        now, rows = utcnow(), self._rows
        if self._ine_at is not None and updated:
            # Free the INEs that move first: a swap between two people needs it.
            at, stored_at = self._ine_at, self._names.index("ine")
            moving = [(now, pid) for pid in updated
                      if (held := self._stored[pid][stored_at]) is not None
                      and rows[pid][at] != held]
            self._conn.executemany("UPDATE people SET ine = NULL, updated_at = ? WHERE id = ?",
                                   moving)
        if updated:
            keep = [i + 1 for i, c in enumerate(self._names) if c != "id"]
            sets = "".join(f"{c} = ?, " for c in self._columns)
            self._conn.executemany(
                f"UPDATE people SET {sets}category = ?, source = ?, leaving_since = NULL, "
                "updated_at = ? WHERE id = ?",
                ((*(rows[pid][i] for i in keep), category, source, now, pid)
                 for pid in updated))
        if created:
            # The row as it came (line number dropped), the constants after it; the
            # INTEGER columns' affinity stores the years and indexes as numbers.
            names = ", ".join([*self._names, "category", "source", "created_at", "updated_at"])
            marks = ", ".join("?" * (len(self._names) + 4))
            fresh = (rows[pid] for pid in created) if len(created) < len(rows) \
                else rows.values()
            self._conn.executemany(
                f"INSERT INTO people ({names}) VALUES ({marks})",
                map(add, map(tuple, map(itemgetter(slice(1, None)), fresh)),
                    repeat((category, source, now, now))))

    def _still_of(self, source: str) -> list[str]:
        """Ids of the people of `source` not marked leaving, before this batch is written."""
        if self._empty:
            return []
        return [r[0] for r in self._conn.execute(
            "SELECT id FROM people WHERE source = ? AND leaving_since IS NULL", (source,))]

    def mark_leaving(self, source: str, today: str) -> int:
        """Mark people of `source` absent from the file as leaving since `today` (ISO date).

        A mark already set is kept (the first day of absence counts). Returns how many were
        newly marked. Call after `write`.
        """
        known, ids = getattr(self, "_leaving_candidates", (None, []))
        if known != source:
            ids = self._still_of(source)
        absent = [(today, utcnow(), pid) for pid in ids
                  if pid not in self._rows and pid not in self._present]
        self._conn.executemany("UPDATE people SET leaving_since = ?, updated_at = ? "
                               "WHERE id = ? AND leaving_since IS NULL", absent)
        return len(absent)


@contextmanager
def staged(conn: sqlite3.Connection, columns: Sequence[str],
           rows: Iterable[Sequence[Any]]) -> Iterator[ImportBatch]:
    """Take registry rows `(line, *values)` into a write transaction as an ImportBatch.

    `columns` name the values: IMPORTABLE columns, `id` among them, in the rows' order. Ids
    must be unique (the caller rejects duplicates). Commits on exit only if the batch was
    written. `BEGIN IMMEDIATE` takes the write lock first, so what the checks see is still
    true when `write` runs, even with the daemon writing to the same store.
    """
    if ("id" not in columns or len(set(columns)) != len(columns)
            or any(c not in IMPORTABLE for c in columns)):
        raise ValueError(f"bad import columns: {columns!r}")
    with bulk_write(conn, "people") as tx:
        batch = ImportBatch(conn, columns, rows)
        yield batch
        if batch.written:
            tx.commit()
