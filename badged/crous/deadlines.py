"""The academic year and the CROUS deadlines within it, in the CROUS's time zone.

A deadline such as réinscriptions "10-30" means the end of 30 October of the academic year
that started on the school's `academic_year_start` (default 1 September).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


def _month_day(text: str) -> tuple[int, int]:
    month, day = text.split("-")
    return int(month), int(day)


def _on(year: int, month_day: str) -> date:
    month, day = _month_day(month_day)
    if (month, day) == (2, 29):  # a leap-day setting falls back to 28 in other years
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)
    return date(year, month, day)


def academic_year_start(now: datetime, start: str = "09-01") -> datetime:
    """Midnight (Paris) of the start of the academic year `now` falls in."""
    local = now.astimezone(PARIS)
    begin = _on(local.year, start)
    if local.date() < begin:
        begin = _on(local.year - 1, start)
    return datetime.combine(begin, time(), PARIS)


def deadline_day(now: datetime, month_day: str, start: str = "09-01") -> date:
    """The deadline day, as configured, within the current academic year."""
    year_start = academic_year_start(now, start)
    day = _on(year_start.year, month_day)
    if day < year_start.date():
        day = _on(year_start.year + 1, month_day)
    return day


def end_of(day: date) -> datetime:
    """The instant a deadline day is over: 24:00 Paris, i.e. 00:00 of the next day."""
    return datetime.combine(day + timedelta(days=1), time(), PARIS)


def deadline(now: datetime, month_day: str, start: str = "09-01") -> datetime:
    """End (24:00 Paris) of the deadline day within the current academic year: the instant
    it passes. Show `deadline_day` to people: this instant reads as the next day."""
    return end_of(deadline_day(now, month_day, start))


def show_day(day: date) -> str:
    """A deadline day as people write it (French order): 30/10/2026."""
    return f"{day:%d/%m/%Y}"
