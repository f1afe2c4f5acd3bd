"""Where an export's files go: a folder the door system reads, or an SFTP server.

Both are atomic for the reader: each file is written under a hidden temporary name in the
same folder and renamed over the old one only once complete (and fsync'ed, for a folder),
so the door system sees the previous file or the new one, never half of one; a failure
leaves the previous export in place, and the unfinished copy an export killed before the
rename left is removed by the next export of that file. Files get the configured mode
(0640 by default; never readable by others).

Delivering the same files again (an export killed after the rename and before the store
recorded it runs again) changes nothing: a file identical to the one in place is left as
it is, and the kept versions (NAME.1 …) are shifted once per new file, never twice.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .. import leftovers
from ..config.model import AccessDestination, DirectoryDestination, SftpDestination
from .formats import RenderedFile


class DestinationError(Exception):
    """A destination cannot take the files (folder missing, server down, host key…)."""


class Destination(Protocol):
    description: str  # where the files go, for logs and the store (never a secret)

    def deliver(self, files: Sequence[RenderedFile], *, numbered: str | None = None) -> None:
        """Write `files`; `numbered`: the P2S base name whose old numbered files to prune."""

    def present(self, names: Sequence[str]) -> bool:
        """Whether the files of the last delivery are (as far as cheaply known) still there."""

    def check(self) -> str:
        """Reachable and usable, without writing a file: a one-line summary, or raises."""


PART = ".part"  # a file being written: `.<name>.<pid>.part` (badged/leftovers.py)


def _temp_name(name: str) -> str:
    return leftovers.temporary(Path(name), PART).name


class Directory:
    """A local folder (or a mount): temp file, fsync, rename; keep the last N versions."""

    def __init__(self, spec: DirectoryDestination, state_dir: Path) -> None:
        path = Path(spec.path)
        self.relative = not path.is_absolute()
        self.path = state_dir / path if self.relative else path
        self.keep = spec.keep
        self.mode = int(spec.mode, 8)
        self.description = f"directory {self.path}"

    def _folder(self) -> Path:
        if self.relative:  # under the state folder: ours to create
            self.path.mkdir(mode=0o750, parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise DestinationError(f"{self.description}: no such folder (is the door "
                                   "system's share mounted?)")
        return self.path

    def present(self, names: Sequence[str]) -> bool:
        return all((self.path / name).is_file() for name in names)

    def check(self) -> str:
        folder, note = self.path, ""
        if self.relative and not folder.exists():  # made at the first export; not here
            folder, note = next(p for p in folder.parents if p.exists()), " (to be created)"
        elif not folder.is_dir():
            raise DestinationError(f"{self.description}: no such folder (is the door "
                                   "system's share mounted?)")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise DestinationError(f"{self.description}: {folder} is not writable by this "
                                   "user")
        return f"{self.description}: writable{note}"

    def deliver(self, files: Sequence[RenderedFile], *, numbered: str | None = None) -> None:
        try:
            folder = self._folder()
            written: list[tuple[Path, Path]] = []
            try:
                for file in files:
                    temp = folder / _temp_name(file.name)
                    leftovers.remove_stale(folder / file.name, PART)  # a killed export's
                    if _holds(folder / file.name, file.content):
                        continue  # already delivered: not rotated, not rewritten
                    temp.unlink(missing_ok=True)  # ours: a pid reused since
                    leftovers.write_new(temp, file.content, self.mode)
                    written.append((temp, folder / file.name))
                for temp, final in written:
                    if numbered is None:
                        self._rotate(final)
                    temp.replace(final)
            finally:
                for temp, _ in written:
                    with contextlib.suppress(FileNotFoundError):
                        temp.unlink()
            _fsync_dir(folder)
            if numbered is not None:
                self._prune_numbered(folder, numbered)
        except OSError as exc:
            raise DestinationError(f"{self.description}: {exc.strerror or exc}"
                                   f"{f' ({exc.filename})' if exc.filename else ''}") from None

    def _rotate(self, final: Path) -> None:
        """Keep the last `keep` versions: NAME, NAME.1 … NAME.<keep-1> (newest first)."""
        backup = final.with_name(f"{final.name}.1")
        if self.keep < 2 or not final.exists() or _same_file(final, backup):
            return  # nothing to keep, or kept already (a run killed before the rename)
        for n in range(self.keep - 1, 1, -1):
            older = final.with_name(f"{final.name}.{n - 1}")
            if older.exists():
                older.replace(final.with_name(f"{final.name}.{n}"))
        with contextlib.suppress(FileNotFoundError):
            backup.unlink()
        os.link(final, backup)  # NAME stays in place until the new one replaces it

    def _prune_numbered(self, folder: Path, base: str) -> None:
        """P2S: keep the numbered files of the last `keep` deliveries of this export."""
        pattern = re.compile(rf"(\d+)_\d+_{re.escape(base)}")
        stamps: dict[int, list[Path]] = {}
        for entry in folder.iterdir():
            m = pattern.fullmatch(entry.name)
            if m:
                stamps.setdefault(int(m[1]), []).append(entry)
        for stamp in sorted(stamps)[:-self.keep]:
            for entry in stamps[stamp]:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()


def _holds(path: Path, content: bytes) -> bool:
    """`path` is a file with exactly `content`."""
    try:
        if path.stat().st_size != len(content):
            return False
        return path.read_bytes() == content
    except (FileNotFoundError, IsADirectoryError):
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except FileNotFoundError:
        return False


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make(spec: AccessDestination, *, state_dir: Path, tree: Path) -> Destination:
    """The destination of an export; SFTP's library is imported only when it is used."""
    if spec.directory is not None:
        return Directory(spec.directory, state_dir)
    assert spec.sftp is not None
    from .sftp import Sftp
    return Sftp(spec.sftp, tree)


def describe(spec: AccessDestination, state_dir: Path) -> str:
    """The destination's description without building it (no SFTP import)."""
    if spec.directory is not None:
        return Directory(spec.directory, state_dir).description
    assert spec.sftp is not None
    return sftp_description(spec.sftp)


def sftp_description(spec: SftpDestination) -> str:
    return f"sftp {spec.user}@{spec.host}:{spec.port} {spec.path}"
