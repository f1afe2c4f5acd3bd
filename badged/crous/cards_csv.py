"""The CROUS card CSV (docs/crous.md): read it, check it, import it into the store.

The CROUS sends pre-encoded cards as a `;`-separated file linking each chip serial number
(NUM_PROTOCOLAIRE, the CSN) to its CROUS card number (NUM_CARTE). The import must never
overwrite a known link silently, must be safe to run twice, and must keep up with SQLite's
own `.import` on a 100 000-row batch (bench/import_cards.py).

Hence two parsing paths that accept exactly the same lines:
- the fast path: one compiled regular expression (`_FAST_LINE`) checks and splits a clean
  line in C; the few distinct EMETTEUR and DATE_CREATION values go through small caches;
- the slow path (`_checked_fields`): anything else (spaces around fields, quotes, a
  trailing `;`, blank or bad lines) is split, stripped and checked field by field, to say
  exactly what is wrong.
Both are built from the same field patterns; only the slow path strips whitespace, and the
fast path leaves the evenness of hex byte strings to one length check.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import islice
from operator import attrgetter, itemgetter
from pathlib import Path

from ..store import crous_cards
from ..store.crous_cards import CSN_AT, NUM_AT, Conflict, StagedRow
from .imports import Problem, Rejection, RowsOutcome, rejection
from .textfile import TextFileError as CardsFileError
from .textfile import decode

HEADER = ("PIX.SS", "PIX.NN", "AAPL", "NUM_PROTOCOLAIRE", "NUM_APPLICATIF", "NFO", "CNOUS",
          "CROUS", "EMETTEUR", "MAPPING", "NUM_CARTE", "DATE_CREATION")
EXPECTED_HEADER = ";".join(HEADER)
PROGRESS_EVERY = 10_000

# What each column holds. Integer widths keep values inside SQLite's signed 64-bit INTEGER.
_HEX_BYTES = r"(?:[0-9A-Fa-f]{2})+"  # NUM_APPLICATIF: whole bytes
_CSN_BYTES = r"(?:[0-9A-Fa-f]{2}){4,10}"  # NUM_PROTOCOLAIRE: a chip UID is 4 to 10 bytes
_HEX_NUMBER = r"[0-9A-Fa-f]{1,15}"  # EMETTEUR
_DECIMAL = r"[0-9]{1,18}"  # MAPPING, NUM_CARTE
_DATE = r"[0-9]{2}/[0-9]{2}/[0-9]{4}"  # DATE_CREATION, dd/MM/yyyy
_KINDS = {"NUM_PROTOCOLAIRE": _CSN_BYTES, "NUM_APPLICATIF": _HEX_BYTES,
          "EMETTEUR": _HEX_NUMBER, "MAPPING": _DECIMAL, "NUM_CARTE": _DECIMAL,
          "DATE_CREATION": _DATE}
_FIELD_OK = {column: re.compile(pattern).fullmatch for column, pattern in _KINDS.items()}

# Fast path: printable ASCII without spaces or quotes (anything else takes the slow path);
# hex digits by count, not by pairs (a regex counting pairs costs 40 % more: the loop checks
# parity).
_FAST_OPAQUE = r'[!#-:<-~]*'
_FAST_KINDS = {**_KINDS, "NUM_PROTOCOLAIRE": "[0-9A-Fa-f]{8,20}",
               "NUM_APPLICATIF": "[0-9A-Fa-f]+"}
_FAST_LINE = re.compile(
    ";".join(f"({_FAST_KINDS.get(column, _FAST_OPAQUE)})" for column in HEADER) + r"\r?")


@dataclass(frozen=True)
class ImportReport(RowsOutcome):
    """What an import did, for the CLI to print and for callers to act on."""

    file: str
    read: int  # data rows (blank lines excluded)
    imported: int  # links written: new ones plus `updated`
    updated: int  # known links whose other columns changed
    unchanged: int
    rejections: tuple[Rejection, ...]
    strict: bool

    def summary(self) -> str:
        imported = f"{self.imported} imported"
        if self.updated:
            imported += f" ({self.updated} updated)"
        text = (f"{self.file}: {self.read} read, {imported}, {self.unchanged} unchanged, "
                f"{self.rejected} rejected")
        if self.outcome == "refused":
            text += "; strict: nothing imported"
        return text


def import_cards(conn: sqlite3.Connection, path: Path, *, inverse_csn: bool = False,
                 strict: bool = False,
                 progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import a CROUS card CSV: every good row in one transaction, each bad one reported.

    A row whose CSN or NUM_CARTE is already linked to something else is rejected, never
    overwritten. With `strict`, any rejection means nothing is written. `progress` is called
    with the number of rows read every PROGRESS_EVERY rows. Raises CardsFileError when the
    file as a whole is unusable (then the store is not touched).
    """
    lines = read_lines(path)
    rows = _Rows(lines, inverse_csn=inverse_csn, progress=progress)
    conflicts: list[Rejection] = []
    updates: list[StagedRow] = []
    unchanged = 0

    def new_rows(links: crous_cards.Links) -> Iterator[StagedRow]:
        """Classify each parsed row; yield the new links, keep the rest aside."""
        nonlocal unchanged
        for row in rows:
            conflict = links.conflict(row)
            if conflict is not None:
                conflicts.append(_conflict_rejection(conflict))
                continue
            stored = links.stored_details(row)
            if stored is None:
                yield row
            elif stored == crous_cards.details(row):
                unchanged += 1
            else:
                updates.append(row)

    with crous_cards.importing(conn, str(path.resolve())) as batch:
        # Nothing stored yet (a first import): every row is new, none can conflict.
        inserted = batch.insert(rows if batch.links.empty else new_rows(batch.links))
        updated = batch.update(updates)
        rejections = sorted([*rows.rejections, *conflicts], key=attrgetter("line"))
        if strict and rejections:
            inserted = updated = 0
        else:
            batch.commit()
    return ImportReport(file=str(path), read=rows.read, imported=inserted + updated,
                        updated=updated, unchanged=unchanged, rejections=tuple(rejections),
                        strict=strict)


