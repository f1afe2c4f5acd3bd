"""What the CROUS must be told: per kind, the people whose line is new or changed.

- réinscriptions: students of this academic year first enrolled in an earlier one;
- primo-entrants: students first enrolled this academic year;
- personnels: staff present, with their rate from the tariff rules;
- départs: staff who left (absent from a full export for longer than the grace, or whose
  rights ended) with tarif 99, dated the last day of their rights — and students whose
  rights ended, if the CROUS asks.

Each line has a fingerprint of what it says; a line is due when no line of that kind was
sent for the person yet, or the last one said something else. So a change is sent once,
and a later change is sent again. Réinscriptions and primo-entrants carry the academic
year in their fingerprint: each year's file is sent anew.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from hashlib import blake2b
from sys import intern
from typing import Any

from ..config.model import ExchangeKind, Layout, LayoutField
from ..config.tree import Site
from ..store import exchanges as store
from . import layouts
from .deadlines import PARIS, academic_year_start
from .tariffs import staff_rule

LEAVING_RATE = 99
F = LayoutField


# The fields of a line, in the order of its fingerprint (and of `Line.row`).
FIELDS = (F.IDENTIFIER, F.INSTITUTIONAL_ID, F.INE, F.LAST_NAME, F.FIRST_NAME, F.EMAIL,
          F.BIRTH_DATE, F.RNE_ORG_CODE, F.ID_COMPANY_RATE, F.ID_RATE, F.DUE_DATE, F.CATEGORY,
          F.CROUS_NUMBER, F.CSN)
DATE_FIELDS = frozenset({F.BIRTH_DATE, F.DUE_DATE})  # the fields whose values are dates


@dataclass(frozen=True, slots=True)
class Line:
    """One person's line in a file, and why it is sent.

    `row` holds the values in `FIELDS` order (what the renderer writes); `values` maps
    them by field.
    """

    person_id: str
    reason: str
    row: tuple[Any, ...]
    fingerprint: str

    @property
    def values(self) -> dict[LayoutField, Any]:
        return dict(zip(FIELDS, self.row, strict=True))


@dataclass
class ChangeSet:
    kind: ExchangeKind
    academic_year: int
    lines: list[Line] = field(default_factory=list)
    unchanged: int = 0  # people of this kind whose last line sent still holds

    def render(self, layout: Layout, name: str) -> layouts.RenderedFile:
        """The file of these lines in `layout` (RenderError names the person whose value
        the encoding cannot carry)."""
        return layouts.render_rows(layout, FIELDS, [line.row for line in self.lines],
                                   name=name, row_ids=[line.person_id for line in self.lines],
                                   date_fields=DATE_FIELDS)


def _fingerprint(row: tuple[Any, ...], year: int | None) -> str:
    """A digest of what a line says: its values in `FIELDS` order, each as `str` (a date
    in ISO form, None as empty) joined by US (0x1F), then RS (0x1E) and the year if any.

    Written out field by field (one f-string, no call per value): this is the hot spot of
    a change set, and stored fingerprints must never change meaning (see the tests).
    """
    (pid, iid, ine, last, first, email, birth, uai, company, rate, due, category, crous,
     csn) = row
    text = (f"{pid}\x1f{iid}\x1f{'' if ine is None else ine}\x1f"
            f"{'' if last is None else last}\x1f{'' if first is None else first}\x1f"
            f"{'' if email is None else email}\x1f{'' if birth is None else _iso(birth)}\x1f"
            f"{'' if uai is None else uai}\x1f{'' if company is None else company}\x1f"
            f"{'' if rate is None else rate}\x1f{'' if due is None else _iso(due)}\x1f"
            f"{'' if category is None else category}\x1f{'' if crous is None else crous}\x1f"
            f"{'' if csn is None else csn}")
    if year is not None:
        text += f"\x1e{year}"
    return blake2b(text.encode(), digest_size=16).hexdigest()


_iso = lru_cache(maxsize=4096)(str)  # dates repeat (due dates, birth dates): format once


class _Context:
    """What every person's line depends on besides the person: the school, today, the
    academic year, and caches of what many people share (tariff rates, reasons, dates)."""

    def __init__(self, site: Site, now: datetime) -> None:
        start = academic_year_start(now, site.school.academic_year_start)
        # A year after the start (plus a leap day) falls in the next academic year.
        next_start = academic_year_start(start + timedelta(days=366),
                                         site.school.academic_year_start)
        self.site = site
        self.today: date = now.astimezone(PARIS).date()
        self.year: int = start.year
        self.year_end: date = next_start.date() - timedelta(days=1)  # last day of the year
        self.season = f"{self.year}-{self.year + 1}"
        self.uai = site.school.uai
        students = site.tariffs.students
        self.student_rates = (students.id_company_rate, students.id_rate)
        self._staff_rates: dict[tuple[str | None, int | None], tuple[int, int]] = {}
        self.dates: dict[str, date] = {}
        self.reasons: dict[tuple[Any, ...], str] = {}

    def staff_rates(self, status: str | None, index: int | None) -> tuple[int, int]:
        """(idCompanyRate, idRate) of a staff member (as `rate_for`), once per (status,
        index)."""
        key = (status, index)
        if (rates := self._staff_rates.get(key)) is None:
            # `rate_for` without a Rate model per call: the same rule, or the default.
            rate = staff_rule(self.site.tariffs, status, index) or self.site.tariffs.default
            rates = self._staff_rates[key] = (rate.id_company_rate, rate.id_rate)
        return rates

    def date(self, text: str | None) -> date | None:
        """A stored ISO date as a date (a registry has few distinct ones: each parsed once)."""
        if not text:
            return None
        if (found := self.dates.get(text)) is None:
            found = self.dates[text] = date.fromisoformat(text)
        return found

    def leaving_since(self, p: tuple[Any, ...]) -> date | None:
        """The day the person's leaving became effective, if it has."""
        left = self.date(p[_LEAVING])
        if left is not None:
            grace = self.site.school.population.get(p[_SOURCE] or "")
            left += timedelta(days=grace.leaving_grace_days if grace else 0)
        end = self.date(p[_END])
        if end is not None and end < self.today:
            left = min(left, end + timedelta(days=1)) if left else end + timedelta(days=1)
        return left if left is not None and left <= self.today else None


    def due(self, p: tuple[Any, ...]) -> date:
        if not p[_END]:
            return self.year_end
        end = self.date(p[_END])
        assert end is not None
        return min(end, self.year_end)


