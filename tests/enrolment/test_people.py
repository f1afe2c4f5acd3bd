"""People on a host (badged.enrolment.people): added by hand, updated without losing what
the registry knows, shown with their cards."""

from __future__ import annotations

from contextlib import closing

from badged.config.host import Host
from badged.enrolment.people import add_person, person_record
from badged.store import cards, people
from badged.store.db import open_store


def test_add_then_update_keeps_what_is_not_given(host: Host) -> None:
    with closing(open_store(host.state_dir)) as conn:  # as the registry import leaves it
        people.upsert(conn, people.Person(id="s1", last_name="Martin", first_name="Alex",
                                          category="student", email="alex@example.org",
                                          academic_year=2026, source="students"))
    assert add_person(host, "s1", last_name="Martin-Roy", first_name="Alex",
                      category="student", ine="0912345678K") is True
    assert add_person(host, "p1", last_name="Doe", first_name="Jo", category="staff") is False
    with closing(open_store(host.state_dir)) as conn:
        s1, p1 = people.get(conn, "s1"), people.get(conn, "p1")
    assert (s1.last_name, s1.ine, s1.email, s1.academic_year, s1.source) == (
        "Martin-Roy", "0912345678K", "alex@example.org", 2026, "manual")
    assert (p1.last_name, p1.category, p1.email, p1.source) == ("Doe", "staff", None, "manual")


def test_a_record_holds_the_person_and_their_cards(host: Host) -> None:
    assert person_record(host, "nobody") is None
    add_person(host, "s1", last_name="Martin", first_name="Alex", category="student")
    with closing(open_store(host.state_dir)) as conn, conn:
        cards.link(conn, "04112233445566", "s1", 249760531028417)
    record = person_record(host, "s1")
    assert record is not None
    assert (record.person["id"], record.person["last_name"], record.person["ine"]) == (
        "s1", "Martin", None)
    assert [(c["csn"], c["state"], c["crous_number"]) for c in record.cards] == [
        ("04112233445566", "active", 249760531028417)]
    assert record.to_json() == {**record.person, "cards": record.cards}
