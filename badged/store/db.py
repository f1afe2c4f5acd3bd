"""Open the SQLite store: private file, WAL, foreign keys, numbered migrations at open."""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from .. import clock

DB_NAME = "badged.sqlite3"


class StoreError(Exception):
    """The database cannot be opened or migrated."""


def utcnow() -> str:
    """Store timestamps as ISO 8601 UTC with seconds: sortable, unambiguous."""
    return clock.now().isoformat(timespec="seconds")


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("badged.store.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql"):
            found.append((int(name.split("_", 1)[0]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest_migration() -> int:
    """The schema version this badged brings its store to."""
    migrations = _migrations()
    return migrations[-1][0] if migrations else 0


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations newer than `PRAGMA user_version`, each in its own transaction."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    migrations = _migrations()
    latest = migrations[-1][0] if migrations else 0
    if current > latest:
        raise StoreError(f"database schema {current} is newer than this badged ({latest}): "
                         "upgrade badged")
    for number, name, sql in migrations:
        if number <= current:
            continue
        try:
            conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
        except sqlite3.Error as exc:
            conn.rollback()
            raise StoreError(f"migration {name} failed: {exc}") from None
    return latest


def open_store(state_dir: Path) -> sqlite3.Connection:
    """Open (creating 0600) the store in `state_dir` and bring its schema up to date."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = state_dir / DB_NAME
        # Create the file ourselves: sqlite3 would honour the umask; WAL/SHM copy our mode.
        # Only when it is missing: closing any descriptor of a database file releases the
        # POSIX locks of every connection this process has open on it.
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=10)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open the store in {state_dir}: {exc}") from None
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA busy_timeout = 10000")
    migrate(conn)
    return conn


class SharedStore:
    """One connection shared by the daemon's threads: `with store.use() as conn:` serialises.

    SQLite allows one writer at a time anyway; a lock keeps each thread's statements (and
    transactions) from interleaving on the shared connection.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.RLock()

    @contextmanager
    def use(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self.conn

    def close(self) -> None:
        with self._lock:
            self.conn.close()


# Page cache during a bulk import (KiB). The default 2 MiB thrashes on a 100 000-row batch:
# random keys touch every page of the indexes, over and over.
BULK_CACHE_KIB = 64 * 1024


_gc_lock = threading.Lock()
_gc_pauses = 0  # bulk passes running now (threads of one process)
_gc_was_enabled = True


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection during a bulk pass over people (an import, the change
    sets, a rendering): such a pass makes a few hundred thousand tuples, none in a cycle
    (reference counting frees them all), and the collector, triggered every 700 of them,
    would walk the growing heap again and again (a fifth of the pass's time). Nested and
    concurrent passes are counted: the collector is back when the last one ends."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


class BulkWrite:
    """A bulk import's transaction: committed on exit only if `commit()` was called."""

    committed = False

    def commit(self) -> None:
        self.committed = True


@contextmanager
def bulk_write(conn: sqlite3.Connection, what: str,
               temp_tables: tuple[str, ...] = ()) -> Iterator[BulkWrite]:
    """One write transaction for a bulk import, with a large page cache meanwhile.

    `BEGIN IMMEDIATE` takes the write lock first, so what the import reads to classify its
    rows still holds when it writes them, even with the daemon writing to the same store.
    `temp_tables` are dropped whatever happens, so a failed import leaves none behind.
    """
    cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]

    def end(statement: str) -> None:
        if conn.in_transaction:
            conn.execute(statement)
        for table in temp_tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")

    try:
        conn.execute(f"PRAGMA cache_size = {-BULK_CACHE_KIB}")
        conn.execute("BEGIN IMMEDIATE")
        tx = BulkWrite()
        yield tx
        end("COMMIT" if tx.committed else "ROLLBACK")
    except sqlite3.Error as exc:
        end("ROLLBACK")
        raise StoreError(f"cannot import {what}: {exc}") from exc
    except BaseException:
        end("ROLLBACK")
        raise
    finally:
        conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
