"""Card life cycle: allowed transitions, each recorded and queued with the CROUS reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from badged.enrolment.lifecycle import TRANSITIONS, LifecycleError, change_state
from badged.store import cards, people
from badged.store.db import open_store

CSN = "04112233445566"


@pytest.fixture
def conn(tmp_path: Path):
    c = open_store(tmp_path)
    people.upsert(c, people.Person(id="s1", last_name="D", first_name="X", category="student"))
    cards.link(c, CSN, "s1", 36000000)
    return c


@pytest.mark.parametrize(("state", "code"), [("lost", "DP"), ("stolen", "DV"),
                                             ("broken", "CD"), ("expired", "HS"),
                                             ("destroyed", "HS")])
def test_cancel_reasons(conn, state: str, code: str) -> None:
    change_state(conn, CSN, state, "why not", who="registrar")
    last = cards.history(conn, CSN)[-1]
    assert (last.old_state, last.new_state, last.crous_reason, last.actor, last.reason) == (
        "active", state, code, "registrar", "why not")
    assert last.crous_sent_at is None
    assert [c.new_state for c in cards.unsent_changes(conn)] == ["active", state]


def test_found_again_is_a_revalidation(conn) -> None:
    change_state(conn, CSN.lower(), "lost")
    change_state(conn, CSN, "active", "found at the desk")
    assert cards.history(conn, CSN)[-1].crous_reason is None
    assert cards.get(conn, CSN).state == "active"


@pytest.mark.parametrize(("start", "target"), [("broken", "active"), ("destroyed", "active"),
                                               ("stolen", "lost")])
def test_forbidden_transitions_change_nothing(conn, start: str, target: str) -> None:
    if start == "destroyed":
        change_state(conn, CSN, "destroyed")
    else:
        change_state(conn, CSN, start)
    before = cards.history(conn, CSN)
    with pytest.raises(LifecycleError, match=f"card {CSN} is {start}: it cannot become "
                       f"{target}"):
        change_state(conn, CSN, target)
    assert cards.history(conn, CSN) == before
    assert not conn.in_transaction


def test_unknown_card_and_state(conn) -> None:
    with pytest.raises(LifecycleError, match="unknown card 04FF"):
        change_state(conn, "04ff", "lost")
    with pytest.raises(LifecycleError, match="unknown state 'gone'"):
        change_state(conn, CSN, "gone")


def test_destroyed_is_final() -> None:
    assert TRANSITIONS["destroyed"] == frozenset()
