"""Readers and hot-plug: list and match readers, wait for a card (or its removal), and
`ReaderWatcher`, the reader and card events a reader thread follows.

Waiting is always done by pcscd (`SCardGetStatusChange`), never by sleeping: a tap is seen
as soon as pcscd sees it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from types import TracebackType
from typing import Self

from smartcard import scard

from .context import CHANGED, GONE, INFINITE_MS, OK, PRESENT, establish, list_names, ms, release
from .errors import (
    AmbiguousReader,
    CardTimeout,
    PcscError,
    ReaderGone,
    ReaderNotFound,
    check,
    error_for,
)

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
"""Pseudo-reader whose state changes when a reader is plugged or unplugged (pcsc-lite ≥ 1.6)."""

_PNP_FALLBACK_TICK = 1.0  # re-list period when the PC/SC stack has no PnP notification
_RELIST_TICK = 2.0  # pcsc-lite 1.9.9 PnP counts readers: a swap between two calls is missed


def list_readers() -> list[str]:
    """Names of the readers pcscd knows now (empty when none is plugged)."""
    ctx = establish()
    try:
        return list_names(ctx)
    finally:
        release(ctx)


def match_readers(pattern: str | None, readers: list[str]) -> list[str]:
    """Readers named `pattern`, else matching it as a glob (`fnmatch`, case-sensitive).

    An exact name wins even when it contains glob characters; None matches every reader.
    """
    if pattern is None:
        return list(readers)
    if pattern in readers:
        return [pattern]
    return [r for r in readers if fnmatchcase(r, pattern)]


def select_reader(pattern: str | None = None, readers: list[str] | None = None) -> str:
    """The one reader matching `pattern` (exact name or glob); None: the only reader."""
    readers = list_readers() if readers is None else readers
    found = match_readers(pattern, readers)
    if len(found) == 1:
        return found[0]
    known = ", ".join(repr(r) for r in readers) or "none"
    wanted = "any reader" if pattern is None else f"reader pattern {pattern!r}"
    if not found:
        raise ReaderNotFound(f"no reader matches {wanted} (readers: {known})")
    raise AmbiguousReader(
        f"{wanted} matches {len(found)} readers ({', '.join(map(repr, found))}): "
        "give an exact name or a narrower pattern"
    )


def wait_for_card(pattern: str | None = None, timeout: float | None = None) -> str:
    """The first reader matching `pattern` that has (or gets) a card.

    A card already present returns at once. When no reader matches `pattern` at the
    start, ReaderNotFound at once, naming the readers present: waiting for a tap on a
    reader that is not there would only end in a misleading timeout. Once one matches,
    readers plugged while waiting count too.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with ReaderWatcher(pattern, retry=False) as watcher:
        first = True
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            for event in watcher.poll(INFINITE_MS / 1000 if left is None else left):
                if event.kind is EventKind.PCSC_DOWN and event.error is not None:
                    raise event.error
                if event.kind is EventKind.CARD_INSERTED and event.reader is not None:
                    return event.reader
            if first and watcher.available and not watcher.readers:
                select_reader(pattern)  # raises ReaderNotFound listing the readers
            first = False
            if deadline is not None and time.monotonic() >= deadline:
                where = ", ".join(repr(r) for r in sorted(watcher.readers)) or (
                    "any reader" if pattern is None else f"a reader matching {pattern!r}")
                raise CardTimeout(f"no card on {where} after {timeout:g} s")


