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


def remove_stale(path: Path, suffix: str = ".tmp") -> int:
    """Remove the temporary copies of `path` (`temporary`) whose writer is gone; how many.
    Files of other names are never touched."""
    removed = 0
    prefix = f".{path.name}."
    for copy in path.parent.glob(glob.escape(prefix) + "*" + glob.escape(suffix)):
        pid = copy.name[len(prefix):len(copy.name) - len(suffix)]
        if not pid.isdigit() or alive(int(pid)) or not copy.is_file() or copy.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()
            removed += 1
    return removed
