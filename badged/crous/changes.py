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

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from ..config.model import ExchangeKind, LayoutField
from ..config.tree import Site
from ..store import exchanges as store
from .deadlines import PARIS, academic_year_start
from .tariffs import rate_for

LEAVING_RATE = 99
F = LayoutField


@dataclass(frozen=True)
class Line:
    """One person's line in a file, and why it is sent."""

    person_id: str
    reason: str
    values: dict[LayoutField, Any]
    fingerprint: str


@dataclass
class ChangeSet:
    kind: ExchangeKind
    academic_year: int
    lines: list[Line] = field(default_factory=list)
    unchanged: int = 0  # people of this kind whose last line sent still holds


def _fingerprint(values: dict[LayoutField, Any], year: int | None) -> str:
    """A digest of what a line says (fields in a fixed order, `_values` builds them so;
    `str` of a date is its ISO form)."""
    text = "\x1f".join(["" if v is None else str(v) for v in values.values()])
    if year is not None:
        text += f"\x1e{year}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


@dataclass(frozen=True)
class _Context:
    site: Site
    today: date
    year: int
    year_end: date  # last day of the academic year

    @classmethod
    def of(cls, site: Site, now: datetime) -> _Context:
        start = academic_year_start(now, site.school.academic_year_start)
        # A year after the start (plus a leap day) falls in the next academic year.
        next_start = academic_year_start(start + timedelta(days=366),
                                         site.school.academic_year_start)
        return cls(site, now.astimezone(PARIS).date(), start.year,
                   next_start.date() - timedelta(days=1))

    def leaving_since(self, person: sqlite3.Row) -> date | None:
        """The day the person's leaving became effective, if it has."""
        return left_on(self.site, person, self.today)


def left_on(site: Site, person: Mapping[str, Any], today: date) -> date | None:
    """The day a person's leaving became effective, if it has by `today`: the day they were
    first missing from their source's full export plus its grace days, or the day after
    their rights ended, whichever comes first."""
    left = _date(person["leaving_since"])
    if left is not None:
        grace = site.school.population.get(person["source"] or "")
        left += timedelta(days=grace.leaving_grace_days if grace else 0)
    end = _date(person["end_of_rights"])
    if end is not None and end < today:
        left = min(left, end + timedelta(days=1)) if left else end + timedelta(days=1)
    return left if left is not None and left <= today else None


def _values(ctx: _Context, p: sqlite3.Row, id_company_rate: int, id_rate: int,
            due: date) -> dict[LayoutField, Any]:
    return {
        F.IDENTIFIER: p["id"], F.INSTITUTIONAL_ID: p["id"], F.INE: p["ine"],
        F.LAST_NAME: p["last_name"], F.FIRST_NAME: p["first_name"], F.EMAIL: p["email"],
        F.BIRTH_DATE: _date(p["birth_date"]), F.RNE_ORG_CODE: ctx.site.school.uai,
        F.ID_COMPANY_RATE: id_company_rate, F.ID_RATE: id_rate, F.DUE_DATE: due,
        F.CATEGORY: p["category"], F.CROUS_NUMBER: p["crous_number"], F.CSN: p["csn"],
    }


def rights_ended(left: date) -> date:
    """The last day of a leaver's rights, which their départ line carries (never the day
    the line is sent: a file sent late must not extend the subsidy): the day before their
    leaving took effect, i.e. their `end_of_rights`, or the last day of the grace after they
    went missing from the registry export."""
    return left - timedelta(days=1)


def _due(ctx: _Context, p: sqlite3.Row) -> date:
    end = _date(p["end_of_rights"])
    return min(end, ctx.year_end) if end else ctx.year_end


