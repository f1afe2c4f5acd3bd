"""Reading a registry export: the bytes as lines (encodings, mixed or not), the header
checked against the source's mapping, and the rows, a chunk at a time, with every bad one
reported as `FILE:LINE: reason`. What each field may hold is `registry_fields`; what the
import does with the rows is `population`.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from operator import methodcaller
from pathlib import Path
from typing import Any

from ..config.model import PersonField, PopulationSource
from .imports import Problem, Rejection
from .registry_fields import FieldError, FieldRule
from .textfile import TextFileError

PROGRESS_EVERY = 10_000

_ENCODING_NAMES = {"utf-8": "UTF-8", "cp1252": "Windows-1252", "iso8859-1": "Latin-1",
                   "iso8859-15": "ISO-8859-15", "ascii": "ASCII"}
_SEPARATORS = ";,\t|"


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


def split_fields(line: str, separator: str) -> list[str]:
    """Split on the separator, honouring CSV quotes when there are any (csv.Error if bad)."""
    if '"' in line:
        return next(csv.reader([line], delimiter=separator, strict=True), [])
    return line.split(separator)


# --- header and rows -----------------------------------------------------------------------

class ExportRows:
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
            (FieldRule(f, name, position[name], source.date_format)
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
            found = [name.strip() for name in split_fields(line, separator)]
        except csv.Error as exc:
            raise TextFileError(file, f"header: bad CSV quoting: {exc}") from None
        wanted = list(dict.fromkeys(source.columns.values()))
        missing = [(field, name) for field, name in source.columns.items() if name not in found]
        if len(missing) == len(source.columns):
            for other in _SEPARATORS.replace(separator, ""):
                try:
                    names = {name.strip() for name in split_fields(line, other)}
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
            fields = split_fields(line, separator)
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
                except FieldError as exc:
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
