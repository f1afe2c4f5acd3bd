"""Render a CROUS file from rows, exactly as the layout says: pure, byte for byte.

Columns in order, the header line if asked, the separator, dates in the layout's (or the
column's) format, the encoding and line ending of the layout, the file name from its
pattern. A value the encoding cannot carry is an error naming the person, never a
silently garbled name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
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
    position = {f: i for i, f in enumerate(fields)}
    width = len(fields)  # a column the rows do not carry is written empty: (*row, None)[width]
    picks = [position.get(c.field, width) for c in layout.columns]
    # The csv writer writes None as "" and an int as str(int), as `render` does; only the
    # dates need their format (each distinct date formatted once).
    dated = [(i, _formatter(c.format or layout.date_format))
             for i, c in enumerate(layout.columns) if c.field in date_fields]
    padded = width in picks

    def cells(row: Sequence[Any]) -> list[Any]:
        if padded:
            row = (*row, None)
        out = [row[i] for i in picks]
        for i, text in dated:
            out[i] = text(out[i])
        return out

    writer.writerows(map(cells, rows))
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
