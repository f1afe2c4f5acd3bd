"""The schedule mini-language of exchanges and jobs, parsed without the runtime.

Sysadmins write schedules in plain words (`every day at 06:30`, `every monday at 07:00`,
`every 15 minutes`); the daemon turns a parsed `Schedule` into a `schedule` library job.
Parsing lives here so `config validate` rejects a bad schedule before any daemon runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}

_EVERY_N = re.compile(r"every (?:(?P<n>[1-9]\d*) )?(?P<unit>minute|hour|day|week)s?")
_AT_TIME = re.compile(r"every (?P<when>day|" + "|".join(WEEKDAYS) + r") at (?P<at>\d\d:\d\d)")
_HOURLY_AT = re.compile(r"every hour at :(?P<minute>\d\d)")


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: `unit` (minute, hour, day, week or a weekday), `every`, `at`."""

    text: str
    unit: str
    every: int = 1
    at: str | None = None  # "HH:MM" for days and weekdays, ":MM" for hours

    @property
    def interval_seconds(self) -> int:
        """Nominal time between two runs (for metrics and alerting on missed runs)."""
        if self.unit in WEEKDAYS:
            return _UNIT_SECONDS["week"]
        return self.every * _UNIT_SECONDS[self.unit]


def parse_schedule(text: str) -> Schedule:
    """Parse a schedule; raise ValueError with the accepted forms on anything else."""
    words = " ".join(str(text).lower().split())
    if m := _EVERY_N.fullmatch(words):
        return Schedule(text, m["unit"], int(m["n"] or 1))
    if m := _AT_TIME.fullmatch(words):
        hh, mm = (int(x) for x in m["at"].split(":"))
        if hh > 23 or mm > 59:
            raise ValueError(f"bad schedule {text!r}: {m['at']} is not a time of day")
        return Schedule(text, m["when"], 1, m["at"])
    if m := _HOURLY_AT.fullmatch(words):
        if int(m["minute"]) > 59:
            raise ValueError(f"bad schedule {text!r}: minute {m['minute']} is out of range")
        return Schedule(text, "hour", 1, f":{m['minute']}")
    raise ValueError(
        f"bad schedule {text!r}: expected 'every N minutes|hours|days|weeks', "
        "'every day at HH:MM', 'every <weekday> at HH:MM' or 'every hour at :MM'"
    )
