"""Config errors: each one points at a file, a line, a column and a field path.

Sysadmins fix the tree from these lines in their editor, so every error carries the YAML
node mark it is about (never a guess) and all errors of a tree are reported at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One problem in one file: `FILE:LINE:COL: path.to.field: message` (1-based)."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The tree (or a host file) is invalid; `issues` holds every problem, sorted."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = sorted(set(issues))
        super().__init__("\n".join(str(i) for i in self.issues))

    @classmethod
    def single(cls, file: Path | str, message: str, line: int = 1, column: int = 1,
               path: str = "") -> ConfigError:
        return cls([ConfigIssue(str(file), line, column, path, message)])


class SecretError(Exception):
    """A referenced secret cannot be used: missing, unreadable or too open.

    Raised at load time (when the daemon or a card read needs the secret), never by
    `config validate`, which must run without credentials.
    """
