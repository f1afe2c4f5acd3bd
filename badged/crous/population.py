"""Registry exports (students, staff) → people: read, check, upsert, mark who is leaving.

Each school names its exports in `population:` (`PopulationSource`, config/model/): the
person category they hold, which CSV header feeds which person field, encoding, separator,
date format, whether the export is full (everyone of the source, every time).

An import (`import_population`):
- refuses a file that is unusable as a whole (`FILE:1: reason`: unreadable, empty, binary,
  a mapped column missing from the header, the wrong separator): nothing is written;
- reports every bad row as `FILE:LINE: reason` (a short row, an empty id or name, a date
  not in the configured format, a year or index that is not a number, a bad e-mail, an id or
  INE seen earlier in the file, an INE held by another person, a line in another encoding)
  and writes the good rows in one transaction, or nothing with `strict`;
- upserts people by institutional id: only the columns the source maps are written (the
  others keep their stored values), plus category (the source's), source (its name), and
  `leaving_since` cleared; dates are stored ISO, status codes lower-case, INEs upper-case;
- after a full export, marks people of that source who are absent from the file as leaving
  (`leaving_since` = today, kept if already set). People whose rows were rejected are in
  the file, so never marked; if a rejected row's id cannot be read at all, nobody is marked
  (and the report says so). The change sets treat leaving as effective only after the
  source's `leaving_grace_days` (see store/people.py).

Encodings: each line is decoded on its own with the configured encoding, because registry
exports glued from several extractions mix them. With UTF-8 configured, a line that is not
UTF-8 is rejected; with a single-byte encoding (Windows-1252, Latin-1), a line that is valid
UTF-8 with non-ASCII characters is rejected too: decoded as configured, its names would be
stored garbled ("Ã©" for "é"). A UTF-8 byte order mark makes the whole file UTF-8, whatever
is configured: it cannot start a Windows-1252 export.
"""

from __future__ import annotations

import codecs
import csv
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import chain
from operator import attrgetter, methodcaller
from pathlib import Path
from typing import Any

from .. import clock
from ..config.model import PersonField, PopulationSource, Tariffs
from ..store import people
from .imports import SHOWN, Problem, Rejection, RowsOutcome, rejection
from .tariffs import default_rate_staff, default_rate_warning
from .textfile import TextFileError

PROGRESS_EVERY = 10_000

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
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                    r"[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")
_INE = re.compile(r"[0-9A-Z]{11}")  # INE-RNIE (10 digits + letter) or INE-BEA (9 + 2)
_ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252", "iso8859-1": "Latin-1",
                   "iso8859-15": "ISO-8859-15", "ascii": "ASCII"}
_SEPARATORS = ";,\t|"


class PopulationError(Exception):
    """The source itself cannot be used (unknown name, no id column): one clear message."""


def find_source(population: Mapping[str, PopulationSource], name: str,
                school: str) -> PopulationSource:
    """The school's source called `name`, or a PopulationError naming the known ones."""
    if name in population:
        return population[name]
    if not population:
        raise PopulationError(f"unknown population source {name!r}: school {school} has no "
                              "population sources (add a population: section to its file)")
    raise PopulationError(f"unknown population source {name!r}: school {school} has "
                          f"{', '.join(sorted(population))}")


@dataclass(frozen=True)
class PopulationReport(RowsOutcome):
    """What an import did, for the CLI to print and for callers to act on."""

    file: str
    source: str
    read: int  # data rows (blank lines excluded)
    created: int
    updated: int
    unchanged: int
    leaving: int  # newly marked as leaving
    rejections: tuple[Rejection, ...]
    strict: bool
    notes: tuple[str, ...] = ()  # whole-file remarks, e.g. why nobody was marked leaving
    tariff_default: int = 0  # staff of the source whose status matches no tariff rule

    def diagnostics(self, shown: int = SHOWN, report: str | None = None) -> list[str]:
        return super().diagnostics(shown, report) + [f"{self.file}: {note}"
                                                     for note in self.notes]

    def details(self) -> list[str]:
        return super().details() + [f"{self.file}: {note}" for note in self.notes]

    def summary(self) -> str:
        text = (f"{self.file}: {self.read} read, {self.created} created, {self.updated} updated, "
                f"{self.unchanged} unchanged, {self.leaving} leaving, {self.rejected} rejected")
        if self.outcome == "refused":
            text += "; strict: nothing imported"
        if self.tariff_default:
            text += (f"; {self.tariff_default} staff on the default tariff (status matching "
                     "no tariff rule: check their status codes)")
        return text


