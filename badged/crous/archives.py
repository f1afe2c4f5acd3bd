"""The outbox's archive folder on disk: where a sent mail is archived, how it is written
(whole or not at all, private), how it is deleted past retention, and what a killed writer
leaves behind. Kept light: the daemon cleans up at start without the mail code."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store.outbox import Batch

log = logging.getLogger(__name__)


def archive_folder(state_dir: Path) -> Path:
    """Where sent mails are archived: `<state_dir>/archive/YYYY/MM/<id>-<kind>.eml`."""
    return Path(state_dir) / "archive"


def archive_path_for(archive_dir: Path, batch: Batch, sent_at: datetime) -> Path:
    sent_at = sent_at.astimezone(UTC)
    return (Path(archive_dir) / f"{sent_at:%Y}" / f"{sent_at:%m}"
            / f"{batch.id}-{batch.kind}.eml")


def write_archive(archive_dir: Path, batch: Batch, data: bytes, sent_at: datetime) -> Path:
    """Write the bytes sent under `archive_path_for` (0600, folders 0700), through a
    temporary file renamed into place: a reader never sees half an archive."""
    path = archive_path_for(archive_dir, batch, sent_at)
    archive_dir = Path(archive_dir)
    archive_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = archive_dir
    for part in path.parent.relative_to(archive_dir).parts:
        folder = folder / part
        if not folder.exists():
            folder.mkdir(mode=0o700)
            folder.chmod(0o700)
    tmp = temporary_name(path)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def delete_archive(path: Path, archive_dir: Path) -> bool | None:
    """Delete one archive and its month and year folders once empty (the outbox's purge
    and the leavers' purge). True: deleted; False: already gone; None: not under
    `archive_dir` (a path the store should never hold): left in place."""
    root = Path(archive_dir).resolve()
    if not path.resolve().is_relative_to(root):
        return None
    deleted = False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        deleted = True
    for folder in (path.parent, path.parent.parent):
        if folder.resolve() != root:
            with contextlib.suppress(OSError):
                folder.rmdir()          # only if empty
    return deleted


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