def _classify(ctx: _Context, p: sqlite3.Row, left: date | None, ever_sent: set[str]
              ) -> tuple[ExchangeKind, dict[LayoutField, Any], str, bool] | None:
    """The one kind a person's line belongs to now, with (values, reason, per-year).

    A person is in at most one file: a student of this year is re-enrolled or a
    primo-entrant, present staff are personnels, and whoever left (and was declared
    before) is a départ. `left`: the day their leaving became effective, if it has.
    """
    tariffs = ctx.site.tariffs
    student = p["category"] == "student"
    if left is not None:  # départs: only people the CROUS heard of from us
        if p["id"] not in ever_sent or (student and not ctx.site.crous.departs_include_students):
            return None
        company = (tariffs.students.id_company_rate if student else
                   rate_for(tariffs, "staff", p["status_code"], p["staff_index"])
                   .id_company_rate)
        values = _values(ctx, p, company, LEAVING_RATE, rights_ended(left))
        end = _date(p["end_of_rights"])
        why = (f"rights ended {p['end_of_rights']}" if end and end < ctx.today else
               f"absent from the {p['source']} export since {p['leaving_since']}")
        return ExchangeKind.DEPARTS, values, f"left: {why}; tarif {LEAVING_RATE}", False
    if not student:
        rate = rate_for(tariffs, "staff", p["status_code"], p["staff_index"])
        values = _values(ctx, p, rate.id_company_rate, rate.id_rate, _due(ctx, p))
        index = p["staff_index"] if p["staff_index"] is not None else "-"
        return (ExchangeKind.PERSONNELS, values,
                f"staff {p['status_code'] or '(no status)'} index {index}: "
                f"{rate.id_company_rate} / {rate.id_rate}", False)
    if p["academic_year"] != ctx.year:
        return None
    first = p["first_enrolment_year"]
    rate = tariffs.students
    values = _values(ctx, p, rate.id_company_rate, rate.id_rate, _due(ctx, p))
    season = f"{ctx.year}-{ctx.year + 1}"
    if first is None:
        return (ExchangeKind.PRIMO_ENTRANTS, values,
                f"enrolled for {season}, first enrolment year unknown", True)
    if first < ctx.year:
        return (ExchangeKind.REINSCRIPTIONS, values,
                f"re-enrolled for {season} (first enrolled {first})", True)
    if first == ctx.year:
        return ExchangeKind.PRIMO_ENTRANTS, values, f"first enrolment in {season}", True
    return None


def compute(conn: sqlite3.Connection, site: Site, kind: ExchangeKind,
            now: datetime) -> ChangeSet:
    """The lines due for `kind` now (pure over the store: writes nothing)."""
    return compute_all(conn, site, [kind], now)[kind]


def compute_all(conn: sqlite3.Connection, site: Site, kinds: Iterable[ExchangeKind],
                now: datetime) -> dict[ExchangeKind, ChangeSet]:
    """The change sets of several kinds, in one pass over the people."""
    ctx = _Context.of(site, now)
    kinds = list(kinds)
    sent = {kind: store.last_sent(conn, kind.value) for kind in kinds}
    ever = store.ever_sent(conn) if ExchangeKind.DEPARTS in kinds else set()
    results = {kind: ChangeSet(kind, ctx.year) for kind in kinds}
    for person in store.people_with_cards(conn):
        found = _classify(ctx, person, ctx.leaving_since(person), ever)
        if found is None or found[0] not in results:
            continue
        kind, values, reason, per_year = found
        fingerprint = _fingerprint(values, ctx.year if per_year else None)
        previous = sent[kind].get(person["id"])
        result = results[kind]
        if previous is not None and previous[0] == fingerprint:
            result.unchanged += 1
            continue
        if previous is not None:
            reason += f" (changed since batch {previous[1]})"
        result.lines.append(Line(person["id"], reason, values, fingerprint))
    return results


@dataclass(frozen=True)
class Classified:
    """A person's line now, whatever was sent before (the API sync compares it itself)."""

    person: sqlite3.Row
    kind: ExchangeKind
    values: dict[LayoutField, Any]
    reason: str
    left: date | None  # the day their leaving became effective, if it has


def classify_all(conn: sqlite3.Connection, site: Site, now: datetime,
                 ever_sent: set[str]) -> Iterator[Classified]:
    """Every person's kind and line now (one per person), for the API CROUS sync.

    `ever_sent`: people the CROUS heard of from us (a départ is only told to them).
    """
    ctx = _Context.of(site, now)
    seen: set[str] = set()
    for person in store.people_with_cards(conn):
        if person["id"] in seen:
            continue
        seen.add(person["id"])
        left = ctx.leaving_since(person)
        found = _classify(ctx, person, left, ever_sent)
        if found is not None:
            yield Classified(person, found[0], found[1], found[2], left)
