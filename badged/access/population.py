"""The cards a door system must know, each valid or blocked, from the store's rows.

A card is valid only while it is active and its holder still has rights: lost, stolen,
broken, expired and destroyed cards are blocked, and so are the cards of a holder past
their end of rights or gone from the registry (absent from a full export for longer than
the source's grace days).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..config.model import CsnForm
from ..crous.deadlines import PARIS

# The horizon door systems use for "no end" (their 32-bit dates end in 2038).
NO_END = date(2037, 12, 31)


@dataclass(frozen=True)
class DoorCard:
    """One card as a door system sees it."""

    csn: str                 # upper-case hex, as stored
    state: str               # the card's life-cycle state
    valid: bool
    person_id: str
    last_name: str
    first_name: str
    birth_date: date | None
    email: str | None
    ine: str | None
    category: str
    crous_number: int | None
    valid_from: date         # the card's enrolment day
    valid_until: date        # the holder's end of rights (NO_END if none)
    changed_on: date         # the day of the card's last state change
    enrolled_at: str

    def card_id(self, form: CsnForm) -> str:
        return csn_form(self.csn, form)


def csn_form(csn: str, form: CsnForm) -> str:
    """The CSN in the form a door system reads: hex, byte-reversed hex, or either as decimal."""
    raw = bytes.fromhex(csn)
    if form in (CsnForm.REVERSED_HEX, CsnForm.REVERSED_DECIMAL):
        raw = raw[::-1]
    if form in (CsnForm.HEX, CsnForm.REVERSED_HEX):
        return raw.hex().upper()
    return str(int.from_bytes(raw, "big"))


def _local_day(stamp: str | None) -> date | None:
    if not stamp:
        return None
    moment = datetime.fromisoformat(stamp)
    return moment.astimezone(PARIS).date() if moment.tzinfo else moment.date()


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def door_cards(rows: Iterable[sqlite3.Row | Mapping], today: date,
               leaving_grace_days: Mapping[str, int]) -> list[DoorCard]:
    """DoorCards from `store.access.cards_with_holders` rows, judged on `today` (Paris).

    `leaving_grace_days`: per registry source, how long a person absent from its full
    export keeps their rights.
    """
    out = []
    for r in rows:
        end = _day(r["end_of_rights"])
        gone = end is not None and end < today
        left = _day(r["leaving_since"])
        if left is not None:
            grace = leaving_grace_days.get(r["source"] or "", 0)
            gone = gone or left + timedelta(days=grace) <= today
        changed = _local_day(r["updated_at"]) or today
        out.append(DoorCard(
            csn=r["csn"], state=r["state"], valid=r["state"] == "active" and not gone,
            person_id=r["person_id"], last_name=r["last_name"], first_name=r["first_name"],
            birth_date=_day(r["birth_date"]), email=r["email"], ine=r["ine"],
            category=r["category"], crous_number=r["crous_number"],
            valid_from=_local_day(r["enrolled_at"]) or changed,
            valid_until=end or NO_END, changed_on=changed,
            enrolled_at=r["enrolled_at"] or r["updated_at"]))
    return out


def latest_per_person(cards: Iterable[DoorCard]) -> list[DoorCard]:
    """One card per holder, the last enrolled (Synchronic knows one card per person)."""
    latest: dict[str, DoorCard] = {}
    for card in cards:
        held = latest.get(card.person_id)
        if held is None or (card.enrolled_at, card.csn) > (held.enrolled_at, held.csn):
            latest[card.person_id] = card
    return sorted(latest.values(), key=lambda c: (c.person_id, c.enrolled_at, c.csn))
