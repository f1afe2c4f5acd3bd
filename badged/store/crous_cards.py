"""CROUS card links (CSN ↔ NUM_CARTE), as imported from the CROUS card CSV.

An import runs in one write transaction (`importing`): the stored links are read once into
memory (`Links`), each row of the file is classified against them in Python (new,
unchanged, updated details, or a conflict), and the new rows go straight into the table
with one `executemany`. No staging table: on a fresh store the import costs the parse plus
what a bare `.import` costs.

Stored as (migration 0009): `crous_card_links`, keyed by the CSN (WITHOUT ROWID), each
row pointing at its import in `crous_card_imports` (when, which file: once per import,
not once per row); the view `crous_cards` joins them back into the columns of a
`CrousCard`.

The service decides (strict or partial); nothing is committed unless `Import.commit` is
called.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .db import bulk_write, utcnow

# The file's columns, in the file's order (docs/crous.md), as stored.
FIELDS = ("pix_ss", "pix_nn", "appl", "csn", "rid", "nfo", "cnous", "crous",
          "emetteur", "mapping", "num_carte", "date_creation")

# One parsed row: the file's physical line number, then the FIELDS values, converted
# (CSN/RID upper-case hex, EMETTEUR/MAPPING/NUM_CARTE integers, ISO date). A plain tuple:
# it is built once per row on the hot path.
StagedRow = tuple[int, str, str, str, str, str, str, str, str, int, int, int, str]

_DETAILS = tuple(f for f in FIELDS if f not in ("csn", "num_carte"))
# Takes a StagedRow as it is: its line number is bound to ?1, which the statement does not
# use, so no new tuple is built per row. The import id is the same for every row of an
# import: written into the statement (an integer), it is not bound again for each of them.
_INSERT = (f"INSERT INTO crous_card_links ({', '.join(FIELDS)}, import_id) "
           f"VALUES ({', '.join(f'?{i}' for i in range(2, len(FIELDS) + 2))}, "
           "{import_id:d})")
# The NUM_CARTE index, as migration 0009 creates it (see `Import.insert`).
_NUM_INDEX = "crous_card_links_num_carte"
_CREATE_NUM_INDEX = f"CREATE UNIQUE INDEX {_NUM_INDEX} ON crous_card_links (num_carte)"
_UPDATE = (f"UPDATE crous_card_links SET {', '.join(f'{f} = ?' for f in _DETAILS)}, "
           "import_id = {import_id:d} WHERE csn = ?")
CSN_AT, NUM_AT = 4, 11  # positions of csn and num_carte in a StagedRow
_CSN, _NUM = CSN_AT, NUM_AT
_DETAIL_POSITIONS = tuple(1 + FIELDS.index(f) for f in _DETAILS)


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
    return int(conn.execute("SELECT count(*) FROM crous_card_links").fetchone()[0])


class Links:
    """The stored links, for classifying the rows of a file against them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.by_csn: dict[str, tuple[int, tuple[object, ...]]] = {}
        self.by_num: dict[int, str] = {}
        rows = conn.execute(f"SELECT csn, num_carte, {', '.join(_DETAILS)} "
                            "FROM crous_card_links")
        for csn, num, *details in rows:
            self.by_csn[csn] = (num, tuple(details))
            self.by_num[num] = csn

    @property
    def empty(self) -> bool:
        return not self.by_csn

    def conflict(self, row: StagedRow) -> Conflict | None:
        """A row contradicting a stored link (its CSN or its NUM_CARTE is taken)."""
        csn, num = row[_CSN], row[_NUM]
        known = self.by_csn.get(csn)
        known_num = known[0] if known is not None and known[0] != num else None
        other_csn = self.by_num.get(num)
        known_csn = other_csn if other_csn is not None and other_csn != csn else None
        if known_num is None and known_csn is None:
            return None
        return Conflict(row[0], csn, num, known_csn, known_num)

    def stored_details(self, row: StagedRow) -> tuple[object, ...] | None:
        """The stored details of this very link, None if the link is new."""
        known = self.by_csn.get(row[_CSN])
        return known[1] if known is not None else None


def details(row: StagedRow) -> tuple[object, ...]:
    return tuple(row[i] for i in _DETAIL_POSITIONS)


class Import:
    """An import inside its write transaction (see `importing`)."""

    def __init__(self, conn: sqlite3.Connection, source_file: str) -> None:
        self._conn = conn
        self._stamp = (utcnow(), source_file)
        self._import_id: int | None = None
        self.links = Links(conn)
        self.committed = False

    def import_id(self) -> int:
        """This import's row in crous_card_imports, written with the first link it writes."""
        if self._import_id is None:
            self._conn.execute("INSERT OR IGNORE INTO crous_card_imports (imported_at, "
                               "source_file) VALUES (?, ?)", self._stamp)
            self._import_id = int(self._conn.execute(
                "SELECT id FROM crous_card_imports WHERE imported_at = ? AND source_file = ?",
                self._stamp).fetchone()[0])
        return self._import_id

    def insert(self, rows: Iterable[StagedRow]) -> int:
        """Write new links, in the file's order: sorting them by CSN first costs more than it
        saves (the rows' objects are then visited in scattered memory order)."""
        rows = list(rows)
        if not rows:
            return 0
        statement = _INSERT.format(import_id=self.import_id())
        # Into the empty table (a first import), the NUM_CARTE index is built once at the
        # end, sorted, rather than grown row by row at random places; inside the
        # transaction: a failure rolls the index back with the rows.
        rebuild = self.links.empty
        if rebuild:
            self._conn.execute(f"DROP INDEX {_NUM_INDEX}")
        before = self._conn.total_changes
        self._conn.executemany(statement, rows)
        inserted = self._conn.total_changes - before
        if rebuild:
            self._conn.execute(_CREATE_NUM_INDEX)
        return inserted

    def update(self, rows: Iterable[StagedRow]) -> int:
        """Refresh the details of known links (a corrected date…); the link never changes."""
        rows = list(rows)
        if not rows:
            return 0
        statement = _UPDATE.format(import_id=self.import_id())
        before = self._conn.total_changes
        self._conn.executemany(statement, ((*details(row), row[_CSN]) for row in rows))
        return self._conn.total_changes - before

    def commit(self) -> None:
        self.committed = True


@contextmanager
def importing(conn: sqlite3.Connection, source_file: str) -> Iterator[Import]:
    """A write transaction for one import: committed on exit only if `commit()` was called
    (the stored links are read after the write lock is taken: see `db.bulk_write`)."""
    with bulk_write(conn, "CROUS cards") as tx:
        batch = Import(conn, source_file)
        yield batch
        if batch.committed:
            tx.commit()
