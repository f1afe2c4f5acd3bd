"""Enrolment: link a tapped card to its holder and to its CROUS card number.

Where the card stack meets the CROUS: the CROUS number comes from the card itself when the
profile reads it, else from the imported CROUS card CSV; when both exist they must agree.
Every refusal says why; nothing is half-written (one transaction per enrolment).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal

from ..config.model import Comue, Enrolment
from ..store import cards, people, stock
from .lifecycle import actor


class EnrolmentError(Exception):
    """The card cannot be linked; the message says why and what to do.

    `rule` says the same without the card, the person or the number (personal data): what a
    batch prints on stderr, which ends up in the journal.
    """

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Policy:
    """What the school's config says about enrolment, and the card's price."""

    allow_unknown_to_crous: bool
    second_card: str  # disable_older | refuse
    unit_price: Decimal
    direct_price: Decimal | None

    @classmethod
    def of(cls, enrolment: Enrolment, comue: Comue) -> Policy:
        return cls(enrolment.allow_unknown_to_crous, enrolment.second_card,
                   comue.unit_price_eur, comue.direct_price_eur)


@dataclass
class Enrolled:
    """What an enrolment did (the answer `badged enrol` prints)."""

    csn: str
    person_id: str
    crous_number: int | None
    crous_number_from: str  # card, csv, card+csv, none
    new_card: bool
    disabled: list[str] = field(default_factory=list)
    stock_left: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def _crous_number(conn: sqlite3.Connection, csn: str, from_card: str | None,
                  policy: Policy) -> tuple[int | None, str]:
    from_csv = cards.crous_number_for(conn, csn)
    if from_card is not None:
        number = int(from_card)
        if from_csv is not None and from_csv != number:
            raise EnrolmentError(f"card {csn} holds CROUS number {number} but the CROUS "
                                 f"CSV links it to {from_csv}: ask the CROUS which is right",
                                 "the card's CROUS number differs from the CROUS CSV's")
        other = cards.holder_of_crous_number(conn, number)
        if from_csv is None and other is not None and other != csn:
            raise EnrolmentError(f"card {csn} holds CROUS number {number}, which the CROUS "
                                 f"CSV gives to card {other}",
                                 "the card's CROUS number belongs to another card")
        return number, "card+csv" if from_csv is not None else "card"
    if from_csv is not None:
        return from_csv, "csv"
    if not policy.allow_unknown_to_crous:
        raise EnrolmentError(f"card {csn} is unknown to the CROUS card CSV (import it with "
                             "badged crous import-cards, or allow unknown cards in the "
                             "school's enrolment settings)",
                             "card unknown to the CROUS card CSV")
    return None, "none"


def enrol(conn: sqlite3.Connection, person_id: str, csn: str, policy: Policy, *,
          crous_number_on_card: str | None = None, who: str | None = None) -> Enrolled:
    """Link card `csn` to `person_id`; EnrolmentError with the reason otherwise."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        return enrol_in_transaction(conn, person_id, csn, policy,
                                    crous_number_on_card=crous_number_on_card, who=who)


def enrol_in_transaction(conn: sqlite3.Connection, person_id: str, csn: str, policy: Policy,
                         *, crous_number_on_card: str | None = None,
                         who: str | None = None) -> Enrolled:
    """`enrol` inside the caller's transaction (a batch uses one savepoint per row)."""
    csn = csn.upper()
    who = who or actor()
    if people.get(conn, person_id) is None:
        raise EnrolmentError(f"unknown person {person_id!r} (add them with badged "
                             "person add, or import the registry)", "unknown person")
    card = cards.get(conn, csn)
    if card is not None and card.person_id not in (None, person_id):
        raise EnrolmentError(f"card {csn} is already linked to {card.person_id}",
                             "card already linked to another person")
    if card is not None and card.state != "active":
        raise EnrolmentError(f"card {csn} is {card.state}: it cannot be enrolled",
                             f"card {card.state}: it cannot be enrolled")
    number, source = _crous_number(conn, csn, crous_number_on_card, policy)
    if card is not None:  # the same card tapped again for the same person
        return Enrolled(csn, person_id, card.crous_number, source, False,
                        stock_left=stock.level(conn),
                        warnings=["card already linked to this person: nothing changed"])
    held = cards.for_person(conn, person_id)
    older = [c for c in held if c.state == "active"]
    if older and policy.second_card == "refuse":
        raise EnrolmentError(f"{person_id} already has an active card "
                             f"({', '.join(c.csn for c in older)}): declare it lost, "
                             "broken or expired first", "the person already has an active card")
    for old in older:
        cards.set_state(conn, old.csn, "active", "expired", f"replaced by {csn}", who, "HS")
    cards.link(conn, csn, person_id, number, who)
    stock.issue(conn, csn, policy.unit_price, policy.direct_price, who, replacement=bool(held))
    left = stock.level(conn)
    warnings = [] if left >= 0 else [f"card stock is {left}: record deliveries with badged "
                                     "stock receive"]
    return Enrolled(csn, person_id, number, source, True, [c.csn for c in older], left,
                    warnings)