def read_lines(path: Path) -> list[str]:
    """The file's physical lines, decoded, once the header is checked (CardsFileError)."""
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CardsFileError(file, f"cannot read: {exc.strerror}", line=None) from None
    text = decode(file, data)
    del data  # a 100 000-row file is ~8 MB: do not keep two copies
    if not text.strip():
        raise CardsFileError(file, f"empty file (expected the header {EXPECTED_HEADER})")
    # Not splitlines(): \x1c, \x85… are no line ends here. CR alone: old Mac exports.
    lines = text.split("\n" if "\n" in text else "\r")
    _check_header(file, lines[0])
    return lines


def _check_header(file: str, line: str) -> None:
    try:
        found = tuple(_without_trailing_empty([field.strip() for field in _split(line)]))
    except csv.Error as exc:
        raise CardsFileError(file, f"header: bad CSV quoting: {exc}") from None
    if found == HEADER:
        return
    if sorted(found) == sorted(HEADER):
        reason = f"header columns in another order: expected {EXPECTED_HEADER}"
    elif len(found) == 1 and any(sep in line for sep in ",\t|"):
        reason = f"not a ';'-separated file: expected the header {EXPECTED_HEADER}"
    elif not set(found) & set(HEADER):
        reason = f"missing header: the first line must be {EXPECTED_HEADER}"
    else:
        missing = [name for name in HEADER if name not in found]
        unexpected = [repr(name[:40]) for name in found if name not in HEADER]
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else [])
        reason = f"bad header ({'; '.join(problems)}): expected {EXPECTED_HEADER}"
    raise CardsFileError(file, reason)


def _without_trailing_empty(fields: list[str]) -> list[str]:
    """Drop empty fields past the twelfth: a `;` ending every line (spreadsheet exports)
    adds an empty column that carries nothing; a non-empty extra field stays an error."""
    while len(fields) > len(HEADER) and not fields[-1]:
        fields.pop()
    return fields


def _split(line: str) -> list[str]:
    """Split on `;`, honouring CSV quotes when there are any (spreadsheet exports)."""
    if '"' in line:
        return next(csv.reader([line], delimiter=";"), [])
    return line.split(";")


class _BadRowError(Exception):
    """A data line that cannot be a card row; `problems` say why (values apart)."""

    def __init__(self, *problems: Problem) -> None:
        super().__init__("; ".join(p.rule for p in problems))
        self.problems = problems


def _checked_fields(line: str) -> Sequence[str] | None:
    """The stripped fields of a line the fast path refused; None if the line is blank.

    A line of empty fields (`;;;;…`, as spreadsheets export trailing rows) counts as blank.
    Every problem of the line is reported at once.
    """
    try:
        fields = [field.strip() for field in _split(line)]
    except csv.Error as exc:  # a CR or a NUL inside quotes
        raise _BadRowError(Problem(f"bad CSV quoting: {exc}")) from None
    if not any(fields):
        return None
    if any(char < " " for field in fields for char in field):
        raise _BadRowError(Problem("a field holds a control character (NUL, tab…)"))
    fields = _without_trailing_empty(fields)
    if len(fields) != len(HEADER):
        raise _BadRowError(Problem(f"expected {len(HEADER)} fields separated by ';'",
                                   detail=f"found {len(fields)}"))
    problems = [_field_problem(column, value) for column, value in zip(HEADER, fields, strict=True)
                if column in _FIELD_OK and not _FIELD_OK[column](value)]
    if problems:
        raise _BadRowError(*problems)
    return fields