def import_population(conn: sqlite3.Connection, path: Path, source_name: str,
                      source: PopulationSource, *, strict: bool = False,
                      progress: Callable[[int], None] | None = None,
                      today: date | None = None,
                      tariffs: Tariffs | None = None) -> PopulationReport:
    """Import one registry export of `source` (named `source_name`) into the store.

    Good rows go in one transaction, each bad one is reported; with `strict`, any bad row
    means nothing is written. `progress` is called with the number of rows read every
    PROGRESS_EVERY rows. `today` dates new leaving marks. Raises TextFileError when the file
    as a whole is unusable and PopulationError when the source is (nothing is written).
    """
    if PersonField.INSTITUTIONAL_ID not in source.columns:
        raise PopulationError(f"population source {source_name!r} has no institutional_id "
                              "column: people are matched by it")
    today = today or clock.today()
    lines, undecodable = read_export(path, source)
    rows = _Rows(str(path), lines, undecodable, source, progress)
    category = source.category.value
    with people.staged(conn, rows.columns, rows) as batch:
        batch.present(rows.present)
        rejections = list(rows.rejections)
        if not {"last_name", "first_name"} <= set(rows.columns):
            unknown = batch.unknown()
            batch.discard(pid for _, pid in unknown)
            missing = [c for c in ("last_name", "first_name") if c not in rows.columns]
            rejections += [rejection(line, Problem(
                f"{rows.id_header} is not a known person, and this source has no "
                f"{' or '.join(missing)} column to create one", pid)) for line, pid in unknown]
        while conflicts := batch.ine_conflicts():  # a discarded holder may free nothing more
            batch.discard(c.id for c in conflicts)
            rejections += [rejection(c.line, Problem(
                "INE is already held by another person", f"{c.ine}, held by {c.holder}"))
                for c in conflicts]
        rejections.sort(key=attrgetter("line"))
        created, updated, unchanged = batch.counts(category, source_name)
        leaving = 0
        notes: list[str] = []
        if strict and rejections:
            created = updated = 0
        else:
            batch.write(category, source_name)
            if source.full_export and rows.unidentified:
                notes.append(f"nobody marked as leaving: {rows.unidentified} rejected "
                             f"row{'s' * (rows.unidentified != 1)} without a readable "
                             f"{rows.id_header}")
            elif source.full_export:
                leaving = batch.mark_leaving(source_name, today.isoformat())
    defaults = 0
    if tariffs is not None and category == "staff" and not (strict and rejections):
        found = default_rate_staff(conn, tariffs, source_name)
        notes += [default_rate_warning(tariffs, pid, status) for pid, status in found]
        defaults = len(found)
    return PopulationReport(file=str(path), source=source_name, read=rows.read,
                            created=created, updated=updated, unchanged=unchanged,
                            leaving=leaving, rejections=tuple(rejections), strict=strict,
                            notes=tuple(notes), tariff_default=defaults)


# --- reading and decoding ------------------------------------------------------------------

def read_export(path: Path, source: PopulationSource) -> tuple[list[str], dict[int, str]]:
    """The file's physical lines, decoded line by line, and why some could not be.

    Returns (lines, undecodable): `lines[N-1]` is line N (an undecodable line is decoded
    with replacement characters, so its id can still be read); `undecodable` maps a line
    number to its reason. Raises TextFileError for the file as a whole (a bad header line
    included: the header is checked by `_Rows`).
    """
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextFileError(file, f"cannot read: {exc.strerror}", line=None) from None
    encoding = codecs.lookup(source.encoding).name
    if not _ascii_compatible(encoding):  # UTF-16 and friends: all or nothing
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            raise TextFileError(file, f"not {_name(encoding)} text") from None
        if not text.strip():
            raise TextFileError(file, "empty file")
        return _split_lines(text.removeprefix("\ufeff")), {}
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise TextFileError(file, f"UTF-16 text is not supported: save it as "
                            f"{_name(encoding)}")
    if b"\0" in data:
        raise TextFileError(file, "not a text file (binary data)")
    if data.startswith(codecs.BOM_UTF8):
        data, encoding = data[len(codecs.BOM_UTF8):], "utf-8"
    if not data.strip():
        raise TextFileError(file, "empty file")
    if data.isascii():
        return _split_lines(data.decode("ascii")), {}
    if encoding == "utf-8":
        try:
            return _split_lines(data.decode("utf-8")), {}
        except UnicodeDecodeError:
            pass  # find the lines that are not
    lines: list[str] = []
    undecodable: dict[int, str] = {}
    good_non_ascii = 0
    for number, raw in enumerate(data.split(b"\n" if b"\n" in data else b"\r"), start=1):
        raw = raw.removesuffix(b"\r")
        if raw.isascii():
            lines.append(raw.decode("ascii"))
            continue
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            column = len(raw[:exc.start].decode(encoding, "replace")) + 1
            undecodable[number] = (f"not {_name(encoding)} (byte 0x{raw[exc.start]:02X} at "
                                   f"column {column}): is the export mixing encodings?")
            lines.append(raw.decode(encoding, "replace"))
            continue
        if encoding != "utf-8" and (utf8 := _utf8(raw)) is not None:
            char = next(c for c in utf8 if not c.isascii())
            garbled = char.encode("utf-8").decode(encoding, "replace")
            undecodable[number] = (f"looks like UTF-8 in a {_name(encoding)} export "
                                   f"({char!r} would be stored as {garbled!r}): is the "
                                   "export mixing encodings?")
        else:
            good_non_ascii += 1
        lines.append(text)
    if len(undecodable) > 1 and not good_non_ascii:  # not a mix: the wrong encoding
        line, reason = next(iter(undecodable.items()))
        raise TextFileError(file, f"every line with non-ASCII characters is refused (line "
                            f"{line}: {reason.split(':')[0]}): is the source's encoding "
                            f"({_name(encoding)}) right?")
    return lines, undecodable


