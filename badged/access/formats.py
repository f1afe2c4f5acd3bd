"""Render door-system files from DoorCards: pure, byte for byte (docs/access-control.md).

TIL, Synchronic and P2S have fixed columns (no header, `;`, ISO-8859-1); the generic
format follows a layout of the tree, like the CROUS files. A format that carries a status
lists blocked cards as blocked; one that does not (a generic layout without a `valid`,
`blocked` or `state` column) leaves them out. A character the encoding cannot carry is an
error naming the holder, never a silent `?`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from ..config.model import (
    ACCESS_STATUS_FIELDS,
    AccessFormat,
    CsnForm,
    Layout,
    LayoutField,
)
from .population import NO_END, DoorCard, latest_per_person

F = LayoutField
LATIN1 = "iso-8859-1"
DEFAULT_P2S_LINES = 1000


class RenderError(ValueError):
    """A card cannot be written in this format (e.g. a character the encoding lacks)."""


@dataclass(frozen=True)
class Spec:
    """What the renderer needs of an export."""

    format: AccessFormat
    csn: CsnForm = CsnForm.HEX
    school_name: str = ""
    layout: Layout | None = None          # generic only
    max_lines: int = DEFAULT_P2S_LINES    # p2s only

    @property
    def carries_status(self) -> bool:
        if self.format is not AccessFormat.GENERIC:
            return True
        assert self.layout is not None
        return any(c.field in ACCESS_STATUS_FIELDS for c in self.layout.columns)

    @property
    def encoding(self) -> str:
        return self.layout.encoding if self.layout is not None else LATIN1

    @property
    def line_ending(self) -> str:
        if self.format is AccessFormat.GENERIC:
            assert self.layout is not None
            return "\r\n" if self.layout.line_ending == "crlf" else "\n"
        return "\n" if self.format is AccessFormat.P2S else "\r\n"

    @property
    def separator(self) -> str:
        return self.layout.separator if self.layout is not None else ";"

    @property
    def header(self) -> list[str] | None:
        if self.layout is not None and self.layout.header:
            return [c.header for c in self.layout.columns]
        return None


class Line(NamedTuple):
    """One card's line: the texts of its fields, and their digest (what the store keeps
    of a delivered line, to tell a changed one)."""

    card: DoorCard
    fields: tuple[str, ...]
    fingerprint: str

    @classmethod
    def of(cls, card: DoorCard, fields: list[str]) -> Line:
        digest = hashlib.blake2b("\x1f".join(fields).encode(), digest_size=16).hexdigest()
        return cls(card, tuple(fields), digest)


@dataclass(frozen=True)
class RenderedFile:
    name: str
    content: bytes


# A population shares few dates (end of rights, enrolment days): each is formatted once.
@functools.lru_cache(maxsize=8192)
def _strftime(day: date, fmt: str) -> str:
    return day.strftime(fmt)


def _dmy(day: date) -> str:
    return _strftime(day, "%d/%m/%Y")


def _birth(card: DoorCard) -> date:
    """Door systems refuse an empty birth date: the card's last change day stands in."""
    return card.birth_date or card.changed_on


def _til(card: DoorCard, spec: Spec) -> list[str]:
    return [card.person_id, card.last_name, card.first_name, card.card_id(spec.csn),
            _dmy(card.valid_from), _dmy(card.valid_until), "1" if card.valid else "0",
            _dmy(_birth(card)), spec.school_name, "A"]


def _synchronic(card: DoorCard, spec: Spec) -> list[str]:
    def ymd(day: date) -> str:
        return _strftime(min(day, NO_END), "%Y%m%d")
    return [card.person_id, card.last_name, card.first_name, card.card_id(spec.csn),
            ymd(card.valid_from), ymd(card.valid_until), "NON" if card.valid else "OUI",
            _dmy(_birth(card)), spec.school_name]


def _p2s(card: DoorCard, spec: Spec) -> list[str]:
    return [card.person_id, card.last_name, card.first_name, card.card_id(spec.csn),
            _strftime(card.valid_from, "%Y/%m/%d"), _strftime(card.valid_until, "%Y/%m/%d"),
            "0" if card.valid else "1", _dmy(_birth(card)), spec.school_name]


def _generic(card: DoorCard, spec: Spec) -> list[str]:
    layout = spec.layout
    assert layout is not None
    values: dict[LayoutField, object] = {
        F.IDENTIFIER: card.person_id, F.INSTITUTIONAL_ID: card.person_id, F.INE: card.ine,
        F.LAST_NAME: card.last_name, F.FIRST_NAME: card.first_name, F.EMAIL: card.email,
        F.BIRTH_DATE: _birth(card), F.CATEGORY: card.category,
        F.CROUS_NUMBER: card.crous_number, F.CSN: card.csn, F.CARD_ID: card.card_id(spec.csn),
        F.VALID_FROM: card.valid_from, F.VALID_UNTIL: card.valid_until,
        F.VALID: "1" if card.valid else "0", F.BLOCKED: "0" if card.valid else "1",
        F.STATE: card.state, F.SCHOOL_NAME: spec.school_name,
    }
    out = []
    for column in layout.columns:
        value = values.get(column.field)
        if value is None:
            out.append("")
        elif isinstance(value, date):
            out.append(_strftime(value, column.format or layout.date_format))
        else:
            out.append(str(value))
    return out


_ROW: dict[AccessFormat, Callable[[DoorCard, Spec], list[str]]] = {
    AccessFormat.TIL: _til, AccessFormat.SYNCHRONIC: _synchronic, AccessFormat.P2S: _p2s,
    AccessFormat.GENERIC: _generic,
}


def lines(spec: Spec, cards: Sequence[DoorCard]) -> list[Line]:
    """The lines of a full export, in a stable order (holder, then enrolment)."""
    chosen = latest_per_person(cards) if spec.format is AccessFormat.SYNCHRONIC else cards
    if not spec.carries_status:
        chosen = [c for c in chosen if c.valid]
    row = _ROW[spec.format]
    return [Line.of(card, row(card, spec)) for card in chosen]


def encode(spec: Spec, rows: Sequence[Line]) -> bytes:
    """One file's bytes: the header (generic layouts that ask), then the lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=spec.separator, lineterminator=spec.line_ending,
                        quoting=csv.QUOTE_MINIMAL)
    if spec.header is not None:
        writer.writerow(spec.header)
    writer.writerows(line.fields for line in rows)
    text = buffer.getvalue()
    try:
        return text.encode(spec.encoding)
    except UnicodeEncodeError as exc:
        raise RenderError(_unencodable(spec, rows, exc.object[exc.start])) from None


def _unencodable(spec: Spec, rows: Sequence[Line], char: str) -> str:
    for line in rows:
        for value in line.fields:
            if char in value:
                return (f"{line.card.person_id}: {char!r} in {value!r} cannot be written in "
                        f"{spec.encoding}")
    return f"{char!r} cannot be written in {spec.encoding}"


def files(spec: Spec, rows: Sequence[Line], *, file_name: str,
          epoch_ms: int) -> list[RenderedFile]:
    """The files of one delivery: one whole file, or P2S's numbered files of at most
    `max_lines` lines, `<epoch ms>_<n>_<file name>` with n from 1 (none if no line)."""
    if spec.format is not AccessFormat.P2S:
        return [RenderedFile(file_name, encode(spec, rows))]
    size = spec.max_lines
    return [RenderedFile(f"{epoch_ms}_{n}_{file_name}", encode(spec, rows[i:i + size]))
            for n, i in enumerate(range(0, len(rows), size), start=1)]
