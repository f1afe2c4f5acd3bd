"""Card life cycle: which state changes are allowed, each recorded and queued for the CROUS.

A card is active until it is lost, stolen, broken or expires; a lost or stolen card that
turns up, or an expired one revalidated, becomes active again; destroyed is final.
"""

from __future__ import annotations

import getpass
import os
import sqlite3

from ..crous.cancel import cancel_reason
from ..store import cards

STATES = cards.STATES
TRANSITIONS: dict[str, frozenset[str]] = {
    "active": frozenset({"lost", "stolen", "broken", "expired", "destroyed"}),
    "lost": frozenset({"active", "stolen", "destroyed"}),
    "stolen": frozenset({"active", "destroyed"}),
    "broken": frozenset({"destroyed"}),
    "expired": frozenset({"active", "destroyed"}),
    "destroyed": frozenset(),
}


class LifecycleError(Exception):
    """A refused state change (unknown card, forbidden transition)."""


def actor() -> str:
    """Who is acting: the sudo caller if any, else the login (recorded with each change)."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def change_state(conn: sqlite3.Connection, csn: str, new: str, reason: str | None = None,
                 who: str | None = None) -> cards.Card:
    """Move a card to `new`, in one transaction; LifecycleError if not allowed."""
    csn = csn.upper()
    if new not in STATES:
        raise LifecycleError(f"unknown state {new!r} (states: {', '.join(STATES)})")
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        card = cards.get(conn, csn)
        if card is None:
            raise LifecycleError(f"unknown card {csn}")
        if new == card.state:
            raise LifecycleError(f"card {csn} is already {new}")
        if new not in TRANSITIONS[card.state]:
            allowed = ", ".join(sorted(TRANSITIONS[card.state])) or "none: it is final"
            raise LifecycleError(f"card {csn} is {card.state}: it cannot become {new} "
                                 f"(allowed: {allowed})")
        cards.set_state(conn, csn, card.state, new, reason, who or actor(), cancel_reason(new))
    updated = cards.get(conn, csn)
    assert updated is not None
    return updated
