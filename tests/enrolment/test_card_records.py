"""Cards on a host (badged.enrolment.card_records): a card's record with its CROUS numbers
and history, and an operator's state change with what the CROUS is told."""

from __future__ import annotations

from contextlib import closing

import pytest

from badged.config.host import Host
from badged.enrolment.card_records import StateChanged, card_records, set_card_state
from badged.enrolment.lifecycle import LifecycleError
from badged.store import cards, people
from badged.store.db import open_store

CSN, OTHER = "04112233445566", "04AABBCCDDEEFF"


@pytest.fixture
def linked(host: Host) -> Host:
    """s1 holds CSN (CROUS number from the card) and OTHER (number from the CROUS CSV)."""
    with closing(open_store(host.state_dir)) as conn, conn:
        people.upsert(conn, people.Person(id="s1", last_name="Doe", first_name="X",
                                          category="student"))
        cards.link(conn, CSN, "s1", 249760531028417)
        cards.link(conn, OTHER, "s1", None)
        conn.execute(
            "INSERT INTO crous_cards VALUES (?, ?, 36000001, '03', '0000', 'D1', '', '', '', "
            "101, 1, '2026-09-01', '2026-09-02', 'x.csv')", (OTHER, OTHER))
    return host


def test_a_card_by_csn_or_a_persons_cards(linked: Host) -> None:
    (one,) = card_records(linked, csn=OTHER.lower())
    assert (one["csn"], one["person_id"], one["crous_number"], one["crous_csv_number"]) == (
        OTHER, "s1", None, 36000001)
    assert [(h["old_state"], h["new_state"], h["reason"]) for h in one["history"]] == [
        (None, "active", "enrolled")]
    held = card_records(linked, person_id="s1")
    assert sorted(c["csn"] for c in held) == [CSN, OTHER]
    assert card_records(linked, csn="04000000000000") == []
    assert card_records(linked, person_id="nobody") == []


def test_a_state_change_says_what_the_crous_is_told(linked: Host) -> None:
    assert set_card_state(linked, CSN.lower(), "lost", "bus", who="desk") == StateChanged(
        CSN, "lost", "DP")
    assert set_card_state(linked, CSN, "active", "found") == StateChanged(CSN, "active", None)
    (card,) = card_records(linked, csn=CSN)
    assert [(h["new_state"], h["actor"], h["crous_reason"]) for h in card["history"]][1:] == [
        ("lost", "desk", "DP"), ("active", card["history"][2]["actor"], None)]
    with pytest.raises(LifecycleError, match="unknown card 04000000000000"):
        set_card_state(linked, "04000000000000", "lost")
