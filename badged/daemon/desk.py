"""The enrolment desk: requests from the control socket waiting for a tap.

`badged enrol` asks the daemon to wait for the next card on an enrolment reader; the
reader thread offers each enrolment tap to the oldest waiting request that accepts the
reader. A tap nobody waits for is only recorded.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from ..cards.pcsc import match_readers
from ..cards.profile import CardRead, CardReadError


@dataclass
class _Waiter:
    reader: str | None
    done: threading.Event = field(default_factory=threading.Event)
    read: CardRead | CardReadError | None = None


class Desk:
    def __init__(self) -> None:
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiters)

    def wait(self, reader: str | None, timeout: float,
             cancelled: threading.Event | None = None) -> CardRead | CardReadError | None:
        """The next tap on an enrolment reader matching `reader`: its read, or the error
        of a card that was tapped but could not be read; None on timeout/cancel."""
        waiter = _Waiter(reader)
        with self._lock:
            self._waiters.append(waiter)
        try:
            end = threading.Event() if cancelled is None else cancelled
            step, left = 0.2, timeout
            while left > 0 and not waiter.done.is_set() and not end.is_set():
                waiter.done.wait(min(step, left))
                left -= step
            return waiter.read
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def offer(self, read: CardRead | CardReadError) -> bool:
        """Hand a tap (or its read error) to the oldest request accepting its reader;
        False if none waits."""
        with self._lock:
            for waiter in self._waiters:
                if waiter.reader is None or match_readers(waiter.reader, [read.reader]):
                    self._waiters.remove(waiter)
                    waiter.read = read
                    waiter.done.set()
                    return True
        return False
