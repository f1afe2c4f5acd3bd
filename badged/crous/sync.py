"""The API CROUS sync: tell the CROUS, person by person, what changed since it was last told.

For each person of the school's `transport: api` exchange kinds who has an active card or
was told before, and for each card with a queued state change (`badged card set-state`):

1. holder: find it (identifier, then the person's other known ids; a holder found under
   another id is renamed with PATCH), create it, or update it: staff fully, students only
   identifier, ine, rneOrgCode, idCompanyRate and a longer dueDate (the CROUS owns their
   names, e-mail, birth date and idRate). A leaver's past dueDate becomes now + 3 h.
2. cards: an active card is added (or revalidated when the CROUS has it cancelled); a
   lost, stolen, broken, expired or destroyed one is cancelled with its reason (DP, DV, CD,
   HS; 404 means the CROUS does not know it: done).

What the CROUS was told is stored per person and per card (store.crous_api) as a
fingerprint, so a second run with nothing changed makes no call at all. Each refusal is
stored with its operation, status, code and whether it blocks (docs/crous-api.md has the
table); non-blocking ones are tried again at the next run, blocking ones when what is to be
told changes. A write whose answer was lost (timeout, dropped connection, crash) is looked
up before it is sent again, so nothing reaches the CROUS twice.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from ..config.model import Category, ExchangeKind, LayoutField, StudentIdentifier
from ..config.tree import Site
from ..store import crous_api as told_store
from ..store import exchanges as exchanges_store
from ..store.crous_cards import CrousCard
from ..store.crous_cards import get as csv_card
from . import changes
from .api import (
    AmbiguousWrite,
    Answer,
    AuthError,
    BudgetExhausted,
    CrousClient,
    RequestHook,
    TransientError,
    format_date,
    parse_date,
)
from .cancel import CANCEL_REASONS
from .deadlines import PARIS

log = logging.getLogger(__name__)

F = LayoutField
LEAVER_GRACE = timedelta(hours=3)   # a past dueDate is refused: a leaver gets now + 3 h
ABORT_AFTER_TRANSIENT = 5           # consecutive unanswered calls: the CROUS is down
STUDENT_COMPARED = ("identifier", "ine", "rneOrgCode", "idCompanyRate")
HOLDER_FIELDS = ("identifier", "firstName", "lastName", "email", "dueDate", "idCompanyRate",
                 "idRate", "simpleBirthDate", "ine", "rneOrgCode")
NON_BLOCKING_422 = {"-8", "-9", "-31", "-41", "-42", "-117"}
CODE_MEANING = {"-8": "dueDate in the past", "-9": "refused (code -9)",
                "-31": "card known but its holder deleted (GDPR)",
                "-41": "refused (code -41)", "-42": "refused (code -42)",
                "-117": "holder anonymised", "-11": "holder already exists"}


class SyncError(Exception):
    """The sync cannot run (no API exchange, no API section)."""


# --- what is due --------------------------------------------------------------------------

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


# --- the run --------------------------------------------------------------------------------

@dataclass
class SyncReport:
    dry_run: bool
    kinds: list[str]
    people: int = 0
    cards: int = 0
    calls: int = 0
    done: int = 0
    failed: int = 0
    pending: int = 0
    outcome: str = "ok"
    duration: float = 0.0
    planned: list[PlannedCall] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def aborted(self) -> bool:
        return self.outcome.startswith("aborted")

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "kinds": self.kinds, "people": self.people,
                "cards": self.cards, "calls": self.calls, "done": self.done,
                "failed": self.failed, "pending": self.pending, "outcome": self.outcome,
                "duration_seconds": round(self.duration, 3),
                "planned": [c.to_json() for c in self.planned], "failures": self.failures}


class _Failure(Exception):  # noqa: N818 (control flow inside a person's steps)
    """A step refused: stored, and whether the person's cards may still go on."""

    def __init__(self, op: str, status: int | None, code: str | None, message: str,
                 blocking: bool, proceed: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.op, self.status, self.code, self.message = op, status, code, message
        self.blocking, self.proceed, self.transient = blocking, proceed, transient


class _Abort(Exception):  # noqa: N818
    pass


def judge(op: str, answer: Answer) -> _Failure:
    """How a refusal is handled (docs/crous-api.md, "Errors")."""
    status, code = answer.status, answer.code
    message = answer.message
    if status == 423:
        return _Failure(op, status, code, f"IZLY account locked: {message}", False, True)
    if status == 406:
        return _Failure(op, status, code, f"another institution has priority on this "
                        f"student: {message}", False, True)
    if status == 403:
        what = ("holder held by another institution" if op == "get-holder"
                else "forbidden for this client")
        return _Failure(op, status, code, f"{what}: {message}", True)
    if status == 422 and code in NON_BLOCKING_422:
        return _Failure(op, status, code, f"{CODE_MEANING[code]}: {message}", False,
                        code == "-31")
    if status == 400:
        return _Failure(op, status, code, f"request refused: {message}", True)
    if status >= 500 or status == 429:
        return _Failure(op, status, code, f"CROUS error, retried later: {message}", False,
                        transient=True)
    return _Failure(op, status, code, f"{message}", False)


class Syncer:
    """One run: `Syncer(conn, site, client, now).run(tasks)`."""

    def __init__(self, conn: sqlite3.Connection, site: Site, client: CrousClient,
                 now: datetime, report: SyncReport) -> None:
        self.conn = conn
        self.site = site
        self.client = client
        self.now = now
        self.report = report
        self.transient_streak = 0

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _call(self, fn: Callable[..., Answer], *args: Any) -> Answer:
        try:
            answer = fn(*args)
        except AmbiguousWrite:
            raise
        except TransientError as exc:
            self._transient()
            raise _Failure(getattr(fn, "__name__", "call").replace("_", "-"), None, exc.code,
                           f"no answer: {exc}", False, transient=True) from None
        if answer.status >= 500 or answer.status == 429:
            self._transient()
        else:
            self.transient_streak = 0
        return answer

    def _transient(self) -> None:
        self.transient_streak += 1
        if self.transient_streak >= ABORT_AFTER_TRANSIENT:
            raise _Abort(f"aborted: the API CROUS did not answer {ABORT_AFTER_TRANSIENT} "
                         "calls in a row")

    def run(self, tasks: list[PersonTask]) -> None:
        report = self.report
        left = list(tasks)
        while left:
            t = left[0]
            try:
                self._person(t)
            except BudgetExhausted:
                report.outcome = "partial: request budget spent"
                break
            except AuthError as exc:
                report.outcome = f"aborted: {exc}"
                break
            except _Abort as exc:
                report.outcome = str(exc)
                break
            left.pop(0)
        report.pending += sum(int(t.holder_due) + sum(c.action != "settle" for c in t.cards)
                              for t in left)

    # --- a person ---------------------------------------------------------------------

    def _fail(self, subject: str, key: str, person_id: str, failure: _Failure,
              fingerprint: str | None) -> None:
        with self._tx():
            tries = told_store.record_error(
                self.conn, subject, key, person_id, failure.op, failure.status, failure.code,
                failure.message, failure.blocking, fingerprint)
        self.report.failed += 1
        self.report.failures.append({
            "subject": subject, "key": key, "person": person_id, "operation": failure.op,
            "status": failure.status, "code": failure.code, "message": failure.message,
            "blocking": failure.blocking, "tries": tries})
        level = logging.WARNING if failure.blocking else logging.INFO
        log.log(level, "API CROUS %s %s (%s): %s%s", subject, key, failure.op, failure.message,
                " [blocking]" if failure.blocking else "")

    def _person(self, t: PersonTask) -> None:
        identifier = t.identifier
        holder_exists = t.told is not None
        created = False
        if t.holder_due and t.desired is not None:
            try:
                identifier, created = self._holder(t, t.desired)
                holder_exists = True
            except _Failure as failure:
                self._fail("person", t.person_id, t.person_id, failure, t.desired.fingerprint)
                if not failure.proceed:  # its cards wait for the holder
                    t.cards = [c for c in t.cards if c.action in ("cancel", "settle")]
                holder_exists = holder_exists or failure.proceed
            t.holder_due = False
        for card in list(t.cards):
            if card.action == "settle":
                with self._tx():
                    if card.queued_up_to is not None:
                        told_store.mark_changes_sent(self.conn, card.csn, card.queued_up_to)
                if card.id_zdc is None:
                    log.info("card %s: %s", card.csn, card.why)
            elif card.action in ("add", "revalidate") and not holder_exists:
                pass
            else:
                try:
                    self._card(card, identifier, fresh_holder=created)
                except _Failure as failure:
                    self._fail("card", card.csn, t.person_id, failure, card.fingerprint)
            t.cards.remove(card)

    def _holder(self, t: PersonTask, d: Desired) -> tuple[str, bool]:
        """Find, rename, create or update the holder; (its identifier, created now)."""
        current = self._find(t, d)
        created = False
        if current is None:
            body = self._clamped(d)
            try:
                answer = self._call(self.client.create_holder, body)
            except AmbiguousWrite:
                current = self._find(t, d)  # look it up before sending it again
                if current is None:
                    raise _Failure("create-holder", None, "timeout", "no answer to the "
                                   "creation, and the holder is not there: retried later",
                                   False, transient=True) from None
            else:
                if answer.status == 422 and answer.code == "-11":
                    current = self._find(t, d)
                elif not answer.ok:
                    raise judge("create-holder", answer)
                else:
                    created = True
                    self._told_holder(d, body["dueDate"])
                    self.report.done += 1
                    return d.identifier, True
        assert current is not None
        body, changed = self._update_body(d, current)
        if changed:
            answer = self._call(self.client.update_holder, d.identifier, body)
            if not answer.ok:
                raise judge("update-holder", answer)
            self.report.done += 1
        self._told_holder(d, body["dueDate"])
        return d.identifier, created

    def _told_holder(self, d: Desired, due: str) -> None:
        with self._tx():
            told_store.tell_holder(self.conn, d.person_id, d.identifier, d.fingerprint, due)
            told_store.clear_error(self.conn, "person", d.person_id)

    def _find(self, t: PersonTask, d: Desired) -> dict[str, Any] | None:
        """The holder as the CROUS has it, renamed to our identifier if found by another."""
        answer = self._call(self.client.get_holder, d.identifier)
        if answer.ok:
            return answer.body
        if answer.status != 404:
            raise judge("get-holder", answer)
        others = [*d.other_ids]
        if t.told is not None and t.told.identifier not in (d.identifier, *others):
            others.insert(0, t.told.identifier)
        for other in others:
            answer = self._call(self.client.get_holder, other)
            if answer.status == 404:
                continue
            if not answer.ok:
                raise judge("get-holder", answer)
            email = answer.body.get("email") if isinstance(answer.body, dict) else None
            try:
                renamed = self._call(self.client.rename_holder, other, d.identifier,
                                     email or d.body["email"])
            except AmbiguousWrite:
                again = self._call(self.client.get_holder, d.identifier)
                if again.ok:
                    return again.body
                raise _Failure("rename-holder", None, "timeout", "no answer to the rename: "
                               "retried later", False, transient=True) from None
            if not renamed.ok:
                raise judge("rename-holder", renamed)
            log.info("API CROUS holder %s renamed %s", other, d.identifier)
            return renamed.body if isinstance(renamed.body, dict) and renamed.body else {
                **answer.body, "identifier": d.identifier}
        return None

    def _clamped(self, d: Desired) -> dict[str, Any]:
        body = dict(d.body)
        if d.due < self.now:
            body["dueDate"] = format_date(self.now + LEAVER_GRACE)
        return body

    def _update_body(self, d: Desired, theirs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        ours = self._clamped(d)
        our_due = parse_date(ours["dueDate"])
        try:
            their_due = parse_date(theirs.get("dueDate"))
        except ValueError:
            their_due = None
        assert our_due is not None
        if d.student:
            body = {k: theirs.get(k) for k in HOLDER_FIELDS}
            for k in ("firstName", "lastName"):
                body[k] = body[k] or ours[k]
            birth = body.get("simpleBirthDate")
            body["simpleBirthDate"] = str(birth)[:10] if birth else ours["simpleBirthDate"]
            if not isinstance(body.get("idRate"), int):
                body["idRate"] = ours["idRate"]
            for k in STUDENT_COMPARED:
                body[k] = ours[k]
            changed = any(_differs(ours[k], theirs.get(k)) for k in STUDENT_COMPARED)
            if their_due is None or our_due > their_due:  # never shorten a student's
                changed = True
                body["dueDate"] = ours["dueDate"]  # theirs may be in any form the API shows
            else:
                body["dueDate"] = format_date(their_due)
            return body, changed
        changed = any(_differs(ours[k], theirs.get(k)) for k in HOLDER_FIELDS
                      if k not in ("dueDate", "simpleBirthDate"))
        birth = theirs.get("simpleBirthDate")
        changed |= _differs(ours["simpleBirthDate"], str(birth)[:10] if birth else None)
        changed |= their_due is None or abs((their_due - our_due).total_seconds()) >= 1
        if d.due < self.now and their_due is not None and self.now < their_due <= \
                self.now + LEAVER_GRACE:
            changed = False  # already clamped for this leaver
            ours["dueDate"] = format_date(their_due)
        return ours, changed

    # --- a card -----------------------------------------------------------------------

    def _card(self, c: CardTask, identifier: str, fresh_holder: bool) -> None:
        assert c.id_zdc is not None
        if c.action == "cancel":
            self._cancel(c, c.told.identifier if c.told else identifier)
        elif c.action == "revalidate":
            self._revalidate(c, identifier)
        else:
            self._add(c, identifier, look_first=not fresh_holder)

    def _settled(self, c: CardTask, identifier: str, state: str | None,
                 pending: str | None = None) -> None:
        assert c.id_zdc is not None
        with self._tx():
            told_store.tell_card(self.conn, c.csn, c.person_id, identifier, c.id_zdc, state,
                                 pending)
            if pending is None:
                told_store.clear_error(self.conn, "card", c.csn)
                if c.queued_up_to is not None:
                    told_store.mark_changes_sent(self.conn, c.csn, c.queued_up_to)

    def _card_state(self, c: CardTask, identifier: str) -> dict[str, Any] | None:
        assert c.id_zdc is not None
        answer = self._call(self.client.get_card, identifier, c.id_zdc)
        if answer.status == 404:
            return None
        if not answer.ok:
            raise judge("get-card", answer)
        return answer.body if isinstance(answer.body, dict) else {}

    def _add(self, c: CardTask, identifier: str, look_first: bool) -> None:
        assert c.id_zdc is not None
        if look_first or (c.told is not None and c.told.pending_write):
            known = self._card_state(c, identifier)
            if known is not None:
                if known.get("cancelDate"):
                    self._revalidate(c, identifier)
                else:
                    self._settled(c, identifier, "active")
                    self.report.done += 1
                return
        row = csv_card(self.conn, c.csn)
        if row is None:
            raise _Failure("add-card", None, "no-csv", f"card {c.csn} (CROUS number "
                           f"{c.id_zdc}) is not in the CROUS card CSV: import it with "
                           "`badged crous import-cards`", True)
        self._settled(c, identifier, None, "add")
        try:
            answer = self._call(self.client.add_card, identifier, card_body(row))
        except AmbiguousWrite:
            if self._card_state(c, identifier) is not None:
                self._settled(c, identifier, "active")
                self.report.done += 1
                return
            raise _Failure("add-card", None, "timeout", "no answer to the card creation, and "
                           "the card is not there: retried later", False,
                           transient=True) from None
        if not answer.ok:
            raise judge("add-card", answer)
        self._settled(c, identifier, "active")
        self.report.done += 1

    def _patch(self, c: CardTask, identifier: str, op: str, body: dict[str, Any],
               state: str, landed: Callable[[dict[str, Any] | None], bool]) -> None:
        assert c.id_zdc is not None
        if c.told is not None and c.told.pending_write == op and landed(
                self._card_state(c, identifier)):
            self._settled(c, identifier, state)  # the write in flight at a crash landed
            self.report.done += 1
            return
        self._settled(c, identifier, c.told.told_state if c.told else None, op)
        try:
            answer = self._call(self.client.patch_card, op, identifier, c.id_zdc, c.csn, body)
        except AmbiguousWrite:
            if landed(self._card_state(c, identifier)):
                self._settled(c, identifier, state)
                self.report.done += 1
                return
            raise _Failure(op, None, "timeout", f"no answer to the {op}, and it did not "
                           "land: retried later", False, transient=True) from None
        if answer.status == 404 and op == "cancel-card":
            log.info("card %s: unknown at the CROUS, nothing to cancel", c.csn)
        elif answer.status == 404 and op == "revalidate-card":
            self._add(c, identifier, look_first=False)
            return
        elif not answer.ok:
            raise judge(op, answer)
        self._settled(c, identifier, state)
        self.report.done += 1

    def _cancel(self, c: CardTask, identifier: str) -> None:
        assert c.reason is not None
        body = {"revalidationDate": "", "cancelDate": format_date(self.now),
                "reason": c.reason}
        self._patch(c, identifier, "cancel-card", body, c.reason,
                    lambda known: known is None or bool(known.get("cancelDate")))

    def _revalidate(self, c: CardTask, identifier: str) -> None:
        body = {"revalidationDate": format_date(self.now), "cancelDate": "", "reason": ""}
        self._patch(c, identifier, "revalidate-card", body, "active",
                    lambda known: known is not None and not known.get("cancelDate"))


def _differs(ours: Any, theirs: Any) -> bool:
    if ours is None or ours == "":
        return theirs not in (None, "")
    return str(ours) != str(theirs)


def card_body(row: CrousCard) -> dict[str, Any]:
    """The smartcard body, from the CROUS card CSV's row."""
    created = datetime.combine(date.fromisoformat(row.date_creation), dtime(0), PARIS)
    return {"idTransmitter": row.emetteur, "idMapping": row.mapping, "idZdc": row.num_carte,
            "zdcCreationDate": format_date(created), "pixSs": row.pix_ss,
            "pixNn": row.pix_nn, "appl": row.appl, "uid": row.csn.upper(),
            "rid": row.rid.upper()}


def sync(conn: sqlite3.Connection, site: Site, now: datetime, *, dry_run: bool = False,
         kinds: Iterable[ExchangeKind] | None = None, on_request: RequestHook | None = None,
         client: CrousClient | None = None, base_dir: Path | None = None) -> SyncReport:
    """`badged crous sync` and the scheduled job: plan, then (unless a dry run) tell."""
    if site.crous.api is None:
        raise SyncError(f"CROUS {site.school.crous} has no api section: the API CROUS "
                        "sync cannot run")
    chosen = list(api_kinds(site) if kinds is None else kinds)
    if not chosen:
        raise SyncError(f"school {site.id} has no exchange with transport api")
    started = time.monotonic()
    tasks = plan(conn, site, now, chosen)
    report = SyncReport(dry_run, [k.value for k in chosen])
    report.people = sum(t.holder_due for t in tasks)
    report.cards = sum(c.action != "settle" for t in tasks for c in t.cards)
    if dry_run:
        report.planned = describe(tasks)
        report.pending = sum(int(t.holder_due) + sum(c.action != "settle" for c in t.cards)
                             for t in tasks)
        report.duration = time.monotonic() - started
        return report
    run_id = told_store.start_run(conn)
    own = client is None
    if client is None:
        client = CrousClient(site.crous.api, base_dir or site.tree, on_request=on_request)
    try:
        Syncer(conn, site, client, now, report).run(tasks)
    finally:
        report.calls = client.calls
        if own:
            client.close()
        report.duration = time.monotonic() - started
        told_store.finish_run(conn, run_id, calls=report.calls, done=report.done,
                              failed=report.failed, pending=report.pending,
                              outcome=report.outcome, duration=report.duration)
    return report
