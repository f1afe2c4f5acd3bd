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

Reading the file (encodings, header, rows) is `registry_export.py`; the rules of each field
(conversion, dates, validation) are `registry_fields.py`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from operator import attrgetter
from pathlib import Path

from .. import clock
from ..config.model import PersonField, PopulationSource, Tariffs
from ..store import people
from ..store.db import paused_gc
from .imports import SHOWN, Problem, Rejection, RowsOutcome, rejection
from .registry_export import ExportRows, read_export
from .tariffs import default_rate_staff, default_rate_warning


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
    `registry_export.PROGRESS_EVERY` rows. `today` dates new leaving marks. Raises
    TextFileError when the file as a whole is unusable and PopulationError when the source
    is (nothing is written).
    """
    if PersonField.INSTITUTIONAL_ID not in source.columns:
        raise PopulationError(f"population source {source_name!r} has no institutional_id "
                              "column: people are matched by it")
    today = today or clock.today()
    lines, undecodable = read_export(path, source)
    rows = ExportRows(str(path), lines, undecodable, source, progress)
    category = source.category.value
    with paused_gc(), people.staged(conn, rows.columns, rows, category=category,
                                    source=source_name) as batch:
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