def _split_lines(text: str) -> list[str]:
    # Not splitlines(): \x1c, \x85… are no line ends here. CR alone: old Mac exports.
    return [line.removesuffix("\r") for line in text.split("\n" if "\n" in text else "\r")]


def _ascii_compatible(encoding: str) -> bool:
    probe = "\r\n;,|\t\"azAZ09@."
    try:
        return probe.encode(encoding) == probe.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _name(encoding: str) -> str:
    return _ENCODING_NAMES.get(encoding, encoding)


def _split(line: str, separator: str) -> list[str]:
    """Split on the separator, honouring CSV quotes when there are any (csv.Error if bad)."""
    if '"' in line:
        return next(csv.reader([line], delimiter=separator, strict=True), [])
    return line.split(separator)


# --- header and rows -----------------------------------------------------------------------

class _FieldError(Exception):
    """A field that cannot be stored; `problem` says why (the value apart)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.rule)
        self.problem = problem


def _human_format(date_format: str) -> str:
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
    PersonField.INE: f"(?:{_INE.pattern})?", PersonField.EMAIL: f"(?:{_EMAIL.pattern})?",
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


class _Field:
    """One mapped column: where it is, and how its values become stored values.

    `convert` is the slow path (one value, stripped, checked, with the reason when bad);
    `convert_column` the fast path (a chunk's whole column: checked by one regular
    expression over the joined values, in C). Both give the same stored values.
    """

    def __init__(self, field: PersonField, header: str, index: int, date_format: str) -> None:
        self.field, self.header, self.index = field, header, index
        self.column = COLUMN[field]
        self._date_format, self._human = date_format, _human_format(date_format)
        self._dates: dict[str, Any] = {}  # raw value → ISO date, None or _INVALID
        # Day, month and 4-digit year: parsed by a regex, 10 times faster than strptime and
        # with the same answers (a value it does not match goes to strptime).
        self._dmy, self._ymd = _numeric_date(date_format)
        if field not in _DATES:
            pattern = _CLEAN[field]
            self._clean = re.compile(pattern).fullmatch
            self._all_clean = re.compile(f"(?>{pattern})(?:\n(?>{pattern}))*+").fullmatch

    def convert(self, value: str) -> Any:
        """The stored value of a raw field; _FieldError says why it cannot be stored."""
        field, header = self.field, self.header
        if field in _DATES:
            if (iso := self._date(value)) is _INVALID:
                raise _FieldError(Problem(f"{header} is not a valid {self._human} date",
                                          value.strip()))
            return iso
        value = value.strip()
        if field is PersonField.INSTITUTIONAL_ID or field in (PersonField.LAST_NAME,
                                                              PersonField.FIRST_NAME):
            if not value:
                raise _FieldError(Problem(f"{header} is empty"))
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
            raise _FieldError(Problem(f"{header} is not {kind}", value))
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
        # Years and indexes stay digits: the staging table's INTEGER affinity converts them.
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


class _Rows:
    """The store-ready rows `(line, *values)` of an export; bad ones land in `rejections`.

    `columns` name the values (people columns, in the header's order). The header is
    checked at construction (TextFileError). Iterated once, by the store's `executemany`,
    so rows stream into SQLite. After the iteration: `read`, `rejections`, `present` (ids of
    rejected rows: still in the file) and `unidentified` (rejected rows whose id could not
    be read) are final.

    Lines are handled CHUNK at a time, a column at a time (the fast path: a split per line,
    then C over whole columns); a line the fast path does not vouch for (quotes, another
    width, another encoding, a value to strip, normalise or reject) goes through
    `_slow_row`, which checks it field by field and says what is wrong.
    """

    CHUNK = PROGRESS_EVERY

    def __init__(self, file: str, lines: list[str], undecodable: dict[int, str],
                 source: PopulationSource, progress: Callable[[int], None] | None) -> None:
        self._file = file
        self._lines = lines
        self._undecodable = undecodable
        self._separator = source.separator
        self._progress = progress
        self.id_header = source.columns[PersonField.INSTITUTIONAL_ID]
        header = self._header(source)
        self._width = len(header)
        position = {name: i for i, name in reversed(list(enumerate(header)))}
        order = list(PersonField)
        self._fields = sorted(
            (_Field(f, name, position[name], source.date_format)
             for f, name in source.columns.items()),
            key=lambda f: (f.index, order.index(f.field)))
        self.columns = [f.column for f in self._fields]
        self._id_slot = self.columns.index("id") + 1  # after the line number
        self._id_index = position[self.id_header]
        self._ine_slot = self.columns.index("ine") + 1 if "ine" in self.columns else None
        self._ine_header = source.columns.get(PersonField.INE)
        self._line_of_id: dict[str, int] = {}
        self._line_of_ine: dict[str, int] = {}
        self.read = 0
        self.unidentified = 0
        self.rejections: list[Rejection] = []
        self.present: list[str] = []

    def _header(self, source: PopulationSource) -> list[str]:
        """The header's column names, checked against the source's mapping."""
        file, separator = self._file, self._separator
        if 1 in self._undecodable:
            raise TextFileError(file, f"header: {self._undecodable[1]}")
        line = self._lines[0]
        try:
            found = [name.strip() for name in _split(line, separator)]
        except csv.Error as exc:
            raise TextFileError(file, f"header: bad CSV quoting: {exc}") from None
        wanted = list(dict.fromkeys(source.columns.values()))
        missing = [(field, name) for field, name in source.columns.items() if name not in found]
        if len(missing) == len(source.columns):
            for other in _SEPARATORS.replace(separator, ""):
                try:
                    names = {name.strip() for name in _split(line, other)}
                except csv.Error:
                    continue
                if len(names) > 1 and names & set(wanted):
                    raise TextFileError(file, f"not a {separator!r}-separated file: the header "
                                        f"is {other!r}-separated")
            raise TextFileError(file, f"missing header: the first line must name the columns "
                                f"{separator.join(wanted)}")
        if missing:
            plural = "s" * (len(missing) != 1)
            raise TextFileError(file, f"header has no column{plural} " + ", ".join(
                f"{name} ({field.value})" for field, name in missing))
        for name in wanted:
            if found.count(name) > 1:
                columns = [str(i) for i, other in enumerate(found, start=1) if other == name]
                raise TextFileError(file, f"column {name} appears {len(columns)} times in the "
                                    f"header (columns {', '.join(columns)})")
        return found

    def __iter__(self) -> Iterator[Sequence[Any]]:
        # chain: rows flow from each chunk's zip on without a Python frame per row.
        return chain.from_iterable(self._chunks())

    def _chunks(self) -> Iterator[Iterable[Sequence[Any]]]:
        """Each chunk's rows; its lines leave the file's list as it is taken (the list is
        read once, and the rows hold what the import needs: the file need not stay whole
        in memory beside them)."""
        lines, size, first = self._lines, self.CHUNK, 2
        while len(lines) > 1:
            chunk = lines[1:1 + size]
            del lines[1:1 + size]
            yield self._chunk(first, chunk)
            first += len(chunk)

    def _chunk(self, first: int, chunk: list[str]) -> Iterable[Sequence[Any]]:
        """The rows of lines `first`… (line numbers); rejections recorded, progress told."""
        before = self.read
        rows = self._chunk_rows(first, chunk)
        if self._progress is not None:
            for done in range(before // PROGRESS_EVERY + 1, self.read // PROGRESS_EVERY + 1):
                self._progress(done * PROGRESS_EVERY)
        return rows

    def _chunk_rows(self, first: int, chunk: list[str]) -> Iterable[Sequence[Any]]:
        separator, width = self._separator, self._width
        # Lines for the slow path, by position in the chunk.
        slow: set[int] = set()
        if '"' in "".join(chunk):
            slow.update(i for i, line in enumerate(chunk) if '"' in line)
        separators = list(map(methodcaller("count", separator), chunk))
        if separators.count(width - 1) != len(separators):
            slow.update(i for i, count in enumerate(separators) if count != width - 1)
        if self._undecodable:
            slow.update(number - first for number in self._undecodable
                        if first <= number < first + len(chunk))
        clean = [i for i in range(len(chunk)) if i not in slow] if slow else range(len(chunk))
        values: list[Sequence[Any]] = []
        if clean:
            # Every clean line has `width` fields: split them all at once, slice columns.
            fields = separator.join([chunk[i] for i in clean] if slow else chunk).split(separator)
            for field in self._fields:
                stored, bad = field.convert_column(fields[field.index::width])
                values.append(stored)
                slow.update(clean[p] for p in bad)
            del fields
        numbers = [first + i for i in clean]
        id_slot, ine_slot = self._id_slot, self._ine_slot
        if not slow:  # all clean: check duplicates a set at a time
            # (dict_keys.isdisjoint(set) walks the set, the smaller one: not the keys.)
            ids = values[id_slot - 1]
            ines = [] if ine_slot is None else values[ine_slot - 1]
            unique_ids, unique_ines = set(ids), set(ines)
            unique_ines.discard(None)
            if (len(unique_ids) == len(ids)
                    and self._line_of_id.keys().isdisjoint(unique_ids)
                    and len(unique_ines) == len(ines) - ines.count(None)
                    and self._line_of_ine.keys().isdisjoint(unique_ines)):
                self._line_of_id.update(zip(ids, numbers, strict=True))
                self._line_of_ine.update(zip(ines, numbers, strict=False))  # [] without INE
                self._line_of_ine.pop(None, None)
                self.read += len(chunk)
                return zip(numbers, *values, strict=True)
        # Line by line, in order: a value seen twice rejects the later row.
        rows = dict(zip(clean, zip(numbers, *values, strict=True), strict=True)) if clean \
            else {}
        blank = separator + ' \t"'
        good: list[Sequence[Any]] = []
        for i, line in enumerate(chunk):
            number = first + i
            if i in slow:
                if not line.strip(blank):
                    continue  # blank, or a spreadsheet's row of empty fields
                self.read += 1
                row = self._slow_row(number, line)
                if row is None:
                    continue
            else:
                self.read += 1
                row = rows[i]
            pid = row[id_slot]
            if (earlier := self._line_of_id.setdefault(pid, number)) != number:
                self._reject(number, [Problem(f"duplicate {self.id_header}", pid,
                                              f"already on line {earlier}")], pid)
                continue
            if ine_slot is not None and (ine := row[ine_slot]) is not None \
                    and (earlier := self._line_of_ine.setdefault(ine, number)) != number:
                self._reject(number, [Problem(f"duplicate {self._ine_header}", ine,
                                              f"already on line {earlier}")], pid)
                continue
            good.append(row)
        return good

    def _slow_row(self, number: int, line: str) -> list[Any] | None:
        """The row of a line the fast path refused, or None once its rejection is recorded.

        Every problem of the line is reported at once. A good row's id is not registered
        here (the caller checks duplicates); a rejected row's is.
        """
        separator, width = self._separator, self._width
        problems: list[Problem] = []
        fields: list[str] | None
        try:
            fields = _split(line, separator)
        except csv.Error as exc:
            fields = None
            problems.append(Problem(f"bad CSV quoting: {exc}"))
        if number in self._undecodable:
            problems.append(Problem(self._undecodable[number]))
        elif fields is not None and len(fields) != width:
            problems.append(Problem(f"expected {width} fields separated by {separator!r}",
                                    detail=f"found {len(fields)}"))
        pid = fields[self._id_index].strip() \
            if fields is not None and self._id_index < len(fields) else None
        if not problems:  # a row: check every field
            assert fields is not None
            row: list[Any] = [number]
            for field in self._fields:
                try:
                    row.append(field.convert(fields[field.index]))
                except _FieldError as exc:
                    row.append(None)
                    problems.append(exc.problem)
            if not problems:
                return row
        if pid and (earlier := self._line_of_id.setdefault(pid, number)) != number:
            problems.append(Problem(f"duplicate {self.id_header}", pid,
                                    f"already on line {earlier}"))
        self._reject(number, problems, pid)
        self.unidentified += pid is None
        return None

    def _reject(self, number: int, problems: list[Problem], pid: str | None) -> None:
        self.rejections.append(Rejection(number, tuple(problems)))
        if pid:
            self.present.append(pid)
