"""Leases: at most one process does an exclusive activity (e.g. delivering the outbox).

A lease row names its holder (host, pid, a random token) and an expiry (Unix time). The
holder renews it while it works and deletes it when done; a holder that crashed loses it
when it expires, or at once when it ran on this host and its pid is gone. Each change is
one conditional statement, so two processes racing for a lease cannot both win.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

Clock = Callable[[], float]

OUTBOX = "outbox"  # whoever delivers the outbox, and writes or purges its archives


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, and until when (Unix time)."""

    owner: str
    host: str
    pid: int
    what: str
    expires_at: float

    def describe(self) -> str:
        until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.expires_at))
        return f"{self.what} (pid {self.pid} on {self.host}, lease until {until})"


def new_owner(what: str) -> Holder:
    """An identity for this process and activity (`what`: e.g. "badged run")."""
    host = socket.gethostname()
    return Holder(f"{host}:{os.getpid()}:{secrets.token_hex(6)}", host, os.getpid(), what, 0.0)


def holder(conn: sqlite3.Connection, name: str) -> Holder | None:
    row = conn.execute("SELECT owner, host, pid, what, expires_at FROM leases WHERE name = ?",
                       (name,)).fetchone()
    return None if row is None else Holder(*tuple(row))


def _dead_here(h: Holder) -> bool:
    """The holder ran on this host and its process is gone (it crashed or was killed)."""
    if h.host != socket.gethostname():
        return False
    try:
        os.kill(h.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def acquire(conn: sqlite3.Connection, name: str, me: Holder, seconds: float,
            clock: Clock = time.time) -> Holder | None:
    """Take or renew `name` for `seconds`: None when taken, else the current holder."""
    now = clock()
    current = holder(conn, name)
    if current is not None and current.owner != me.owner and _dead_here(current):
        conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, current.owner))
    cur = conn.execute(
        "INSERT INTO leases (name, owner, host, pid, what, acquired_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, host = excluded.host, "
        "pid = excluded.pid, what = excluded.what, acquired_at = excluded.acquired_at, "
        "expires_at = excluded.expires_at "
        "WHERE leases.owner = excluded.owner OR leases.expires_at <= ?",
        (name, me.owner, me.host, me.pid, me.what, now, now + seconds, now))
    if cur.rowcount == 1:
        return None
    return holder(conn, name)


def release(conn: sqlite3.Connection, name: str, me: Holder) -> None:
    conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, me.owner))


@contextmanager
def holding(conn: sqlite3.Connection, name: str, what: str, seconds: float,
            clock: Clock = time.time) -> Iterator[Callable[[], bool] | None]:
    """Hold `name` for the block: yields `renew()` (False once the lease was lost), or None
    when another process holds it (`holder` says who). Released on the way out."""
    me = new_owner(what)
    if acquire(conn, name, me, seconds, clock) is not None:
        yield None
        return
    try:
        yield lambda: acquire(conn, name, me, seconds, clock) is None
    finally:
        release(conn, name, me)
