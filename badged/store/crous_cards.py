"""CROUS card links (CSN ↔ NUM_CARTE), as imported from the CROUS card CSV.

An import is set-based: the file's good rows go into a temporary table with one
`executemany`, then conflicts, unchanged rows, updates and inserts are each one SQL statement
joining that table to `crous_cards` through its two unique indexes. A round trip per row
would cost seconds on a 100 000-row batch; here SQLite does the per-row work in C.

The service decides (strict or partial); this module only answers questions about a staged
batch and writes it. Nothing is committed unless `Batch.write` was called.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .db import StoreError, utcnow

# The file's columns, in the file's order (reference/crous.md §1), as stored.
FIELDS = ("pix_ss", "pix_nn", "appl", "csn", "rid", "nfo", "cnous", "crous",
          "emetteur", "mapping", "num_carte", "date_creation")

# One staged row: the file's physical line number, then the FIELDS values, converted
# (CSN/RID upper-case hex, EMETTEUR/MAPPING/NUM_CARTE integers, ISO date). A plain tuple:
# it is built once per row on the hot path.
StagedRow = tuple[int, str, str, str, str, str, str, str, str, int, int, int, str]

_STAGING = "temp.crous_cards_import"
# Page cache during an import (KiB). The default 2 MiB thrashes on a 100 000-row batch: its
# random CSNs and card numbers touch every page of both indexes, over and over.
_IMPORT_CACHE_KIB = 64 * 1024
_DETAILS = tuple(f for f in FIELDS if f not in ("csn", "num_carte"))
_COLS = ", ".join(FIELDS)
_S_DETAILS = ", ".join(f"s.{f}" for f in _DETAILS)
_C_DETAILS = ", ".join(f"c.{f}" for f in _DETAILS)

_CREATE_STAGING = """
CREATE TEMP TABLE crous_cards_import (
    line INTEGER PRIMARY KEY, pix_ss TEXT NOT NULL, pix_nn TEXT NOT NULL, appl TEXT NOT NULL,
    csn TEXT NOT NULL, rid TEXT NOT NULL, nfo TEXT NOT NULL, cnous TEXT NOT NULL,
    crous TEXT NOT NULL, emetteur INTEGER NOT NULL, mapping INTEGER NOT NULL,
    num_carte INTEGER NOT NULL, date_creation TEXT NOT NULL
)"""
_STAGE = f"INSERT INTO {_STAGING} VALUES ({', '.join('?' * (len(FIELDS) + 1))})"

# Rows whose CSN or NUM_CARTE is already linked to something else.
_CONFLICTS = f"""
SELECT s.line, s.csn, s.num_carte, by_num.csn, by_csn.num_carte
FROM {_STAGING} AS s
LEFT JOIN crous_cards AS by_csn ON by_csn.csn = s.csn AND by_csn.num_carte <> s.num_carte
LEFT JOIN crous_cards AS by_num ON by_num.num_carte = s.num_carte AND by_num.csn <> s.csn
WHERE by_csn.csn IS NOT NULL OR by_num.csn IS NOT NULL
ORDER BY s.line"""

_UNCHANGED = f"""
SELECT count(*) FROM {_STAGING} AS s JOIN crous_cards AS c ON c.csn = s.csn
WHERE c.num_carte = s.num_carte AND ({_C_DETAILS}) IS ({_S_DETAILS})"""

# Same link, other details (a corrected date…): refresh them. The link itself never
# changes here: conflicting rows were discarded before.
_UPDATE = f"""
UPDATE crous_cards AS c SET ({', '.join(_DETAILS)}) = ({_S_DETAILS}),
    imported_at = :now, source_file = :source
FROM {_STAGING} AS s
WHERE c.csn = s.csn AND c.num_carte = s.num_carte AND ({_C_DETAILS}) IS NOT ({_S_DETAILS})"""

# New links. An existing CSN is, by now, an identical or just-updated link: skip it. A
# NUM_CARTE clash cannot happen any more; if it did, the IntegrityError rolls back.
_INSERT = f"""
INSERT INTO crous_cards ({_COLS}, imported_at, source_file)
SELECT {_COLS}, :now, :source FROM {_STAGING} WHERE true
ON CONFLICT (csn) DO NOTHING"""


@dataclass(frozen=True)
class CrousCard:
    """One stored link, as the CROUS CSV gave it."""

    csn: str
    rid: str
    num_carte: int
    pix_ss: str
    pix_nn: str
    appl: str
    nfo: str
    cnous: str
    crous: str
    emetteur: int
    mapping: int
    date_creation: str
    imported_at: str
    source_file: str


@dataclass(frozen=True)
class Conflict:
    """A staged row that contradicts a stored link (one or both directions)."""

    line: int
    csn: str
    num_carte: int
    known_csn: str | None  # the CSN already linked to this NUM_CARTE, if another
    known_num_carte: int | None  # the NUM_CARTE already linked to this CSN, if another


def get(conn: sqlite3.Connection, csn: str) -> CrousCard | None:
    row = conn.execute("SELECT * FROM crous_cards WHERE csn = ?", (csn.upper(),)).fetchone()
    return CrousCard(**dict(row)) if row else None


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM crous_cards").fetchone()[0])


class Batch:
    """A staged import, inside an open write transaction (see `staged`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.written = False

    def conflicts(self) -> list[Conflict]:
        """Staged rows contradicting a stored link, by line."""
        return [Conflict(*row) for row in self._conn.execute(_CONFLICTS)]

    def discard(self, lines: Iterable[int]) -> None:
        """Drop rows from the batch (they are rejected: never written)."""
        self._conn.executemany(f"DELETE FROM {_STAGING} WHERE line = ?",
                               ((line,) for line in lines))

    def unchanged(self) -> int:
        """How many staged rows are already stored exactly as they are."""
        return int(self._conn.execute(_UNCHANGED).fetchone()[0])

    def write(self, source_file: str) -> tuple[int, int]:
        """Store the staged rows; returns (inserted, updated). Commits when `staged` exits."""
        params = {"now": utcnow(), "source": source_file}
        updated = self._conn.execute(_UPDATE, params).rowcount
        inserted = self._conn.execute(_INSERT, params).rowcount
        self.written = True
        return inserted, updated


@contextmanager
def staged(conn: sqlite3.Connection, rows: Iterable[StagedRow]) -> Iterator[Batch]:
    """Stage `rows` in a write transaction; commit on exit only if the batch was written.

    `BEGIN IMMEDIATE` takes the write lock first, so what `conflicts()` sees is still true
    when `write()` runs, even with the daemon writing to the same store.
    """
    cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
    try:
        conn.execute(f"PRAGMA cache_size = {-_IMPORT_CACHE_KIB}")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_CREATE_STAGING)
        conn.executemany(_STAGE, rows)
        batch = Batch(conn)
        yield batch
        conn.execute(f"DROP TABLE {_STAGING}")
        conn.execute("COMMIT" if batch.written else "ROLLBACK")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise StoreError(f"cannot import CROUS cards: {exc}") from exc
    except BaseException:
        _rollback(conn)
        raise
    finally:
        conn.execute(f"PRAGMA cache_size = {int(cache_size)}")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")
