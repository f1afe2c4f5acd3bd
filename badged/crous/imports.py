"""What every import of a foreign file reports: rejected rows by line, and the outcome.

Partial by default (good rows in, each bad one reported as `FILE:LINE: reason`, exit 3);
strict (nothing in if any row is bad, exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Rejection:
    """A row not imported: its physical line (header = 1) and why."""

    line: int
    reason: str


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

    def diagnostics(self) -> list[str]:
        return [f"{self.file}:{r.line}: {r.reason}" for r in self.rejections]