def rights_ended(left: date) -> date:
    """The last day of a leaver's rights, which their départ line carries (never the day
    the line is sent: a file sent late must not extend the subsidy): the day before their
    leaving took effect, i.e. their `end_of_rights`, or the last day of the grace after they
    went missing from the registry export."""
    return left - timedelta(days=1)


# Positions in a person tuple (`store.exchanges.PERSON_COLUMNS`).
(_ID, _INE, _LAST, _FIRST, _EMAIL, _BIRTH, _CATEGORY, _YEAR, _FIRST_YEAR, _STATUS, _INDEX,
 _END, _SOURCE, _LEAVING, _CSN, _CROUS) = range(16)


def _row(ctx: _Context, p: tuple[Any, ...], company: int, rate: int,
         due: date) -> tuple[Any, ...]:
    """The line's values in `FIELDS` order."""
    pid, birth = p[_ID], p[_BIRTH]
    if birth:
        birth = ctx.dates.get(birth) or ctx.date(birth)
    # Names and categories repeat across people: one string each, not one per line (a
    # change set holds every line until it is rendered).
    return (pid, pid, p[_INE], intern(p[_LAST]), intern(p[_FIRST]), p[_EMAIL], birth or None,
            ctx.uai, company, rate, due, intern(p[_CATEGORY]), p[_CROUS], p[_CSN])


def _classify(ctx: _Context, p: tuple[Any, ...], ever_sent: set[str]
              ) -> tuple[ExchangeKind, tuple[Any, ...], str, bool] | None:
    """The one kind a person's line belongs to now, with (row, reason, per-year).

    A person is in at most one file: a student of this year is re-enrolled or a
    primo-entrant, present staff are personnels, and whoever left (and was declared
    before) is a départ.
    """
    student = p[_CATEGORY] == "student"
    if (p[_LEAVING] or p[_END]) and (left := ctx.leaving_since(p)) is not None:
        # départs: only people the CROUS heard of from us
        if p[_ID] not in ever_sent or (student and not ctx.site.crous.departs_include_students):
            return None
        company = (ctx.student_rates[0] if student else
                   ctx.staff_rates(p[_STATUS], p[_INDEX])[0])
        row = _row(ctx, p, company, LEAVING_RATE, rights_ended(left))
        end = ctx.date(p[_END])
        why = (f"rights ended {p[_END]}" if end and end < ctx.today else
               f"absent from the {p[_SOURCE]} export since {p[_LEAVING]}")
        return ExchangeKind.DEPARTS, row, f"left: {why}; tarif {LEAVING_RATE}", False
    reasons = ctx.reasons
    if not student:
        status, index = p[_STATUS], p[_INDEX]
        company, rate = ctx.staff_rates(status, index)
        key = ("staff", status, index)
        if (reason := reasons.get(key)) is None:
            shown = index if index is not None else "-"
            reason = reasons[key] = (f"staff {status or '(no status)'} index {shown}: "
                                     f"{company} / {rate}")
        return (ExchangeKind.PERSONNELS, _row(ctx, p, company, rate, ctx.due(p)), reason,
                False)
    if p[_YEAR] != ctx.year:
        return None
    first = p[_FIRST_YEAR]
    if first is None:
        kind, reason = (ExchangeKind.PRIMO_ENTRANTS,
                        f"enrolled for {ctx.season}, first enrolment year unknown")
    elif first < ctx.year:
        key = ("re-enrolled", first)
        if (reason := reasons.get(key)) is None:
            reason = reasons[key] = f"re-enrolled for {ctx.season} (first enrolled {first})"
        kind = ExchangeKind.REINSCRIPTIONS
    elif first == ctx.year:
        kind, reason = ExchangeKind.PRIMO_ENTRANTS, f"first enrolment in {ctx.season}"
    else:
        return None
    company, rate = ctx.student_rates
    return kind, _row(ctx, p, company, rate, ctx.due(p)), reason, True


