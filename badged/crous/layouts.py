"""Render a CROUS file from rows, exactly as the layout says: pure, byte for byte.

Columns in order, the header line if asked, the separator, dates in the layout's (or the
column's) format, the encoding and line ending of the layout, the file name from its
pattern. A value the encoding cannot carry is an error naming the person, never a
silently garbled name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from itertools import repeat
from typing import Any

from ..config.model import Layout, LayoutField

Row = Mapping[LayoutField, Any]


class RenderError(ValueError):
    """A row cannot be written in this layout (e.g. a character the encoding lacks)."""


@dataclass(frozen=True)
class RenderedFile:
    name: str
    content: bytes
    charset: str


def file_name(layout: Layout, *, school: str, uai: str, crous: str, kind: str,
              when: date) -> str:
    return layout.file_name.format(school=school, uai=uai, crous=crous, kind=kind, date=when)


def _formatter(fmt: str) -> Callable[[Any], str]:
    dates: dict[date, str] = {}  # a file repeats its due dates: format each once

    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, date):
            if value not in dates:
                dates[value] = value.strftime(fmt)
            return dates[value]
        return str(value)

    return text


def render(layout: Layout, rows: Sequence[Row], *, name: str,
           row_ids: Sequence[str] | None = None) -> RenderedFile:
    """The file's bytes; `row_ids` name the rows in errors (e.g. person ids)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=layout.separator,
                        lineterminator="\r\n" if layout.line_ending == "crlf" else "\n",
                        quoting=csv.QUOTE_MINIMAL)
    if layout.header:
        writer.writerow([c.header for c in layout.columns])
    columns = [(c.field, _formatter(c.format or layout.date_format)) for c in layout.columns]
    writer.writerows([[text(row.get(field)) for field, text in columns] for row in rows])
    text = buffer.getvalue()
    try:
        content = text.encode(layout.encoding)
    except UnicodeEncodeError as exc:
        raise RenderError(_unencodable(layout, rows, row_ids, exc)) from None
    return RenderedFile(name, content, layout.encoding)


def render_rows(layout: Layout, fields: Sequence[LayoutField], rows: Sequence[Sequence[Any]],
                *, name: str, row_ids: Sequence[str] | None = None,
                date_fields: Collection[LayoutField] = ()) -> RenderedFile:
    """`render` for rows given as value tuples in `fields` order (the change sets' lines):
    the same bytes, without a mapping per row. Values are str, int or None, and dates in
    the `date_fields` (or None there)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=layout.separator,
                        lineterminator="\r\n" if layout.line_ending == "crlf" else "\n",
                        quoting=csv.QUOTE_MINIMAL)
    if layout.header:
        writer.writerow([c.header for c in layout.columns])
    # A column at a time: the rows' columns picked in the layout's order (a column the
    # rows do not carry is written empty), each distinct date formatted once, then the
    # csv writer over the zipped columns (it writes None as "" and an int as str(int), as
    # `render` does): no Python frame per row.
    position = {f: i for i, f in enumerate(fields)}
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
    picked: list[Iterable[Any]] = []
    for c in layout.columns:
        if (i := position.get(c.field)) is None:
            picked.append(repeat(None, len(rows)))
        elif c.field in date_fields:
            text = _formatter(c.format or layout.date_format)
            texts = {value: text(value) for value in set(columns[i])}
            picked.append(map(texts.__getitem__, columns[i]))
        else:
            picked.append(columns[i])
    del columns
    writer.writerows(zip(*picked, strict=True))
    text = buffer.getvalue()
    try:
        content = text.encode(layout.encoding)
    except UnicodeEncodeError as exc:
        raise RenderError(_unencodable(layout, rows, row_ids, exc)) from None
    return RenderedFile(name, content, layout.encoding)


def _unencodable(layout: Layout, rows: Sequence[Row] | Sequence[Sequence[Any]],
                 row_ids: Sequence[str] | None, exc: UnicodeEncodeError) -> str:
    char = exc.object[exc.start]
    for i, row in enumerate(rows):
        for value in (row.values() if isinstance(row, Mapping) else row):
            if isinstance(value, str) and char in value:
                who = row_ids[i] if row_ids else f"row {i + 1}"
                return (f"{who}: {char!r} in {value!r} cannot be written in "
                        f"{layout.encoding}")
    return f"{char!r} cannot be written in {layout.encoding}"
