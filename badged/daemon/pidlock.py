"""Whether a daemon runs for this host: a lock it holds for its whole life, not a timeout.

The daemon takes an exclusive `flock` on `<runtime_dir>/badged.pid` (and writes its pid
there) before it starts anything, and keeps it until it exits; the kernel drops the lock
when the process dies, however it dies. A command that could do the daemon's work itself
when no daemon runs (`exchange run`, `enrol --person`) may do so only when it can take
that lock itself for a moment: a daemon that is slow to answer still holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

PID_NAME = "badged.pid"


class AlreadyRunning(Exception):  # noqa: N818
    """Another daemon holds the lock of this host."""


class DaemonLock:
    """The daemon's side: `acquire()` at start (AlreadyRunning if held), `release()`."""

    def __init__(self, runtime_dir: str | Path) -> None:
        self.path = Path(runtime_dir) / PID_NAME
        self._fd: int | None = None

    def acquire(self, wait: float = 2.0) -> None:
        """Take the lock; a command probing it holds it for microseconds, so a busy lock is
        retried for `wait` seconds before another daemon is assumed."""
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _lock_within(fd, wait)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(f"another badged{f' (pid {pid})' if pid else ''} already "
                                 f"runs for this host (it holds {self.path})") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # drops the lock


def _lock_within(fd: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class Unknown(Exception):  # noqa: N818
    """Whether the daemon runs cannot be told (the lock file cannot be opened)."""


def running_pid(runtime_dir: str | Path) -> int | None:
    """None if provably no daemon runs for this host; else its pid (0 if unreadable).

    Raises Unknown when the lock file exists but cannot be opened (e.g. permission
    denied): not a proof that the daemon is down.
    """
    path = Path(runtime_dir) / PID_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Unknown(f"cannot tell whether badged runs: {path}: "
                      f"{exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return _read_pid(fd) or 0
            raise Unknown(f"cannot tell whether badged runs: {path}: "
                          f"{exc.strerror or exc}") from None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
