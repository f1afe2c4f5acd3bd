"""Academic year and deadlines: the réinscriptions deadline of CROUS Lyon is 30 October."""

from __future__ import annotations

from datetime import datetime

from badged.crous.deadlines import PARIS, academic_year_start, deadline


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def test_academic_year_starts_on_the_configured_day() -> None:
    assert academic_year_start(paris(2026, 11, 30)) == paris(2026, 9, 1)
    assert academic_year_start(paris(2027, 3, 1)) == paris(2026, 9, 1)
    assert academic_year_start(paris(2026, 8, 31, 23, 59)) == paris(2025, 9, 1)
    assert academic_year_start(paris(2026, 9, 1)) == paris(2026, 9, 1)
    assert academic_year_start(paris(2026, 8, 20), "08-15") == paris(2026, 8, 15)


def test_deadline_is_the_end_of_the_day_in_this_academic_year() -> None:
    assert deadline(paris(2026, 9, 15), "10-30") == paris(2026, 10, 31)
    assert deadline(paris(2026, 11, 30), "10-30") == paris(2026, 10, 31)  # passed
    # A deadline before the start month belongs to the next calendar year.
    assert deadline(paris(2026, 11, 30), "01-15") == paris(2027, 1, 16)


def test_leap_day_deadline_in_a_common_year() -> None:
    assert deadline(paris(2026, 10, 1), "02-29") == paris(2027, 3, 1)
    assert deadline(paris(2027, 10, 1), "02-29") == paris(2028, 3, 1)