def wait_for_removal(reader: str, timeout: float | None = None) -> None:
    """Return once `reader` has no card; ReaderGone if the reader itself goes away."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ctx = establish()
    try:
        state = scard.SCARD_STATE_UNAWARE
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            rv, states = scard.SCardGetStatusChange(ctx, ms(left), [(reader, state)])
            if rv == scard.SCARD_E_TIMEOUT:
                raise CardTimeout(f"card still present after {timeout:g} s", reader=reader)
            check(rv, reader, "cannot watch the reader")
            event = states[0][1]
            if event & GONE:
                raise ReaderGone("reader went away while waiting for card removal", reader=reader)
            if not event & PRESENT:
                return
            state = event & ~CHANGED
    finally:
        release(ctx)


# --- watcher -------------------------------------------------------------------------------


class EventKind(StrEnum):
    PCSC_UP = "pcsc-up"
    PCSC_DOWN = "pcsc-down"
    READER_ADDED = "reader-added"
    READER_REMOVED = "reader-removed"
    CARD_INSERTED = "card-inserted"
    CARD_REMOVED = "card-removed"


@dataclass(frozen=True, slots=True)
class ReaderEvent:
    kind: EventKind
    reader: str | None = None
    atr: bytes | None = None  # CARD_INSERTED only
    error: PcscError | None = None  # PCSC_DOWN only


class ReaderWatcher:
    """Reader and card events for the readers matching `pattern`, for a reader thread.

    `poll(timeout)` returns the events seen (empty on timeout) so the caller can heartbeat
    between calls. The first poll reports the current situation (PCSC_UP, READER_ADDED, and
    CARD_INSERTED for cards already there). When pcscd goes away the watcher reports
    CARD_REMOVED/READER_REMOVED for what it knew and PCSC_DOWN, then retries every
    `retry_interval` s and reports PCSC_UP and the readers again once pcscd is back.
    With `retry=False` it does not retry: PCSC_DOWN is reported on each poll instead.
    `close()` may be called from another thread: it wakes a poll in progress.
    """

    def __init__(
        self, pattern: str | None = None, *, retry_interval: float = 1.0, retry: bool = True
    ) -> None:
        self.pattern = pattern
        self.retry_interval = retry_interval
        self.retry = retry
        self._ctx: int | None = None
        self._states: dict[str, int] = {}  # reader → last event state (CHANGED cleared)
        self._atrs: dict[str, bytes] = {}  # reader → ATR of the card present
        self._pnp: int | None = 0  # PnP pseudo-reader state; None: not supported
        self._up = False
        self._down_reported = False
        self._lock = threading.Lock()
        self._polling = False
        self._closed = threading.Event()

    @property
    def readers(self) -> dict[str, bytes | None]:
        """Known readers → ATR of the card present (None: no card)."""
        return {r: self._atrs.get(r) for r in self._states}

    @property
    def available(self) -> bool:
        """pcscd answered the last call."""
        return self._up

    def poll(self, timeout: float) -> list[ReaderEvent]:
        """Events seen within `timeout` seconds; returns as soon as there is one."""
        with self._lock:
            if self._polling:
                raise RuntimeError("ReaderWatcher.poll is not reentrant")
            self._polling = True
        try:
            return self._poll(time.monotonic() + timeout)
        finally:
            with self._lock:
                self._polling = False
                if self._closed.is_set():
                    self._drop_context()

    def events(self, tick: float = 1.0) -> Iterator[ReaderEvent | None]:
        """Yield events forever (until `close()`), and None after each quiet `tick`."""
        while not self._closed.is_set():
            found = self.poll(tick)
            if found:
                yield from found
            elif not self._closed.is_set():
                yield None

    def close(self) -> None:
        """Stop watching; thread-safe, wakes a poll in progress (SCardCancel)."""
        with self._lock:
            self._closed.set()
            if self._ctx is None:
                return
            if self._polling:
                scard.SCardCancel(self._ctx)  # poll() releases the context on its way out
            else:
                self._drop_context()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # internals

    def _drop_context(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            release(ctx)

    def _poll(self, deadline: float) -> list[ReaderEvent]:
        events: list[ReaderEvent] = []
        while not self._closed.is_set():
            if self._ctx is None:
                self._connect(events, deadline)
                if self._ctx is None:
                    if events or not self.retry or time.monotonic() >= deadline:
                        return events
                    continue
            if self._closed.is_set():
                break
            try:
                self._relist(events)
                left = 0.0 if events else max(0.0, deadline - time.monotonic())
                self._wait(events, left)  # new readers answer at once (state UNAWARE)
            except PcscError as err:  # pcscd gone, or a context in a state we cannot trust
                self._lose(events, err)
            if events or time.monotonic() >= deadline:
                return events
        return events

    def _connect(self, events: list[ReaderEvent], deadline: float) -> None:
        try:
            self._ctx = establish()
        except PcscError as err:
            if not self._down_reported or not self.retry:
                self._down_reported = True
                events.append(ReaderEvent(EventKind.PCSC_DOWN, error=err))
            else:  # pcscd cannot be waited on while it is away: retry at a slow pace
                self._closed.wait(max(0.0, min(self.retry_interval, deadline - time.monotonic())))
            return
        self._up, self._down_reported = True, False
        if self._pnp is not None:
            self._pnp = 0
        events.append(ReaderEvent(EventKind.PCSC_UP))

    def _lose(self, events: list[ReaderEvent], err: PcscError) -> None:
        """pcscd went away: everything we knew is gone with it."""
        for reader in sorted(self._states):
            self._forget(reader, events)
        with self._lock:
            self._drop_context()
        self._up, self._down_reported = False, True
        events.append(ReaderEvent(EventKind.PCSC_DOWN, error=err))

    def _forget(self, reader: str, events: list[ReaderEvent]) -> None:
        state = self._states.pop(reader)
        self._atrs.pop(reader, None)
        if state & PRESENT:
            events.append(ReaderEvent(EventKind.CARD_REMOVED, reader))
        events.append(ReaderEvent(EventKind.READER_REMOVED, reader))

    def _relist(self, events: list[ReaderEvent]) -> None:
        assert self._ctx is not None
        names = match_readers(self.pattern, list_names(self._ctx))
        for reader in sorted(set(self._states) - set(names)):
            self._forget(reader, events)
        for reader in names:
            if reader not in self._states:
                self._states[reader] = scard.SCARD_STATE_UNAWARE
                events.append(ReaderEvent(EventKind.READER_ADDED, reader))

    def _wait(self, events: list[ReaderEvent], left: float) -> None:
        """One SCardGetStatusChange on the known readers (+ PnP); turns changes into events."""
        assert self._ctx is not None
        tick = _PNP_FALLBACK_TICK if self._pnp is None else _RELIST_TICK
        query = [(r, s) for r, s in self._states.items()]
        if self._pnp is not None:
            query.append((PNP_NOTIFICATION, self._pnp))
        if not query:  # no reader and no PnP notification: nothing to wait on but time
            self._closed.wait(min(left, tick))
            return
        rv, states = scard.SCardGetStatusChange(self._ctx, ms(min(left, tick)), query)
        if rv == scard.SCARD_E_UNKNOWN_READER and self._pnp is not None and not self._has_pnp():
            self._pnp = None  # a PC/SC stack without PnP notification: re-list on ticks
            return
        if rv in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
            return
        err = error_for(rv, None, "cannot watch the readers") if rv != OK else None
        if isinstance(err, ReaderGone):
            return  # a reader vanished between list and wait: re-list
        if err is not None:
            raise err
        for reader, event, atr in states:
            if reader == PNP_NOTIFICATION:
                self._pnp = event & ~CHANGED  # pcsc-lite ≥ 2.0 counts readers in the high word
                continue
            if reader not in self._states or event & GONE:
                continue  # re-listed on the next round
            self._card_events(reader, event, bytes(atr), events)

    def _has_pnp(self) -> bool:
        assert self._ctx is not None
        query = [(PNP_NOTIFICATION, scard.SCARD_STATE_UNAWARE)]
        rv, _ = scard.SCardGetStatusChange(self._ctx, 0, query)
        return rv != scard.SCARD_E_UNKNOWN_READER

    def _card_events(self, reader: str, event: int, atr: bytes, events: list[ReaderEvent]) -> None:
        before = self._states[reader]
        self._states[reader] = event & ~CHANGED
        was, now = bool(before & PRESENT), bool(event & PRESENT)
        swapped = was and now and before >> 16 != event >> 16  # out and in between two calls
        if was and (not now or swapped):
            self._atrs.pop(reader, None)
            events.append(ReaderEvent(EventKind.CARD_REMOVED, reader))
        if now and (not was or swapped):
            self._atrs[reader] = atr
            events.append(ReaderEvent(EventKind.CARD_INSERTED, reader, atr=atr))
