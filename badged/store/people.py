"""People: holders of cards, keyed by their institutional id.

Registry exports (`badged population import`) feed this table in bulk through `staged`: the
file's good rows go into a temporary table with one `executemany`, then INE conflicts,
counts, the upsert and the leaving marks are each one SQL statement joining that table to
`people`. A first import (nobody stored yet) has nothing to join: its rows go straight into
`people` (`_FirstImport`). Nothing is committed unless `ImportBatch.write` was called.

Leaving: a person absent from a full export of their source gets `leaving_since` (the day it
was first noticed; kept while they stay absent, cleared when they come back). The mark is
not the departure itself: the change sets treat a person as gone only once
`leaving_since` is older than the source's `leaving_grace_days`, so an export that misses
people for a day or two tells the CROUS nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from itertools import repeat
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


def staff_rates(conn: sqlite3.Connection, source: str | None = None
                ) -> list[tuple[str, str | None, int | None]]:
    """(id, status_code, staff_index) of the staff not leaving (of `source`, if given)."""
    sql = ("SELECT id, status_code, staff_index FROM people WHERE category = 'staff' "
           "AND leaving_since IS NULL")
    params: tuple[str, ...] = ()
    if source is not None:
        sql += " AND source = ?"
        params = (source,)
    return [(r[0], r[1], r[2]) for r in conn.execute(sql + " ORDER BY id", params)]


def leaving(conn: sqlite3.Connection, source: str | None = None) -> list[Person]:
    """People marked as leaving (absent from a full export), oldest mark first.

    The mark alone does not make them gone: see the module docstring (grace days).
    """
    where = "leaving_since IS NOT NULL" + (" AND source = ?" if source is not None else "")
    rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM people WHERE {where} "
                        "ORDER BY leaving_since, id", () if source is None else (source,))
    return [Person(**dict(row)) for row in rows]


# --- bulk import of a registry export ------------------------------------------------------

_STAGING = "temp.people_import"
_PRESENT = "temp.people_import_present"  # ids in the file whose rows were not staged


@dataclass(frozen=True)
class IneConflict:
    """A staged row whose INE is held by another stored person, who keeps it."""

    line: int
    id: str
    ine: str
    holder: str


class ImportBatch:
    """A staged registry export, inside an open write transaction (see `staged`)."""

    def __init__(self, conn: sqlite3.Connection, columns: Sequence[str]) -> None:
        self._conn = conn
        self._columns = tuple(c for c in columns if c != "id")
        self.written = False
        self._counts: tuple[int, int] | None = None  # (created, updated) from counts()
        # Stored vs staged, for the mapped columns plus what every import sets.
        self._mine = [*self._columns, "category", "source", "leaving_since"]
        self._stored = ", ".join(f"p.{c}" for c in self._mine)
        self._staged = ", ".join([*(f"s.{c}" for c in self._columns), ":category", ":source",
                                  "NULL"])

    def ine_conflicts(self) -> list[IneConflict]:
        """Staged rows whose INE another person holds and keeps (not in this batch), by line.

        A holder who is in the batch releases or keeps their INE by their own row: a swap
        or a correction of two INEs in one export is fine.
        """
        if "ine" not in self._columns:
            return []
        return [IneConflict(*row) for row in self._conn.execute(
            f"SELECT s.line, s.id, s.ine, p.id FROM {_STAGING} AS s "
            "JOIN people AS p ON p.ine = s.ine AND p.id <> s.id "
            f"WHERE NOT EXISTS (SELECT 1 FROM {_STAGING} AS r WHERE r.id = p.id) "
            "ORDER BY s.line")]

    def unknown(self) -> list[tuple[int, str]]:
        """(line, id) of staged rows that are not stored people yet."""
        return list(self._conn.execute(
            f"SELECT s.line, s.id FROM {_STAGING} AS s "
            "WHERE NOT EXISTS (SELECT 1 FROM people AS p WHERE p.id = s.id) ORDER BY s.line"))

    def discard(self, ids: Iterable[str]) -> None:
        """Drop rows from the batch: never written, but their people count as present."""
        ids = list(ids)
        self.present(ids)
        self._conn.executemany(f"DELETE FROM {_STAGING} WHERE id = ?", ((i,) for i in ids))

    def present(self, ids: Iterable[str]) -> None:
        """People in the file whose rows are not written (rejected): never marked leaving."""
        self._conn.executemany(f"INSERT OR IGNORE INTO {_PRESENT} VALUES (?)",
                               ((i,) for i in ids))

    def counts(self, category: str, source: str) -> tuple[int, int, int]:
        """(created, updated, unchanged) if the batch were written now."""
        created, updated, staged = self._conn.execute(
            "SELECT count(*) FILTER (WHERE p.id IS NULL), "
            f"count(*) FILTER (WHERE p.id IS NOT NULL AND ({self._stored}) IS NOT "
            f"({self._staged})), count(*) "
            f"FROM {_STAGING} AS s LEFT JOIN people AS p ON p.id = s.id",
            {"category": category, "source": source}).fetchone()
        self._counts = (created, updated)
        return created, updated, staged - created - updated

    def write(self, category: str, source: str) -> None:
        """Upsert the staged rows: mapped columns, category, source; clears leaving marks.

        Columns the source does not map keep their stored values. Commits when `staged`
        exits.
        """
        self.written = True
        if self._counts == (0, 0):  # a re-import of the same export: nothing to write
            return
        params = {"category": category, "source": source, "now": utcnow()}
        if "ine" in self._columns and (self._counts is None or self._counts[1]):
            # Free the INEs that move first: a swap between two people needs it.
            self._conn.execute(
                f"UPDATE people AS p SET ine = NULL, updated_at = :now FROM {_STAGING} AS s "
                "WHERE s.id = p.id AND p.ine IS NOT NULL AND s.ine IS NOT p.ine", params)
        created, updated = self._counts or (None, None)
        if updated != 0:
            sets = "".join(f"{c} = s.{c}, " for c in self._columns)
            self._conn.execute(
                f"UPDATE people AS p SET {sets}category = :category, source = :source, "
                f"leaving_since = NULL, updated_at = :now FROM {_STAGING} AS s "
                f"WHERE p.id = s.id AND ({self._stored}) IS NOT ({self._staged})", params)
        if created != 0:
            cols = "".join(f"{c}, " for c in self._columns)
            self._conn.execute(
                f"INSERT INTO people (id, {cols}category, source, created_at, updated_at) "
                f"SELECT id, {cols}:category, :source, :now, :now FROM {_STAGING} AS s "
                "WHERE NOT EXISTS (SELECT 1 FROM people AS p WHERE p.id = s.id)", params)

    def mark_leaving(self, source: str, today: str) -> int:
        """Mark people of `source` absent from the file as leaving since `today` (ISO date).

        A mark already set is kept (the first day of absence counts). Returns how many were
        newly marked. Call after `write`.
        """
        return self._conn.execute(
            "UPDATE people SET leaving_since = :today, updated_at = :now "
            "WHERE source = :source AND leaving_since IS NULL "
            f"AND id NOT IN (SELECT id FROM {_STAGING}) "
            f"AND id NOT IN (SELECT id FROM {_PRESENT})",
            {"source": source, "today": today, "now": utcnow()}).rowcount


class _FirstImport(ImportBatch):
    """A batch written straight into an empty `people` table: a first import.

    With nobody stored, every row is a creation, no INE is held by anyone outside the file
    (the file's own repeats are rejected before staging), and nobody of the source is left
    to mark as leaving: the staging table and the copy from it (a third of a first import's
    time) would find nothing to check. The rows are in `people` from the start; the
    transaction is rolled back unless `write` is called, as for a staged batch.
    """

    def __init__(self, conn: sqlite3.Connection, columns: Sequence[str], category: str,
                 source: str, created: int) -> None:
        super().__init__(conn, columns)
        self._as = (category, source)
        self._created = created

    def ine_conflicts(self) -> list[IneConflict]:
        return []  # nobody else holds an INE

    def unknown(self) -> list[tuple[int, str]]:
        return []  # only taken with the names mapped: every row could be created

    def discard(self, ids: Iterable[str]) -> None:
        for pid in ids:
            self._created -= self._conn.execute("DELETE FROM people WHERE id = ?",
                                                (pid,)).rowcount

    def present(self, ids: Iterable[str]) -> None:
        """Nothing to record: nobody of the source was stored, so nobody is marked."""

    def counts(self, category: str, source: str) -> tuple[int, int, int]:
        self._check(category, source)
        return self._created, 0, 0

    def write(self, category: str, source: str) -> None:
        self._check(category, source)
        self.written = True  # the rows are in: the transaction commits

    def mark_leaving(self, source: str, today: str) -> int:
        return 0  # everyone of the source stored now is in the file

    def _check(self, category: str, source: str) -> None:
        if (category, source) != self._as:
            raise ValueError(f"first import staged as {self._as}, not {(category, source)}")


@contextmanager
def staged(conn: sqlite3.Connection, columns: Sequence[str],
           rows: Iterable[Sequence[Any]], *, category: str | None = None,
           source: str | None = None) -> Iterator[ImportBatch]:
    """Stage registry rows `(line, *values)` in a write transaction.

    `columns` name the values: IMPORTABLE columns, `id` among them, in the rows' order. Ids
    must be unique (the caller rejects duplicates). Commits on exit only if the batch was
    written. `BEGIN IMMEDIATE` takes the write lock first, so what the checks see is still
    true when `write` runs, even with the daemon writing to the same store. Given the
    batch's `category` and `source`, a first import (nobody stored yet, names mapped) goes
    straight into `people` (`_FirstImport`).
    """
    if ("id" not in columns or len(set(columns)) != len(columns)
            or any(c not in IMPORTABLE for c in columns)):
        raise ValueError(f"bad import columns: {columns!r}")
    with bulk_write(conn, "people", temp_tables=(_STAGING, _PRESENT)) as tx:
        batch: ImportBatch
        if (category is not None and source is not None
                and {"last_name", "first_name"} <= set(columns)
                and conn.execute("SELECT 1 FROM people LIMIT 1").fetchone() is None):
            # ?1 is the line number, which `people` does not keep.
            values = ", ".join(f"?{i}" for i in range(2, len(columns) + 2))
            created = conn.executemany(
                f"INSERT INTO people ({', '.join(columns)}, category, source, created_at, "
                f"updated_at) VALUES ({values}, ?{len(columns) + 2}, ?{len(columns) + 3}, "
                f"?{len(columns) + 4}, ?{len(columns) + 4})",
                map(_with, rows, repeat((category, source, utcnow())))).rowcount
            batch = _FirstImport(conn, columns, category, source, created)
        else:
            batch = _staging(conn, columns, rows)
        yield batch
        if batch.written:
            tx.commit()


def _with(row: Sequence[Any], more: tuple[Any, ...]) -> tuple[Any, ...]:
    return (*row, *more)


def _staging(conn: sqlite3.Connection, columns: Sequence[str],
             rows: Iterable[Sequence[Any]]) -> ImportBatch:
    """The rows in a temporary table, for an `ImportBatch` to check and write."""
    # Rows arrive in line order: appending by rowid, then indexing the ids in one sorted
    # pass, costs a third less than keeping an id index up to date row by row.
    conn.execute("CREATE TEMP TABLE people_import (line INTEGER PRIMARY KEY"
                 f"{''.join(f', {c} {IMPORTABLE[c]}' for c in columns)})")
    conn.execute("CREATE TEMP TABLE people_import_present (id TEXT PRIMARY KEY)")
    conn.executemany(f"INSERT INTO {_STAGING} (line, {', '.join(columns)}) "
                     f"VALUES ({', '.join('?' * (len(columns) + 1))})", rows)
    conn.execute("CREATE UNIQUE INDEX temp.people_import_id ON people_import (id)")
    return ImportBatch(conn, columns)
