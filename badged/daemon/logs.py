"""Logging for journald: one line per event on stderr, no timestamps (journald adds them).

Personal data (names, e-mail addresses) never goes above DEBUG: INFO lines name cards by
CSN and people by their institutional id only.
"""

from __future__ import annotations

import logging
import sys


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
