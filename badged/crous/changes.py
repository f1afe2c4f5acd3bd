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
from hashlib import blake2b
from operator import itemgetter
from sys import intern
from typing import Any, NamedTuple

from ..config.model import ExchangeKind, Layout, LayoutField
from ..config.tree import Site
from ..store import exchanges as store
from ..store.db import paused_gc
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


class Line(NamedTuple):
    """One person's line in a file, and why it is sent.

    `row` holds the values in `FIELDS` order (what the renderer writes); `values` maps
    them by field. (A named tuple: a change set makes one per person, in C.)
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
        with paused_gc():
            return layouts.render_rows(layout, FIELDS, list(map(_ROW, self.lines)),
                                       name=name, row_ids=list(map(_PERSON, self.lines)),
                                       date_fields=DATE_FIELDS)


_PERSON, _ROW = itemgetter(0), itemgetter(2)


def _text(value: Any) -> str:
    """A value as a line's fingerprint writes it: None as empty, anything else as `str` (a
    date in ISO form).

    The fingerprint is a 16-byte BLAKE2b, in hex, of the line's values in `FIELDS` order,
    each as `_text`, joined by US (0x1F), then RS (0x1E) and the year for the per-year
    kinds (each year's file is sent anew). Stored fingerprints are compared with every
    later run: this meaning must never change (a changed one re-sends everyone; the tests
    hold every line to it).
    """
    return "" if value is None else str(value)


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
        return self.left(p[_LEAVING], p[_SOURCE], p[_END])

    def left(self, leaving: str | None, source: str | None, end_text: str | None
             ) -> date | None:
        """The day a leaving (stored `leaving_since`, `source`, `end_of_rights`) became
        effective, if it has."""
        left = self.date(leaving)
        if left is not None:
            grace = self.site.school.population.get(source or "")
            left += timedelta(days=grace.leaving_grace_days if grace else 0)
        end = self.date(end_text)
        if end is not None and end < self.today:
            left = min(left, end + timedelta(days=1)) if left else end + timedelta(days=1)
        return left if left is not None and left <= self.today else None

    def due(self, end_text: str | None) -> date:
        if not end_text:
            return self.year_end
        end = self.date(end_text)
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

# What a person's kind, rates, due date and reason depend on: a few columns whose values
# many people share (a registry has few distinct years, statuses, dates).
_KEY = itemgetter(_CATEGORY, _YEAR, _FIRST_YEAR, _STATUS, _INDEX, _END, _SOURCE, _LEAVING)


class _Decision(NamedTuple):
    """What everyone with the same `_KEY` values gets."""

    kind: ExchangeKind
    company: int
    rate: int
    due: date
    reason: str
    year: int | None  # in the fingerprint: the academic year, for the per-year kinds
    if_ever_sent: bool  # a départ: only for people the CROUS heard of from us


def _decide(ctx: _Context, key: tuple[Any, ...]) -> _Decision | None:
    """The one kind the line of a person with these `_KEY` values belongs to now, if any.

    A person is in at most one file: a student of this year is re-enrolled or a
    primo-entrant, present staff are personnels, and whoever left (and was declared
    before) is a départ.
    """
    category, year, first, status, index, end_text, source, leaving = key
    student = category == "student"
    if (leaving or end_text) and (left := ctx.left(leaving, source, end_text)) is not None:
        # départs: only people the CROUS heard of from us (`if_ever_sent`)
        if student and not ctx.site.crous.departs_include_students:
            return None
        company = (ctx.student_rates[0] if student else ctx.staff_rates(status, index)[0])
        end = ctx.date(end_text)
        why = (f"rights ended {end_text}" if end and end < ctx.today else
               f"absent from the {source} export since {leaving}")
        return _Decision(ExchangeKind.DEPARTS, company, LEAVING_RATE, rights_ended(left),
                         f"left: {why}; tarif {LEAVING_RATE}", None, True)
    due = ctx.due(end_text)
    if not student:
        company, rate = ctx.staff_rates(status, index)
        shown = index if index is not None else "-"
        return _Decision(ExchangeKind.PERSONNELS, company, rate, due,
                         f"staff {status or '(no status)'} index {shown}: {company} / {rate}",
                         None, False)
    if year != ctx.year:
        return None
    if first is None:
        kind, reason = (ExchangeKind.PRIMO_ENTRANTS,
                        f"enrolled for {ctx.season}, first enrolment year unknown")
    elif first < ctx.year:
        kind, reason = (ExchangeKind.REINSCRIPTIONS,
                        f"re-enrolled for {ctx.season} (first enrolled {first})")
    elif first == ctx.year:
        kind, reason = ExchangeKind.PRIMO_ENTRANTS, f"first enrolment in {ctx.season}"
    else:
        return None
    company, rate = ctx.student_rates
    return _Decision(kind, company, rate, due, reason, ctx.year, False)


class _Decisions(dict[tuple[Any, ...], "_Decision | None"]):
    """Each `_KEY`'s decision, decided the first time it is asked for."""

    def __init__(self, ctx: _Context) -> None:
        super().__init__()
        self.ctx = ctx

    def __missing__(self, key: tuple[Any, ...]) -> _Decision | None:
        found = self[key] = _decide(self.ctx, key)
        return found


def _row(ctx: _Context, p: tuple[Any, ...], decision: _Decision) -> tuple[Any, ...]:
    """The line's values in `FIELDS` order."""
    pid, birth = p[_ID], p[_BIRTH]
    # Names and categories repeat across people: one string each, not one per line (a
    # change set holds every line until it is rendered).
    return (pid, pid, p[_INE], intern(p[_LAST]), intern(p[_FIRST]), p[_EMAIL],
            ctx.date(birth) if birth else None, ctx.uai, decision.company, decision.rate,
            decision.due, intern(p[_CATEGORY]), p[_CROUS], p[_CSN])


def compute(conn: sqlite3.Connection, site: Site, kind: ExchangeKind,
            now: datetime) -> ChangeSet:
    """The lines due for `kind` now (pure over the store: writes nothing)."""
    return compute_all(conn, site, [kind], now)[kind]


def compute_all(conn: sqlite3.Connection, site: Site, kinds: Iterable[ExchangeKind],
                now: datetime) -> dict[ExchangeKind, ChangeSet]:
    """The change sets of several kinds, in one pass over the people (one query: each
    person with their active card; each distinct `_KEY` decided once)."""
    with paused_gc():
        return _compute_all(conn, site, list(kinds), now)


class _Plan(NamedTuple):
    """What the change sets do with everyone of the same `_KEY`: the set their line goes
    to, what that kind last sent, their decision's values, and the parts of the
    fingerprint's text they all share (so a line writes only its own values)."""

    result: ChangeSet
    sent: dict[str, tuple[str, int]]  # person id → (fingerprint, batch id) last sent
    if_ever_sent: bool
    company: int
    rate: int
    due: date
    reason: str
    middle: str  # RNE, rates, due date, category: between the birth date and the CROUS number
    tail: str  # RS and the academic year, or empty


class _Plans(dict[tuple[Any, ...], "_Plan | None"]):
    """Each `_KEY`'s plan (None: no line, or a line of a kind not asked for), made the
    first time it is asked for."""

    def __init__(self, ctx: _Context, results: dict[ExchangeKind, ChangeSet],
                 sent: dict[ExchangeKind, dict[str, tuple[str, int]]]) -> None:
        super().__init__()
        self.decisions, self.results, self.sent = _Decisions(ctx), results, sent
        self.uai = ctx.uai

    def __missing__(self, key: tuple[Any, ...]) -> _Plan | None:
        found = None
        d = self.decisions[key]
        if d is not None and (result := self.results.get(d.kind)) is not None:
            # the fingerprint's fields 8 to 12 (see `_text`; the category is in the key)
            middle = "\x1f".join(map(_text, (self.uai, d.company, d.rate, d.due,
                                             key[0])))
            found = _Plan(result, self.sent[d.kind], d.if_ever_sent, d.company, d.rate,
                          d.due, d.reason, middle, "" if d.year is None else f"\x1e{d.year}")
        self[key] = found
        return found


def _compute_all(conn: sqlite3.Connection, site: Site, kinds: list[ExchangeKind],
                 now: datetime) -> dict[ExchangeKind, ChangeSet]:
    ctx = _Context(site, now)
    sent = {kind: store.last_sent(conn, kind.value) for kind in kinds}
    ever = store.ever_sent(conn) if ExchangeKind.DEPARTS in kinds else set()
    results = {kind: ChangeSet(kind, ctx.year) for kind in kinds}
    plans = _Plans(ctx, results, sent)
    # birth date text → (date, ISO text): a registry has few distinct ones
    days: dict[Any, tuple[date | None, str]] = {None: (None, "")}
    # The loop's body is written out (no call per person): it is the change sets' whole
    # cost. The row is `_row`'s; the fingerprint's text (see `_text`) is written with the
    # plan's shared parts (the tests hold both to their one-line forms). Copying a
    # prepared hasher costs a third of making one with a digest size.
    uai, new_line, hasher = ctx.uai, tuple.__new__, blake2b(digest_size=16).copy
    for p in store.people_for_lines(conn):
        if (plan := plans[_KEY(p)]) is None:
            continue
        result, done, if_ever_sent, company, rate, due, reason, middle, tail = plan
        (pid, ine, last, first, email, birth, category, _, _, _, _, _, _, _, csn,
         crous) = p
        if if_ever_sent and pid not in ever:
            continue
        last, first = intern(last), intern(first)  # (`_row`'s order: the same errors)
        if (day := days.get(birth)) is None:
            born = ctx.date(birth) if birth else None
            day = days[birth] = (born, "" if born is None else str(born))
        row = (pid, pid, ine, last, first, email, day[0], uai, company, rate, due,
               intern(category), crous, csn)
        digest = hasher()
        digest.update(
            f"{pid}\x1f{pid}\x1f{'' if ine is None else ine}\x1f{last}\x1f{first}\x1f"
            f"{'' if email is None else email}\x1f{day[1]}\x1f{middle}\x1f"
            f"{'' if crous is None else crous}\x1f{'' if csn is None else csn}{tail}".encode())
        fingerprint = digest.hexdigest()
        if (previous := done.get(pid)) is not None:
            if previous[0] == fingerprint:
                result.unchanged += 1
                continue
            reason += f" (changed since batch {previous[1]})"
        result.lines.append(new_line(Line, (pid, reason, row, fingerprint)))
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
    decisions = _Decisions(ctx)
    seen: set[str] = set()
    for person in store.people_for_lines(conn):
        if person[_ID] in seen:
            continue
        seen.add(person[_ID])
        decision = decisions[_KEY(person)]
        if decision is None or (decision.if_ever_sent and person[_ID] not in ever_sent):
            continue
        left = ctx.leaving_since(person) if person[_LEAVING] or person[_END] else None
        yield Classified(dict(zip(_PERSON_KEYS, person, strict=True)), decision.kind,
                         dict(zip(FIELDS, _row(ctx, person, decision), strict=True)),
                         decision.reason, left)


def left_on(site: Site, person: Mapping[str, Any], today: date) -> date | None:
    """The day a person's leaving became effective, if it has by `today`: the day they were
    first missing from their source's full export plus its grace days, or the day after
    their rights ended, whichever comes first. The rule of `_Context.leaving_since` (which
    reads the change sets' stored values, with cached dates), for one person's row."""
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
