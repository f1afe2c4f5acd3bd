"""The card steps of a sync run: an active card is added (or revalidated when the CROUS
knows it, unless its read shows it active); a lost, stolen, broken, expired or destroyed
one is cancelled with its reason (DP, DV, CD, HS; 404: the CROUS does not know it, done).
A card creation answered 404 means a closed account: it is re-opened (not a leaver's) and
the card sent again. A write in flight at a crash, or whose answer was lost, is looked up
before it is sent again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from datetime import time as dtime
from typing import Any

from ...store import crous_api as told_store
from ...store.crous_cards import CrousCard
from ...store.crous_cards import get as csv_card
from ..api import AmbiguousWrite, Answer, format_date
from ..deadlines import PARIS
from .plan import CardTask
from .refusals import Failure, judge
from .session import Session

log = logging.getLogger(__name__)


class CardSteps(Session):
    """Add, revalidate or cancel a card at the CROUS, and record what it was told."""

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
            if pending is None and ("card", c.csn) in self.in_error:
                told_store.clear_error(self.conn, "card", c.csn)
                self.in_error.discard(("card", c.csn))
            if pending is None and c.queued_up_to is not None:
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
                # Known at the CROUS: revalidated, unless its read says it is not cancelled
                # (a read without cancelDate says nothing: revalidating an active card
                # changes nothing, leaving a cancelled one would lose the person's card).
                if "cancelDate" in known and not known["cancelDate"]:
                    self._settled(c, identifier, "active")
                    self.report.done += 1
                else:
                    self._revalidate(c, identifier)
                return
        row = csv_card(self.conn, c.csn)
        if row is None:
            raise Failure("add-card", None, "no-csv", f"card {c.csn} (CROUS number "
                          f"{c.id_zdc}) is not in the CROUS card CSV: import it with "
                          "`badged crous import-cards`", True)
        # No write-ahead mark here: a card is only added without a look-up to a holder
        # created in this very run, and after a crash that holder is known, so the next
        # run looks the card up first.
        answer = self._post_card(c, identifier, row)
        if answer is None:
            return
        if answer.status == 404 and self._reopen_if_closed(identifier, self._holder_state(
                identifier)):
            # A card creation answered 404 for a known holder: its account is closed.
            answer = self._post_card(c, identifier, row)
            if answer is None:
                return
        if not answer.ok:
            raise judge("add-card", answer)
        self._settled(c, identifier, "active")
        self.report.done += 1

    def _post_card(self, c: CardTask, identifier: str, row: CrousCard) -> Answer | None:
        """The card creation's answer; None when its answer was lost but the card landed
        (then it is recorded as told)."""
        try:
            return self._call(self.client.add_card, identifier, card_body(row))
        except AmbiguousWrite:
            if self._card_state(c, identifier) is not None:
                self._settled(c, identifier, "active")
                self.report.done += 1
                return None
            raise Failure("add-card", None, "timeout", "no answer to the card creation, and "
                          "the card is not there: retried later", False,
                          transient=True) from None

    def _holder_state(self, identifier: str) -> dict[str, Any] | None:
        answer = self._call(self.client.get_holder, identifier)
        return answer.body if answer.ok and isinstance(answer.body, dict) else None

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
            raise Failure(op, None, "timeout", f"no answer to the {op}, and it did not "
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


def card_body(row: CrousCard) -> dict[str, Any]:
    """The smartcard body, from the CROUS card CSV's row."""
    created = datetime.combine(date.fromisoformat(row.date_creation), dtime(0), PARIS)
    return {"idTransmitter": row.emetteur, "idMapping": row.mapping, "idZdc": row.num_carte,
            "zdcCreationDate": format_date(created), "pixSs": row.pix_ss,
            "pixNn": row.pix_nn, "appl": row.appl, "uid": row.csn.upper(),
            "rid": row.rid.upper()}
