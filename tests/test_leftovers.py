"""Temporary copies named after their writer: only those of a writer that is gone, and of
the very file asked about, are removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from badged import leftovers


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_remove_stale_copies_of_dead_writers_only(tmp_path: Path) -> None:
    target = tmp_path / "doors.csv"
    gone = dead_pid()
    stale = tmp_path / f".doors.csv.{gone}.part"
    mine = leftovers.temporary(target, ".part")
    others = [tmp_path / ".doors.csv.abc.part",           # not a pid
              tmp_path / f".doors.csv.{gone}.tmp",        # another suffix
              tmp_path / f".other.csv.{gone}.part",       # another file
              tmp_path / "doors.csv"]
    for path in (stale, mine, *others):
        path.write_text("x")
    assert mine.name == f".doors.csv.{os.getpid()}.part"
    assert leftovers.remove_stale(target, ".part") == 1
    assert not stale.exists()
    assert mine.exists() and all(p.exists() for p in others)
    assert leftovers.is_stale("doors.csv", stale.name, ".part")
    assert not leftovers.is_stale("doors.csv", mine.name, ".part")
