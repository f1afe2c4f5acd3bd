"""The outbox's archive folder on disk: how an archive is written, and what a killed
writer leaves behind (kept light: the daemon cleans up at start without the mail code)."""

from __future__ import annotations

import contextlib
import logging
import secrets
from pathlib import Path

log = logging.getLogger(__name__)


def archive_folder(state_dir: Path) -> Path:
    """Where sent mails are archived: `<state_dir>/archive/YYYY/MM/<id>-<kind>.eml`."""
    return Path(state_dir) / "archive"


def temporary_name(path: Path) -> Path:
    """Where an archive is written before it is renamed into place."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def is_temporary(path: Path) -> bool:
    """An archive being written (`.<id>-<kind>.eml.<8 hex>.tmp`), or left by a kill."""
    name = path.name
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    stem, _, token = name[1:-4].rpartition(".")
    return stem.endswith(".eml") and len(token) == 8 and all(
        c in "0123456789abcdef" for c in token)


def clean_leftovers(archive_dir: Path) -> int:
    """Delete archive copies a killed writer left behind; how many. Call it only while
    holding the outbox lease: the lease holder is the only archive writer."""
    root = Path(archive_dir)
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.rglob(".*.tmp"):
        if path.is_file() and not path.is_symlink() and is_temporary(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    if removed:
        log.warning("outbox: removed %d unfinished archive copy(ies) left by an "
                    "interrupted run", removed)
    return removed
