"""The field rules of a registry export: how each mapped column's raw text becomes a
stored value (conversion, dates, validation), and why a value is refused.

Two paths give the same stored values: `FieldRule.convert` takes one value (stripped,
normalised, checked, with the reason when it is bad) and `FieldRule.convert_column` a
chunk's whole column at once, checked by one regular expression in C; a value the fast
path does not vouch for goes to the slow one (see `registry_export.ExportRows`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from operator import methodcaller
from typing import Any

from ..config.model import PersonField
from .imports import Problem

# Person field → people column.
COLUMN = {
    PersonField.INSTITUTIONAL_ID: "id", PersonField.INE: "ine",
    PersonField.LAST_NAME: "last_name", PersonField.FIRST_NAME: "first_name",
    PersonField.BIRTH_DATE: "birth_date", PersonField.EMAIL: "email",
    PersonField.ACADEMIC_YEAR: "academic_year",
    PersonField.FIRST_ENROLMENT_YEAR: "first_enrolment_year",
    PersonField.STATUS_CODE: "status_code", PersonField.INDEX: "staff_index",
    PersonField.END_OF_RIGHTS: "end_of_rights",
}

# The e-mail check of the config model (one definition of a valid address).
EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_INE = re.compile(r"[0-9A-Z]{11}")  # INE-RNIE (10 digits + letter) or INE-BEA (9 + 2)


class FieldError(Exception):
    """A field that cannot be stored; `problem` says why (the value apart)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.rule)
        self.problem = problem


def human_format(date_format: str) -> str:
    """'%d/%m/%Y' → 'dd/mm/yyyy' where that is exact, else the format itself."""
    human = date_format
    for directive, text in (("%d", "dd"), ("%m", "mm"), ("%Y", "yyyy"), ("%y", "yy")):
        human = human.replace(directive, text)
    return date_format if "%" in human else human


# What a clean value of each field looks like, for the fast path: no spaces around it, no
# quotes, nothing to normalise (an INE in upper case). A value these refuse is not
# necessarily bad: the slow path strips and normalises it, or says what is wrong.
_TRIMMED = r'[^\s"](?:[^"\n]*[^\s"])?'
_CLEAN = {
    PersonField.INSTITUTIONAL_ID: r'[^\s"]+',
    PersonField.LAST_NAME: _TRIMMED, PersonField.FIRST_NAME: _TRIMMED,
    PersonField.INE: f"(?:{_INE.pattern})?", PersonField.EMAIL: f"(?:{EMAIL.pattern})?",
    PersonField.ACADEMIC_YEAR: "(?:[0-9]{4})?", PersonField.FIRST_ENROLMENT_YEAR: "(?:[0-9]{4})?",
    PersonField.INDEX: "(?:[0-9]{1,9})?", PersonField.STATUS_CODE: f"(?:{_TRIMMED})?",
}
_DATES = (PersonField.BIRTH_DATE, PersonField.END_OF_RIGHTS)
_DATE_PARTS = {"%d": ("day", "[0-9]{1,2}"), "%m": ("month", "[0-9]{1,2}"),
               "%Y": ("year", "[0-9]{4}")}


def _numeric_date(date_format: str) -> tuple[Callable[[str], re.Match[str] | None] | None,
                                              Callable[[re.Match[str]], tuple[str, ...]]]:
    """(fullmatch, (year, month, day) getter) for a format of %d, %m, %Y and literals."""
    parts = re.split(r"(%.)", date_format)
    directives = parts[1::2]
    if sorted(directives) != ["%Y", "%d", "%m"] or "%" in "".join(parts[::2]):
        return None, lambda match: ()
    pattern = "".join(f"(?P<{_DATE_PARTS[p][0]}>{_DATE_PARTS[p][1]})" if i % 2
                      else re.escape(p) for i, p in enumerate(parts))
    return re.compile(pattern).fullmatch, methodcaller("group", "year", "month", "day")
