"""The holder steps of a sync run: find the holder (by its identifier, then the person's
other ids, renaming it with PATCH), create it, or update it: staff fully, students (ours,
or the CROUS's: idCompanyRate 10 there stays 10) only what we own (identifier, ine,
rneOrgCode, idCompanyRate) and a longer dueDate; a leaver's past dueDate becomes now + 3 h;
a closed account is re-opened (not a leaver's). A creation or rename whose answer was lost
is looked up first."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from ...store import crous_api as told_store
from ..api import AmbiguousWrite, format_date, parse_date
from ..tariffs import CROUS_STUDENT_COMPANY_RATE
from .plan import HOLDER_FIELDS, STUDENT_COMPARED, Desired, PersonTask
from .refusals import Failure, judge
from .session import Session

log = logging.getLogger(__name__)

LEAVER_GRACE = timedelta(hours=3)   # a past dueDate is refused: a leaver gets now + 3 h


class HolderSteps(Session):
    """Find, rename, create or update a person's holder at the CROUS."""

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
                    raise Failure("create-holder", None, "timeout", "no answer to the "
                                  "creation, and the holder is not there: retried later",
                                  False, transient=True) from None
            else:
                if answer.code == "-11" or answer.status == 409:
                    # "Client existant" (422 -11; whatever its status, or a bare 409 Conflict)
                    current = self._find(t, d)
                elif not answer.ok:
                    raise judge("create-holder", answer)
                else:
                    created = True
                    self._told_holder(d, body["dueDate"], t.told)
                    self.report.done += 1
                    return d.identifier, True
        if current is None:  # "exists" said on creation, yet not found: retried next run
            raise Failure("create-holder", 422, "-11", "the CROUS says the holder exists "
                          "but it cannot be found under its identifiers", False)
        self._reopen_if_closed(d.identifier, current)
        body, changed = self._update_body(d, current)
        if changed:
            answer = self._call(self.client.update_holder, d.identifier, body)
            if not answer.ok:
                raise judge("update-holder", answer)
            self.report.done += 1
        self._told_holder(d, body["dueDate"], t.told)
        return d.identifier, created

    def _told_holder(self, d: Desired, due: str, told: told_store.ToldHolder | None) -> None:
        with self._tx():
            told_store.tell_holder(self.conn, d.person_id, d.identifier, d.fingerprint, due,
                                   renamed=told is not None and told.identifier != d.identifier)
            if ("person", d.person_id) in self.in_error:
                told_store.clear_error(self.conn, "person", d.person_id)
                self.in_error.discard(("person", d.person_id))

    def _find(self, t: PersonTask, d: Desired) -> dict[str, Any] | None:
        """The holder as the CROUS has it, renamed to our identifier if found by another."""
        answer = self._call(self.client.get_holder, d.identifier)
        if answer.ok:
            return answer.body if isinstance(answer.body, dict) else {}
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
            found = answer.body if isinstance(answer.body, dict) else {}
            email = found.get("email")
            try:
                renamed = self._call(self.client.rename_holder, other, d.identifier,
                                     email or d.body["email"])
            except AmbiguousWrite:
                again = self._call(self.client.get_holder, d.identifier)
                if again.ok:
                    return again.body if isinstance(again.body, dict) else {}
                raise Failure("rename-holder", None, "timeout", "no answer to the rename: "
                              "retried later", False, transient=True) from None
            if not renamed.ok:
                raise judge("rename-holder", renamed)
            log.info("API CROUS holder renamed (its identifier changed)")
            log.debug("API CROUS holder %s renamed %s", other, d.identifier)
            return renamed.body if isinstance(renamed.body, dict) and renamed.body else {
                **found, "identifier": d.identifier}
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
        theirs_student = _is_crous_student(theirs)
        if theirs_student and not d.student:
            log.warning("API CROUS: a person the school has as staff is a student at the "
                        "CROUS (idCompanyRate %d): the CROUS's student data are kept",
                        CROUS_STUDENT_COMPANY_RATE)
            log.debug("API CROUS: %s is a student at the CROUS", d.person_id)
        if d.student or theirs_student:
            body = {k: theirs.get(k) for k in HOLDER_FIELDS}
            for k in ("firstName", "lastName"):
                body[k] = body[k] or ours[k]
            birth = body.get("simpleBirthDate")
            body["simpleBirthDate"] = str(birth)[:10] if birth else ours["simpleBirthDate"]
            if not isinstance(body.get("idRate"), int):
                body["idRate"] = ours["idRate"]
            compared = [k for k in STUDENT_COMPARED
                        if not (theirs_student and k == "idCompanyRate")]  # 10 stays 10
            for k in compared:
                body[k] = ours[k]
            changed = any(_differs(ours[k], theirs.get(k)) for k in compared)
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


def _is_crous_student(holder: dict[str, Any]) -> bool:
    return str(holder.get("idCompanyRate")).strip() == str(CROUS_STUDENT_COMPANY_RATE)


def _differs(ours: Any, theirs: Any) -> bool:
    if ours is None or ours == "":
        return theirs not in (None, "")
    return str(ours) != str(theirs)
