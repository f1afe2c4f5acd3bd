"""What the API CROUS sync has to tell, person by person (pure over the store: writes
nothing): the holder each person should have and its fingerprint, the cards to add,
revalidate, cancel or settle, and, for a dry run, the calls a run would make."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any

from ...config.model import Category, ExchangeKind, LayoutField, StudentIdentifier
from ...config.tree import Site
from ...store import crous_api as told_store
from ...store import exchanges as exchanges_store
from .. import changes
from ..api import format_date
from ..cancel import CANCEL_REASONS
from ..deadlines import PARIS

F = LayoutField
# What is compared with what the CROUS has: for a student, what we own; for staff, all.
STUDENT_COMPARED = ("identifier", "ine", "rneOrgCode", "idCompanyRate")
HOLDER_FIELDS = ("identifier", "firstName", "lastName", "email", "dueDate", "idCompanyRate",
                 "idRate", "simpleBirthDate", "ine", "rneOrgCode")


@dataclass(frozen=True)
class Desired:
    """The holder the CROUS should have for a person, and a fingerprint of it."""

    person_id: str
    student: bool
    kind: ExchangeKind
    identifier: str
    other_ids: tuple[str, ...]
    body: dict[str, Any]       # the RightHolder, dueDate unclamped
    due: datetime
    leaving: bool
    fingerprint: str
    reason: str


@dataclass
class CardTask:
    csn: str
    person_id: str
    id_zdc: int | None
    action: str                 # add | revalidate | cancel | settle (no call: bookkeeping)
    reason: str | None          # cancel reason
    queued_up_to: int | None    # last queued state change it settles
    told: told_store.ToldCard | None
    why: str

    @property
    def fingerprint(self) -> str:
        return f"{self.action}:{self.reason or ''}:{self.id_zdc}"


@dataclass
class PersonTask:
    person_id: str
    desired: Desired | None
    told: told_store.ToldHolder | None
    holder_due: bool
    cards: list[CardTask] = field(default_factory=list)
    why: str = ""

    @property
    def identifier(self) -> str:
        if self.desired is not None:
            return self.desired.identifier
        return self.told.identifier if self.told else self.person_id


@dataclass(frozen=True)
class PlannedCall:
    method: str
    path: str
    why: str

    def to_json(self) -> dict[str, str]:
        return {"method": self.method, "path": self.path, "why": self.why}


def api_kinds(site: Site) -> list[ExchangeKind]:
    return [ex.kind for ex in site.school.exchanges if ex.transport == "api"]


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day, dtime(23, 59, 59), PARIS).astimezone(UTC)


def _digest(parts: Iterable[Any]) -> str:
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _desired(site: Site, c: changes.Classified) -> Desired:
    p, v = c.person, c.values
    student = p["category"] == Category.STUDENT.value
    api = site.crous.api
    assert api is not None
    use_ine = student and api.student_identifier is StudentIdentifier.INE and p["ine"]
    identifier = p["ine"] if use_ine else p["id"]
    others = tuple(i for i in (p["id"], p["ine"]) if i and i != identifier)
    leaving = c.kind is ExchangeKind.DEPARTS
    due = _end_of_day(v[F.DUE_DATE])  # a départ's: the last day of the rights
    birth = v[F.BIRTH_DATE]
    body = {"identifier": identifier, "firstName": p["first_name"], "lastName": p["last_name"],
            "email": p["email"], "dueDate": format_date(due),
            "idCompanyRate": int(v[F.ID_COMPANY_RATE]), "idRate": int(v[F.ID_RATE]),
            "simpleBirthDate": birth.isoformat() if birth else None, "ine": p["ine"],
            "rneOrgCode": site.school.uai}
    compared = (*STUDENT_COMPARED, "dueDate") if student else HOLDER_FIELDS
    return Desired(p["id"], student, c.kind, identifier, others, body, due, leaving,
                   _digest(body[k] for k in compared), c.reason)


def plan(conn: sqlite3.Connection, site: Site, now: datetime,
         kinds: Iterable[ExchangeKind] | None = None) -> list[PersonTask]:
    """What is due now, person by person (pure over the store: writes nothing)."""
    kinds = set(api_kinds(site) if kinds is None else kinds)
    told_h = told_store.holders(conn)
    told_c = told_store.cards(conn)
    errors = {(e.subject, e.key): e for e in told_store.errors(conn)}
    ever = exchanges_store.ever_sent(conn) | set(told_h)
    desired = {c.person["id"]: _desired(site, c)
               for c in changes.classify_all(conn, site, now, ever) if c.kind in kinds}
    tasks: dict[str, PersonTask] = {}

    def task(person_id: str) -> PersonTask:
        if person_id not in tasks:
            tasks[person_id] = PersonTask(person_id, desired.get(person_id),
                                          told_h.get(person_id), False)
        return tasks[person_id]

    active_holders: set[str] = set()
    rows = conn.execute(
        "SELECT c.csn, c.person_id, c.crous_number, c.state, (SELECT max(s.id) FROM "
        "card_state_changes s WHERE s.csn = c.csn AND s.crous_sent_at IS NULL) AS queued "
        "FROM cards c WHERE c.person_id IS NOT NULL ORDER BY c.person_id, c.csn")
    for csn, person_id, number, state, queued in rows:
        told = told_c.get(csn)
        if state == "active":
            if person_id not in desired:
                continue  # not a person of the API's kinds: the mail exchanges tell them
            active_holders.add(person_id)
            if told is not None and told.told_state == "active" and not told.pending_write:
                if queued is not None:
                    task(person_id).cards.append(CardTask(
                        csn, person_id, number, "settle", None, queued, told, "already told"))
                continue
            revalidate = told is not None and told.told_state not in (None, "active")
            action = "revalidate" if revalidate else "add"
            why = (f"card found again (was cancelled {told.told_state})" if revalidate  # type: ignore[union-attr]
                   else "new card")
        else:
            reason = CANCEL_REASONS[state]
            if told is not None and told.told_state not in (None, "active") \
                    and not told.pending_write:
                if queued is not None:
                    task(person_id).cards.append(CardTask(
                        csn, person_id, number, "settle", None, queued, told,
                        "already cancelled"))
                continue
            if queued is None and (told is None or told.told_state is None):
                continue  # never told, nothing queued: the CROUS never heard of it from us
            action, why = "cancel", f"card {state}: cancel reason {reason}"
        card = CardTask(csn, person_id, number, action,
                        reason if action == "cancel" else None, queued, told, why)
        if number is None:
            card.action, card.why = "settle", "no CROUS card number: nothing to tell"
        else:
            error = errors.get(("card", csn))
            if error is not None and error.blocking and error.fingerprint == card.fingerprint:
                continue
        task(person_id).cards.append(card)
    for person_id, d in desired.items():
        told = told_h.get(person_id)
        if person_id not in active_holders and told is None:
            continue  # no card, never told: nothing to tell yet
        if told is not None and told.fingerprint == d.fingerprint:
            continue
        error = errors.get(("person", person_id))
        if error is not None and error.blocking and error.fingerprint == d.fingerprint:
            continue
        t = task(person_id)
        t.holder_due = True
        t.why = d.reason if told is None else f"{d.reason}; changed since last told"
    # A card to add needs its holder at the CROUS: a holder blocked by an error waits.
    for t in tasks.values():
        if t.told is None and not t.holder_due:
            t.cards = [c for c in t.cards if c.action in ("cancel", "settle")]
    return [tasks[k] for k in sorted(tasks) if tasks[k].holder_due or tasks[k].cards]


def describe(tasks: Iterable[PersonTask]) -> list[PlannedCall]:
    """The calls a run would make if the CROUS holds what we last told it (a dry run)."""
    calls: list[PlannedCall] = []
    for t in tasks:
        ident = t.identifier
        if t.holder_due and t.desired is not None:
            d = t.desired
            who = f"{t.person_id} ({d.kind.value})"
            calls.append(PlannedCall("GET", f"/rightholders/{ident}", f"find holder {who}"))
            if t.told is None:
                for other in d.other_ids:
                    calls.append(PlannedCall("GET", f"/rightholders/{other}",
                                             f"if not found: look {t.person_id} up by another id"))
                calls.append(PlannedCall("POST", "/rightholders",
                                         f"if not found: create {who}: {t.why}"))
            else:
                if t.told.identifier != ident:
                    calls.append(PlannedCall(
                        "PATCH", f"/rightholders/{t.told.identifier}",
                        f"rename {t.told.identifier} to {ident}"))
                what = ("students: identifier, ine, rneOrgCode, idCompanyRate, longer dueDate"
                        if d.student else "staff: every field")
                calls.append(PlannedCall("PUT", f"/rightholders/{ident}",
                                         f"update {who} if it differs ({what}): {t.why}"))
        for c in t.cards:
            path = f"/rightholders/{ident}/smartcard"
            if c.action == "add":
                if t.told is not None:
                    calls.append(PlannedCall("GET", f"{path}/{c.id_zdc}",
                                             f"card {c.csn}: is it known already?"))
                calls.append(PlannedCall("POST", path, f"card {c.csn} ({c.id_zdc}): {c.why}"))
            elif c.action in ("cancel", "revalidate"):
                calls.append(PlannedCall("PATCH", f"{path}/{c.id_zdc}",
                                         f"card {c.csn}: {c.why}"))
    return calls
