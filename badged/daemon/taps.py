"""What the daemon does with each reader event: metrics, the events journal, the roles.

Called from the reader thread. A lookup tap answers who holds the card and its state; an
enrolment tap goes to the desk (a waiting `badged enrol`) or is only recorded. Events keep
the card's link (CSN, person id), never names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..cards.profile import CardRead, CardReadError
from ..config.model import ReaderRole
from ..store import cards, events, people
from ..store.db import SharedStore
from .desk import Desk
from .metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tap:
    """A tap as `badged status` shows it."""

    at: float
    reader: str
    role: str
    csn: str | None
    outcome: str
    person_id: str | None = None
    state: str | None = None


class Taps:
    """The reader thread's handler (see `badged.cards.reader_service.TapHandler`)."""

    def __init__(self, store: SharedStore, metrics: Metrics, desk: Desk) -> None:
        self.store, self.metrics, self.desk = store, metrics, desk
        self.readers: dict[str, bool] = {}
        self.sams: dict[str, bool] = {}
        self.pcsc_up = False
        self.last: deque[Tap] = deque(maxlen=20)
        self._lock = threading.Lock()
        self.on_change: Callable[[], None] = lambda: None  # pcscd, a reader or a SAM changed

    def on_read(self, label: str, role: ReaderRole, read: CardRead) -> None:
        self.metrics.card_read(label, read.duration_ms / 1000)
        if role is ReaderRole.LOOKUP:
            outcome = self._lookup(read)
        elif self.desk.offer(read):
            outcome = "handed to enrolment"
        else:
            outcome = "no enrolment waiting"
        with self.store.use() as conn:
            events.add(conn, "tap", reader=label, csn=read.csn,
                       detail={"role": role.value, "outcome": outcome,
                               "apdus": read.apdus, "person_id": _person_id(read)})
        # The holder's id stays out of the journal at INFO (personal data).
        log.info("tap on %r (%s): card %s, %s", read.reader, role.value, read.csn,
                 outcome.split(", holder ")[0])
        self._remember(Tap(time.time(), label, role.value, read.csn, outcome,
                           _person_id(read), (read.person or {}).get("card_state")))

    def _lookup(self, read: CardRead) -> str:
        with self.store.use() as conn:
            card = cards.get(conn, read.csn)
            person = people.get(conn, card.person_id) if card and card.person_id else None
        if card is None:
            return "unknown card"
        read.person = {"id": card.person_id, "card_state": card.state,
                       "category": person.category if person else None}
        return f"card {card.state}" + (f", holder {card.person_id}" if card.person_id else "")

    def on_read_error(self, label: str, role: ReaderRole, error: CardReadError) -> None:
        self.metrics.card_read_error(label, error.reason)
        if role is ReaderRole.ENROLMENT:
            self.desk.offer(error)  # a waiting `badged enrol` learns why, at once
        with self.store.use() as conn:
            events.add(conn, "read-error", reader=label, detail={"error": error.detail})
        self._remember(Tap(time.time(), label, role.value, None, f"error: {error.detail}"))

    def on_reader(self, label: str, up: bool) -> None:
        self.metrics.reader_up(label, up)
        with self._lock:
            self.readers[label] = up
        self.on_change()

    def on_sam(self, label: str, up: bool) -> None:
        self.metrics.sam_up(label, up)
        with self._lock:
            self.sams[label] = up
        self.on_change()

    def forget(self, label: str) -> None:
        """A reader rule dropped by a reload: its series and state go."""
        self.metrics.forget_reader(label)
        with self._lock:
            self.readers.pop(label, None)
            self.sams.pop(label, None)

    def on_pcsc(self, up: bool) -> None:
        with self._lock:
            self.pcsc_up = up
        self.on_change()

    def _remember(self, tap: Tap) -> None:
        with self._lock:
            self.last.append(tap)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"pcscd": self.pcsc_up, "readers": dict(self.readers),
                    "sams": dict(self.sams), "last_taps": [t.__dict__ for t in self.last]}


def _person_id(read: CardRead) -> str | None:
    return (read.person or {}).get("id")