_INVALID = object()  # a date the cache knows is bad


class FieldRule:
    """One mapped column: where it is, and how its values become stored values.

    `convert` is the slow path (one value, stripped, checked, with the reason when bad);
    `convert_column` the fast path (a chunk's whole column: checked by one regular
    expression over the joined values, in C). Both give the same stored values.
    """

    def __init__(self, field: PersonField, header: str, index: int, date_format: str) -> None:
        self.field, self.header, self.index = field, header, index
        self.column = COLUMN[field]
        self._date_format, self._human = date_format, human_format(date_format)
        self._dates: dict[str, Any] = {}  # raw value → ISO date, None or _INVALID
        # Day, month and 4-digit year: parsed by a regex, 10 times faster than strptime and
        # with the same answers (a value it does not match goes to strptime).
        self._dmy, self._ymd = _numeric_date(date_format)
        if field not in _DATES:
            pattern = _CLEAN[field]
            self._clean = re.compile(pattern).fullmatch
            self._all_clean = re.compile(f"(?>{pattern})(?:\n(?>{pattern}))*+").fullmatch

    def convert(self, value: str) -> Any:
        """The stored value of a raw field; FieldError says why it cannot be stored."""
        field, header = self.field, self.header
        if field in _DATES:
            if (iso := self._date(value)) is _INVALID:
                raise FieldError(Problem(f"{header} is not a valid {self._human} date",
                                          value.strip()))
            return iso
        value = value.strip()
        if field is PersonField.INSTITUTIONAL_ID or field in (PersonField.LAST_NAME,
                                                              PersonField.FIRST_NAME):
            if not value:
                raise FieldError(Problem(f"{header} is empty"))
            return value
        if field is PersonField.STATUS_CODE:
            return value.lower() or None
        if field is PersonField.INE:
            value = value.upper()
        if not value:
            return None
        if not self._clean(value):
            kind = {PersonField.INE: "an INE (11 letters or digits)",
                    PersonField.EMAIL: "a valid e-mail address",
                    PersonField.INDEX: "a whole number"}.get(field, "a year (4 digits)")
            raise FieldError(Problem(f"{header} is not {kind}", value))
        return int(value) if field in (PersonField.ACADEMIC_YEAR,
                                       PersonField.FIRST_ENROLMENT_YEAR,
                                       PersonField.INDEX) else value

    def convert_column(self, values: Sequence[str]) -> tuple[Sequence[Any], list[int]]:
        """(stored values, positions the fast path leaves to the slow one)."""
        if self.field in _DATES:
            dates, distinct = self._dates, set(values)
            invalid = {value for value in distinct if self._date(value) is _INVALID}
            bad = [i for i, value in enumerate(values) if value in invalid] if invalid else []
            return list(map(dates.__getitem__, values)), bad
        bad = [] if self._all_clean("\n".join(values)) else \
            [i for i, value in enumerate(values) if not self._clean(value)]
        if self.field in (PersonField.INSTITUTIONAL_ID, PersonField.LAST_NAME,
                          PersonField.FIRST_NAME):
            return values, bad
        if self.field is PersonField.STATUS_CODE:
            return [value.lower() or None for value in values], bad
        # Years and indexes stay digits: the INTEGER affinity of the table they go to
        # (staging, or people for a first import) converts them.
        return [value or None for value in values], bad

    def _date(self, value: str) -> Any:
        """ISO date, None (empty) or _INVALID, cached: a registry has few distinct dates."""
        try:
            return self._dates[value]
        except KeyError:
            pass
        iso: Any = None
        if text := value.strip():
            try:
                if self._dmy is not None and (match := self._dmy(text)):
                    iso = date(*map(int, self._ymd(match))).isoformat()
                else:
                    iso = datetime.strptime(text, self._date_format).date().isoformat()
            except ValueError:
                iso = _INVALID
        self._dates[value] = iso
        return iso
