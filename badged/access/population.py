"""The cards a door system must know, each valid or blocked, from the store's rows.

A card is valid only while it is active and its holder still has rights: lost, stolen,
broken, expired and destroyed cards are blocked, and so are the cards of a holder past
their end of rights or gone from the registry (absent from a full export for longer than
the source's grace days).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import NamedTuple

from ..config.model import CsnForm
from ..crous.deadlines import PARIS

# The horizon door systems use for "no end" (their 32-bit dates end in 2038).
NO_END = date(2037, 12, 31)


class DoorCard(NamedTuple):
    """One card as a door system sees it (a tuple: a population is tens of thousands)."""

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
    if form is CsnForm.HEX:
        return csn.upper()
    if form is CsnForm.DECIMAL:
        return str(int(csn, 16))
    reversed_hex = bytes.fromhex(csn)[::-1].hex().upper()
    return reversed_hex if form is CsnForm.REVERSED_HEX else str(int(reversed_hex, 16))


def _local_day(stamp: str | None) -> date | None:
    """The Paris day of a stored time stamp. The store writes UTC (`+00:00`): Paris is a
    whole number of hours off UTC, so the day only depends on the UTC hour, and a
    population's thousands of stamps share a few thousand hours (cached)."""
    if not stamp:
        return None
    if stamp.endswith("+00:00") and len(stamp) >= 19:
        return _paris_day_of_utc_hour(stamp[:13])
    moment = datetime.fromisoformat(stamp)
    return moment.astimezone(PARIS).date() if moment.tzinfo else moment.date()


@functools.lru_cache(maxsize=65536)
def _paris_day_of_utc_hour(hour: str) -> date:
    return datetime.fromisoformat(f"{hour}:00:00+00:00").astimezone(PARIS).date()


@functools.lru_cache(maxsize=65536)
def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def door_cards(rows: Iterable[Sequence], today: date,
               leaving_grace_days: Mapping[str, int]) -> list[DoorCard]:
    """DoorCards from `store.access.cards_with_holders` rows (tuples in the order of its
    CARD_COLUMNS), judged on `today` (Paris).

    `leaving_grace_days`: per registry source, how long a person absent from its full
    export keeps their rights.
    """
    out = []
    day = _day
    for (csn, state, crous_number, enrolled_at, updated_at, person_id, last_name,
         first_name, birth_date, email, ine, category, end_of_rights, leaving_since,
         source) in rows:
        end = day(end_of_rights)
        gone = end is not None and end < today
        if leaving_since is not None:
            left = day(leaving_since)
            grace = leaving_grace_days.get(source or "", 0)
            gone = gone or left + timedelta(days=grace) <= today
        changed = _local_day(updated_at) or today
        out.append(DoorCard(
            csn=csn, state=state, valid=state == "active" and not gone,
            person_id=person_id, last_name=last_name, first_name=first_name,
            birth_date=day(birth_date), email=email, ine=ine, category=category,
            crous_number=crous_number, valid_from=_local_day(enrolled_at) or changed,
            valid_until=end or NO_END, changed_on=changed,
            enrolled_at=enrolled_at or updated_at))
    return out


def latest_per_person(cards: Iterable[DoorCard]) -> list[DoorCard]:
    """One card per holder, the last enrolled (Synchronic knows one card per person)."""
    latest: dict[str, DoorCard] = {}
    for card in cards:
        held = latest.get(card.person_id)
        if held is None or (card.enrolled_at, card.csn) > (held.enrolled_at, held.csn):
            latest[card.person_id] = card
    return sorted(latest.values(), key=lambda c: (c.person_id, c.enrolled_at, c.csn))