def _field_problem(column: str, value: str) -> Problem:
    """What is wrong with a field; card numbers and CSNs are personal: the value apart."""
    kind = _KINDS[column]
    if not value:
        return Problem(f"{column} is empty")
    if kind in (_HEX_BYTES, _CSN_BYTES):
        if not re.fullmatch(r"[0-9A-Fa-f]+", value):
            return Problem(f"{column} is not hexadecimal", value)
        if len(value) & 1:
            return Problem(f"{column} has an odd number of hex digits", value,
                           f"{len(value)} digits")
        return Problem(f"{column} is not 4 to 10 bytes (a chip serial number)", value,
                       f"{len(value) // 2} bytes")
    if kind == _DATE:
        return Problem(f"{column} is not a dd/MM/yyyy date", value)
    if kind == _HEX_NUMBER and not re.fullmatch(r"[0-9A-Fa-f]+", value):
        return Problem(f"{column} is not a hexadecimal number", value)
    if kind == _DECIMAL and not re.fullmatch(r"[0-9]+", value):
        return Problem(f"{column} is not a decimal number", value)
    return Problem(f"{column} is too large", value)


@lru_cache(maxsize=4096)
def _hex_number(text: str) -> int:
    """EMETTEUR, hex in the file (written back as %04X); a batch has a handful of values."""
    return int(text, 16)


@lru_cache(maxsize=4096)
def _iso_date(text: str) -> str:
    """dd/MM/yyyy → ISO; ValueError for a date that does not exist (31/02/2024)."""
    return datetime.strptime(text, "%d/%m/%Y").date().isoformat()


def _reversed_bytes(hex_text: str) -> str:
    return bytes.fromhex(hex_text)[::-1].hex().upper()


def _conflict_rejection(conflict: Conflict) -> Rejection:
    problems = []
    if conflict.known_num_carte is not None:
        problems.append(Problem("NUM_PROTOCOLAIRE is already linked to another NUM_CARTE",
                                f"{conflict.csn}, linked to {conflict.known_num_carte}"))
    if conflict.known_csn is not None:
        problems.append(Problem("NUM_CARTE is already linked to another NUM_PROTOCOLAIRE",
                                f"{conflict.num_carte}, linked to {conflict.known_csn}"))
    return rejection(conflict.line, *problems)


class _Rows:
    """The store-ready rows of a file's data lines; the bad ones land in `rejections`.

    Iterated once (the file is parsed then, into a list: in-file duplicates are looked for
    a whole column at a time). `read` and `rejections` are final once it has begun.
    """

    def __init__(self, lines: list[str], *, inverse_csn: bool,
                 progress: Callable[[int], None] | None) -> None:
        self._lines = lines
        self._inverse_csn = inverse_csn
        self._progress = progress
        self.read = 0
        self.rejections: list[Rejection] = []

    def __iter__(self) -> Iterator[StagedRow]:
        # The hot path: locals only; a clean line costs one regex match and a few C calls.
        fast = _FAST_LINE.fullmatch
        hex_number, iso_date = _hex_number, _iso_date
        inverse_csn, progress = self._inverse_csn, self._progress
        reject = self.rejections.append
        rows: list[StagedRow] = []
        good = rows.append
        read = 0
        for number, line in enumerate(islice(self._lines, 1, None), start=2):
            match = fast(line)
            if match is not None:
                fields: Sequence[str] = match.groups()
            if match is None or len(fields[3]) & 1 or len(fields[4]) & 1:
                try:
                    checked = _checked_fields(line)
                except _BadRowError as exc:
                    read += 1
                    reject(Rejection(number, exc.problems))
                    continue
                if checked is None:
                    continue
                fields = checked
            read += 1
            if progress is not None and not read % PROGRESS_EVERY:
                progress(read)
            (pix_ss, pix_nn, appl, csn, rid, nfo, cnous, crous, emetteur, mapping, num_carte,
             date) = fields
            csn, rid, num = csn.upper(), rid.upper(), int(num_carte)
            if inverse_csn:
                csn, rid = _reversed_bytes(csn), _reversed_bytes(rid)
            try:
                date = iso_date(date)
            except ValueError:
                reject(rejection(number, Problem("DATE_CREATION is not a valid date", date)))
                continue
            good((number, pix_ss, pix_nn, appl, csn, rid, nfo, cnous, crous,
                  hex_number(emetteur), int(mapping), num, date))
        self.read = read
        # In-file duplicates: two set sizes tell whether there are any (the usual answer is
        # no); only then is the file walked again, in line order.
        if (len(set(map(itemgetter(CSN_AT), rows))) != len(rows)
                or len(set(map(itemgetter(NUM_AT), rows))) != len(rows)):
            rows = self._without_duplicates(rows)
        return iter(rows)

    def _without_duplicates(self, rows: list[StagedRow]) -> list[StagedRow]:
        """A value seen twice rejects the later row, even if the earlier row was itself a
        duplicate: the file contradicts itself about that card."""
        line_of_csn: dict[str, int] = {}
        line_of_num: dict[int, int] = {}
        kept = []
        for row in rows:
            number, csn, num = row[0], row[CSN_AT], row[NUM_AT]
            if (first := line_of_csn.setdefault(csn, number)) != number:
                self.rejections.append(rejection(number, Problem(
                    "duplicate NUM_PROTOCOLAIRE", csn, f"already on line {first}")))
            elif (first := line_of_num.setdefault(num, number)) != number:
                self.rejections.append(rejection(number, Problem(
                    "duplicate NUM_CARTE", str(num), f"already on line {first}")))
            else:
                kept.append(row)
        return kept