def compute(conn: sqlite3.Connection, site: Site, kind: ExchangeKind,
            now: datetime) -> ChangeSet:
    """The lines due for `kind` now (pure over the store: writes nothing)."""
    return compute_all(conn, site, [kind], now)[kind]


def compute_all(conn: sqlite3.Connection, site: Site, kinds: Iterable[ExchangeKind],
                now: datetime) -> dict[ExchangeKind, ChangeSet]:
    """The change sets of several kinds, in one pass over the people (one query: each
    person with their active card)."""
    ctx = _Context(site, now)
    kinds = list(kinds)
    sent = {kind: store.last_sent(conn, kind.value) for kind in kinds}
    ever = store.ever_sent(conn) if ExchangeKind.DEPARTS in kinds else set()
    results = {kind: ChangeSet(kind, ctx.year) for kind in kinds}
    year = ctx.year
    for person in store.people_for_lines(conn):
        found = _classify(ctx, person, ever)
        if found is None or (result := results.get(found[0])) is None:
            continue
        kind, row, reason, per_year = found
        fingerprint = _fingerprint(row, year if per_year else None)
        previous = sent[kind].get(person[_ID])
        if previous is not None and previous[0] == fingerprint:
            result.unchanged += 1
            continue
        if previous is not None:
            reason += f" (changed since batch {previous[1]})"
        result.lines.append(Line(person[_ID], reason, row, fingerprint))
    return results


@dataclass(frozen=True)
class Classified:
    """A person's line now, whatever was sent before (the API sync compares it itself)."""

    person: Mapping[str, Any]  # the person's columns (`store.exchanges.PERSON_COLUMNS`)
    kind: ExchangeKind
    values: dict[LayoutField, Any]
    reason: str
    left: date | None  # the day their leaving became effective, if it has


_PERSON_KEYS = tuple(c.split(".", 1)[1] for c in store.PERSON_COLUMNS)


def classify_all(conn: sqlite3.Connection, site: Site, now: datetime,
                 ever_sent: set[str]) -> Iterator[Classified]:
    """Every person's kind and line now (one per person), for the API CROUS sync.

    `ever_sent`: people the CROUS heard of from us (a départ is only told to them).
    """
    ctx = _Context(site, now)
    seen: set[str] = set()
    for person in store.people_for_lines(conn):
        if person[_ID] in seen:
            continue
        seen.add(person[_ID])
        found = _classify(ctx, person, ever_sent)
        if found is not None:
            left = ctx.leaving_since(person) if person[_LEAVING] or person[_END] else None
            yield Classified(dict(zip(_PERSON_KEYS, person, strict=True)), found[0],
                             dict(zip(FIELDS, found[1], strict=True)), found[2], left)


def left_on(site: Site, person: Mapping[str, Any], today: date) -> date | None:
    """The day a person's leaving became effective, if it has by `today`: the day they were
    first missing from their source's full export plus its grace days, or the day after
    their rights ended, whichever comes first. The rule of `_Context.leaving_since` (which
    reads the change sets' row tuples, with cached dates), for one person's row."""
    left = _day(person["leaving_since"])
    if left is not None:
        grace = site.school.population.get(person["source"] or "")
        left += timedelta(days=grace.leaving_grace_days if grace else 0)
    end = _day(person["end_of_rights"])
    if end is not None and end < today:
        left = min(left, end + timedelta(days=1)) if left else end + timedelta(days=1)
    return left if left is not None and left <= today else None


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None
