"""Enrolment rules: CROUS number from the card and/or the CROUS CSV, every refusal."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from badged.enrolment.desk import EnrolmentError, Policy, enrol
from badged.store import cards, people, stock
from badged.store.db import open_store

CSN, OTHER = "04112233445566", "04AABBCCDDEEFF"


def policy(**kw) -> Policy:
    base = {"allow_unknown_to_crous": False, "second_card": "disable_older",
            "unit_price": Decimal("0.30"), "direct_price": Decimal("3.00")}
    return Policy(**{**base, **kw})


@pytest.fixture
def conn(tmp_path: Path):
    c = open_store(tmp_path)
    for pid, cat in (("s1", "student"), ("s2", "student"), ("p1", "staff")):
        people.upsert(c, people.Person(id=pid, last_name="Doe", first_name="X", category=cat))
    return c


def crous_csv(conn, csn: str, number: int) -> None:
    conn.execute(
        "INSERT INTO crous_cards VALUES (?, ?, ?, '03', '0000', 'D1', '', '', '', 101, 1, "
        "'2026-09-01', '2026-09-02', 'x.csv')", (csn, csn, number))


def test_number_from_the_card(conn) -> None:
    done = enrol(conn, "s1", CSN.lower(), policy(), crous_number_on_card="249760531028417")
    assert (done.csn, done.crous_number, done.crous_number_from) == (CSN, 249760531028417,
                                                                     "card")
    assert cards.get(conn, CSN).person_id == "s1"


def test_number_from_the_csv(conn) -> None:
    crous_csv(conn, CSN, 36000000)
    done = enrol(conn, "s1", CSN, policy())
    assert (done.crous_number, done.crous_number_from) == (36000000, "csv")


def test_card_and_csv_must_agree(conn) -> None:
    crous_csv(conn, CSN, 36000000)
    assert enrol(conn, "s1", CSN, policy(),
                 crous_number_on_card="36000000").crous_number_from == "card+csv"
    crous_csv(conn, OTHER, 36000001)
    with pytest.raises(EnrolmentError, match="holds CROUS number 5 but the CROUS CSV links "
                       "it to 36000001"):
        enrol(conn, "s2", OTHER, policy(), crous_number_on_card="5")
    assert cards.get(conn, OTHER) is None


def test_card_number_given_by_the_csv_to_another_card(conn) -> None:
    crous_csv(conn, OTHER, 36000001)
    with pytest.raises(EnrolmentError, match=f"which the CROUS CSV gives to card {OTHER}"):
        enrol(conn, "s1", CSN, policy(), crous_number_on_card="36000001")


def test_unknown_person(conn) -> None:
    with pytest.raises(EnrolmentError, match="unknown person 'nobody'"):
        enrol(conn, "nobody", CSN, policy(), crous_number_on_card="1")


def test_card_of_someone_else(conn) -> None:
    enrol(conn, "s1", CSN, policy(), crous_number_on_card="1")
    with pytest.raises(EnrolmentError, match=f"card {CSN} is already linked to s1"):
        enrol(conn, "s2", CSN, policy(), crous_number_on_card="1")


def test_unknown_to_the_crous_refused_unless_allowed(conn) -> None:
    with pytest.raises(EnrolmentError, match="unknown to the CROUS card CSV"):
        enrol(conn, "s1", CSN, policy())
    done = enrol(conn, "s1", CSN, policy(allow_unknown_to_crous=True))
    assert (done.crous_number, done.crous_number_from) == (None, "none")


def test_second_card_disables_the_older(conn) -> None:
    enrol(conn, "s1", CSN, policy(), crous_number_on_card="1")
    done = enrol(conn, "s1", OTHER, policy(), crous_number_on_card="2")
    assert done.disabled == [CSN]
    assert cards.get(conn, CSN).state == "expired"
    change = cards.history(conn, CSN)[-1]
    assert (change.new_state, change.reason, change.crous_reason) == (
        "expired", f"replaced by {OTHER}", "HS")


def test_second_card_refused_when_configured(conn) -> None:
    enrol(conn, "s1", CSN, policy(), crous_number_on_card="1")
    with pytest.raises(EnrolmentError, match=f"s1 already has an active card \\({CSN}\\)"):
        enrol(conn, "s1", OTHER, policy(second_card="refuse"), crous_number_on_card="2")


def test_same_card_again_changes_nothing(conn) -> None:
    enrol(conn, "s1", CSN, policy(), crous_number_on_card="1")
    again = enrol(conn, "s1", CSN, policy(), crous_number_on_card="1")
    assert not again.new_card and again.warnings
    assert stock.level(conn) == -1  # one card issued, none received


def test_stock_and_costs_of_a_year(conn) -> None:
    stock.receive(conn, 100, Decimal("0.30"), Decimal("3.00"), "B1", "test")
    for i in range(3):
        people.upsert(conn, people.Person(id=f"n{i}", last_name="N", first_name="N",
                                          category="student"))
        enrol(conn, f"n{i}", f"04000000000{i:03d}", policy(), crous_number_on_card=str(i + 10))
    year = int(cards.get(conn, "04000000000000").enrolled_at[:4])
    costs = stock.costs(conn, year)
    assert (costs.received, costs.issued) == (100, 3)
    # The COMUE is paid per card bought (received), not per card issued.
    assert costs.spend_eur == Decimal("30.00")
    assert costs.direct_eur == Decimal("300.00") and costs.savings_eur == Decimal("270.00")
    assert stock.level(conn) == 97
    assert stock.costs(conn, year - 1).issued == 0
    assert stock.costs(conn, year - 1).spend_eur == 0


def test_lost_and_replaced_cards_are_counted(conn) -> None:
    stock.receive(conn, 10, Decimal("0.30"), None, None, "test")
    stock.receive(conn, 5, Decimal("0.40"), Decimal("3.00"), None, "test")
    people.upsert(conn, people.Person(id="r1", last_name="R", first_name="R",
                                      category="student"))
    enrol(conn, "r1", "04000000000101", policy(), crous_number_on_card="101")
    cards.set_state(conn, "04000000000101", "active", "lost", "lost at the desk", "test", "DP")
    cards.set_state(conn, "04000000000101", "lost", "stolen", "it was stolen", "test", "DV")
    enrol(conn, "r1", "04000000000102", policy(), crous_number_on_card="102")
    enrol(conn, "r1", "04000000000103", policy(), crous_number_on_card="103")  # 102 expires
    year = int(cards.get(conn, "04000000000101").enrolled_at[:4])
    costs = stock.costs(conn, year)
    assert (costs.received, costs.issued, costs.lost, costs.replaced) == (15, 3, 1, 2)
    assert costs.spend_eur == Decimal("5.00")
    assert costs.direct_eur is None and costs.savings_eur is None  # a delivery had none
    totals = stock.totals(conn)
    assert (totals.received, totals.issued, totals.lost, totals.replaced) == (15, 3, 1, 2)
    assert totals.known_savings_eur == Decimal("13.00")  # 5 × (3.00 - 0.40)
