"""Cards on a host: a card's record (holder, CROUS numbers, state history), and a state
change asked by an operator (`badged card show`, `badged card set-state`).

Each function opens the host's store itself and returns plain data, so that the command
line and the daemon's control socket can both call it.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import asdict, dataclass
from typing import Any

from ..config.host import Host
from ..crous.cancel import cancel_reason
from ..store import cards
from ..store.db import open_store
from .lifecycle import change_state


@dataclass(frozen=True)
class StateChanged:
    """A card's new state, and what the CROUS is told of it (queued)."""

    csn: str
    state: str
    crous_cancel_reason: str | None  # None: a revalidation


def card_records(host: Host, *, csn: str | None = None,
                 person_id: str | None = None) -> list[dict[str, Any]]:
    """The card `csn`, or every card of `person_id` (oldest first): its fields, the CROUS
    number the CROUS card CSV gives for it (`crous_csv_number`) and its state changes
    (`history`, oldest first). Empty when there is none."""
    with closing(open_store(host.state_dir)) as conn:
        found = [cards.get(conn, csn)] if csn else cards.for_person(conn, person_id or "")
        return [{**asdict(c), "crous_csv_number": cards.crous_number_for(conn, c.csn),
                 "history": [asdict(h) for h in cards.history(conn, c.csn)]}
                for c in found if c is not None]


def set_card_state(host: Host, csn: str, state: str, reason: str | None = None,
                   who: str | None = None) -> StateChanged:
    """Move a card to `state`, recorded (who, when, why) and queued for the CROUS;
    `LifecycleError` when the card is unknown or the change not allowed."""
    with closing(open_store(host.state_dir)) as conn:
        updated = change_state(conn, csn, state, reason, who)
    return StateChanged(updated.csn, updated.state, cancel_reason(updated.state))
