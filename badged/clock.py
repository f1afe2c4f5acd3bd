"""badged's one wall clock: every "now" of the daemon, the services and the store.

Production reads the system clock. Tests that live a school's year in minutes point
`BADGED_TEST_CLOCK_FILE` at a file holding a Unix time (seconds); each call reads it, so a
test moves time for a running daemon by rewriting the file, without sleeping. Durations,
timeouts and the scheduler's firing stay on the real clocks (monotonic, `schedule`).
"""

from __future__ import annotations

import os
import time as _time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

CLOCK_FILE_ENV = "BADGED_TEST_CLOCK_FILE"
_PARIS = ZoneInfo("Europe/Paris")


def time() -> float:
    """Unix time now (the test clock's if one is set)."""
    path = os.environ.get(CLOCK_FILE_ENV)
    if not path:
        return _time.time()
    return float(Path(path).read_text(encoding="ascii"))


def now() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.fromtimestamp(time(), UTC)


def today() -> date:
    """Today's date in France (where every school of badged is)."""
    return now().astimezone(_PARIS).date()
