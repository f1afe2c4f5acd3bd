"""What every import of a foreign file reports: rejected rows by line, and the outcome.

Partial by default (good rows in, each bad one reported as `FILE:LINE: reason`, exit 3);
strict (nothing in if any row is bad, exit 1).

The values of a rejected row are personal data (an e-mail, a birth date, an INE, a card
number): stderr, and so the journal when an import runs from a timer, names the line, the
column and the rule, never the value. The first `SHOWN` rows are listed, then a count by
reason. The operator who needs the values asks for `--report FILE`: every rejected row with
its values, in a file only its owner can read (0600), replaced whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import leftovers
from .textfile import TextFileError

SHOWN = 20  # rejected rows listed on stderr; the counts by reason cover them all


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a row.

    `rule` names the column and what is wrong, never a value: it is shown and counted by;
    `detail` is a value-free precision for this row ("already on line 2"); `value` is the
    offending value (personal data): only in the operator's report file.
    """

    rule: str
    value: str | None = None
    detail: str = ""

    def shown(self) -> str:
        return f"{self.rule}: {self.detail}" if self.detail else self.rule

    def full(self) -> str:
        return self.shown() if self.value is None else f"{self.shown()}: {self.value!r}"


@dataclass(frozen=True)
class Rejection:
    """A row not imported: its physical line (header = 1) and why."""

    line: int
    problems: tuple[Problem, ...]

    @property
    def reason(self) -> str:
        """Value-free: what stderr and the journal get."""
        return "; ".join(p.shown() for p in self.problems)

    @property
    def detail(self) -> str:
        """With the values: for the operator's report file only."""
        return "; ".join(p.full() for p in self.problems)


def rejection(line: int, *problems: Problem | str) -> Rejection:
    """A Rejection of `problems` (a string is a rule without a value)."""
    return Rejection(line, tuple(p if isinstance(p, Problem) else Problem(p) for p in problems))


class RowsOutcome:
    """Mixin for import reports having `file`, `rejections` and `strict`."""

    file: str
    rejections: tuple[Rejection, ...]
    strict: bool

    @property
    def rejected(self) -> int:
        return len(self.rejections)

    @property
    def outcome(self) -> Literal["ok", "partial", "refused"]:
        """ok: every row in; partial: good rows in, some rejected; refused: strict, none in."""
        if not self.rejections:
            return "ok"
        return "refused" if self.strict else "partial"

    def by_reason(self) -> list[tuple[str, int]]:
        """(rule, rows) for every rule broken, the most frequent first."""
        counts = Counter(p.rule for r in self.rejections for p in r.problems)
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def diagnostics(self, shown: int = SHOWN, report: str | None = None) -> list[str]:
        """Value-free lines for stderr: the first `shown` rejected rows, how many more, and
        the count of rows by reason. `report`: where the details went, if anywhere."""
        lines = [f"{self.file}:{r.line}: {r.reason}" for r in self.rejections[:shown]]
        if self.rejected > shown:
            more = self.rejected - shown
            where = f"all in {report}" if report else "--report FILE lists them all"
            lines.append(f"{self.file}: {more} more rejected row{'s' * (more != 1)} not "
                         f"shown ({where})")
        if self.rejections:
            lines += [f"{self.file}: {count} rejected: {rule}" for rule, count in self.by_reason()]
        return lines

    def details(self) -> list[str]:
        """Every rejected row with its values: the content of the operator's report file."""
        return [f"{self.file}:{r.line}: {r.detail}" for r in self.rejections]


class ReportFile:
    """The operator's report of an import (personal data: mode 0600, owner only).

    Created before the import, so that a path that cannot be written is refused before the
    store is touched (TextFileError); `write` replaces the file whole (a temporary file in
    the same folder, renamed), `discard` leaves no trace.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise TextFileError(str(self.path), "cannot write the report: it is a directory",
                                line=None)
        tmp = leftovers.temporary(self.path)
        try:  # O_EXCL, mode 0600 whatever the umask; a killed import's copy removed first
            leftovers.remove_stale(self.path)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()  # ours: a pid reused after a reboot
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)
        except OSError as exc:
            raise TextFileError(str(self.path), f"cannot write the report: "
                                f"{exc.strerror or exc}", line=None) from None
        self._file = os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace")
        self._tmp = tmp

    def write(self, lines: Iterable[str]) -> None:
        try:
            with self._file:
                for line in lines:
                    self._file.write(line + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())
            self._tmp.replace(self.path)
        except OSError as exc:
            self.discard()
            raise TextFileError(str(self.path), f"cannot write the report: "
                                f"{exc.strerror or exc}", line=None) from None

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()
