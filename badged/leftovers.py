"""Temporary files named after their writer, and removed once that writer is gone.

A file is written whole or not at all by writing a temporary copy next to it and renaming
it into place. A writer killed before the rename leaves its copy behind; with a random name
nobody would ever know it is safe to remove. Here the copy is `.<name>.<pid><suffix>`: the
next writer of the same file removes the copies whose process no longer runs on this host
(a live one is another writer at work: left alone).
"""

from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path


def temporary(path: Path, suffix: str = ".tmp") -> Path:
    """Where this process writes `path` before renaming it into place."""
    return path.with_name(f".{path.name}.{os.getpid()}{suffix}")


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (it must not exist) with `mode` whatever the umask, write all of
    `data` and fsync it: a copy ready to be renamed or linked into place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits the caller wants
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(name: str, candidate: str, suffix: str = ".tmp") -> bool:
    """Whether `candidate` (a file name) is a temporary copy of `name` whose writer is
    gone: also for a folder this host writes to over the network (SFTP)."""
    prefix = f".{name}."
    if not (candidate.startswith(prefix) and candidate.endswith(suffix)):
        return False
    pid = candidate[len(prefix):len(candidate) - len(suffix)]
    return pid.isdigit() and not alive(int(pid))


def remove_stale(path: Path, suffix: str = ".tmp") -> int:
    """Remove the temporary copies of `path` (`temporary`) whose writer is gone; how many.
    Files of other names are never touched."""
    removed = 0
    pattern = glob.escape(f".{path.name}.") + "*" + glob.escape(suffix)
    for copy in path.parent.glob(pattern):
        if not is_stale(path.name, copy.name, suffix) or not copy.is_file() \
                or copy.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()
            removed += 1
    return removed
