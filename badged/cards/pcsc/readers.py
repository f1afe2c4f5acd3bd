"""PC/SC transport on pyscard's low-level API: readers, hot-plug, card events, transmit.

Every PC/SC failure becomes a typed `PcscError` whose message is one line naming the reader
and the PC/SC code (name and hex), so the daemon can count, log and recover without parsing
pyscard exceptions. Waiting is always done by pcscd (`SCardGetStatusChange`), never by
sleeping: a tap is seen as soon as pcscd sees it.

Each call that waits or connects owns its PC/SC context: pcsc-lite serialises calls on one
context, so sharing one between threads would make a reader thread block a card read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from types import TracebackType
from typing import Any, Self, TypeVar

from smartcard import scard

log = logging.getLogger(__name__)

PNP_NOTIFICATION = "\\\\?PnP?\\Notification"
"""Pseudo-reader whose state changes when a reader is plugged or unplugged (pcsc-lite ≥ 1.6)."""

_PNP_FALLBACK_TICK = 1.0  # re-list period when the PC/SC stack has no PnP notification
_RELIST_TICK = 2.0  # pcsc-lite 1.9.9 PnP counts readers: a swap between two calls is missed
_REMOVAL_GRACE = 0.6  # pcscd polls vpcd/readers every 400 ms: how long to wait for it to notice
TRANSACTION_WAIT = 5.0  # how long a read waits for another program's read of the same card
_INFINITE_MS = 0x7FFFFFFF

_OK = scard.SCARD_S_SUCCESS
_CHANGED = scard.SCARD_STATE_CHANGED
_PRESENT = scard.SCARD_STATE_PRESENT
_GONE = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE

_CODE_NAMES: dict[int, str] = {}
for _name in sorted(dir(scard)):
    if _name.startswith(("SCARD_E_", "SCARD_F_", "SCARD_P_", "SCARD_W_")):
        _CODE_NAMES.setdefault(getattr(scard, _name) & 0xFFFFFFFF, _name)


def code_name(code: int) -> str:
    """`SCARD_E_NO_SMARTCARD` for 0x8010000C; `SCARD_UNKNOWN` for a code pyscard does not name."""
    return _CODE_NAMES.get(code & 0xFFFFFFFF, "SCARD_UNKNOWN")


# --- errors --------------------------------------------------------------------------------


class PcscError(Exception):
    """A PC/SC failure: `reader` (or None) and `code` (the PC/SC return code, or None)."""

    def __init__(self, message: str, *, reader: str | None = None, code: int | None = None):
        self.reader = reader
        self.code = None if code is None else code & 0xFFFFFFFF
        self.reason = message
        where = f"reader {reader!r}: " if reader else ""
        what = "" if self.code is None else f" ({code_name(self.code)} 0x{self.code:08X})"
        super().__init__(f"{where}{message}{what}")


class PcscUnavailable(PcscError):  # noqa: N818 (names fixed by the design)
    """pcscd is not running, or went away (the context is lost)."""


class ReaderNotFound(PcscError):  # noqa: N818
    """No reader matches the requested name or pattern."""


class AmbiguousReader(PcscError):  # noqa: N818
    """Several readers match a pattern where exactly one is needed."""


class NoCard(PcscError):  # noqa: N818
    """No card on the reader."""


class CardRemoved(PcscError):  # noqa: N818
    """The card left the reader (before or during an exchange)."""


class TransactionFailed(PcscError):  # noqa: N818
    """The reader or the card failed an exchange with the card still present."""


class ReaderGone(PcscError):  # noqa: N818
    """The reader was unplugged or pcscd lost it."""


class CardTimeout(PcscError):  # noqa: N818
    """Waiting for a card (or for its removal) timed out."""


class ReaderBusy(PcscError):  # noqa: N818
    """Another program held the card (a PC/SC transaction) longer than we would wait."""


_UNAVAILABLE = {
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_F_COMM_ERROR,
    scard.SCARD_E_INVALID_HANDLE,
    # pcsc-lite reports EPIPE on its socket so: pcscd closed the connection (dying, or polkit)
    scard.SCARD_W_SECURITY_VIOLATION,
}
_GONE_CODES = {
    scard.SCARD_E_UNKNOWN_READER,
    scard.SCARD_E_READER_UNAVAILABLE,
    scard.SCARD_E_NO_READERS_AVAILABLE,
}
_CLASSES: dict[int, type[PcscError]] = {
    **{c & 0xFFFFFFFF: PcscUnavailable for c in _UNAVAILABLE},
    **{c & 0xFFFFFFFF: ReaderGone for c in _GONE_CODES},
    scard.SCARD_E_NO_SMARTCARD & 0xFFFFFFFF: NoCard,
    scard.SCARD_W_REMOVED_CARD & 0xFFFFFFFF: CardRemoved,
    scard.SCARD_E_TIMEOUT & 0xFFFFFFFF: CardTimeout,
}


def error_for(code: int, reader: str | None, doing: str) -> PcscError:
    """The typed error for a PC/SC return code; anything unclassified is TransactionFailed."""
    code &= 0xFFFFFFFF
    cls = _CLASSES.get(code, TransactionFailed)
    if cls is PcscUnavailable and code in (scard.SCARD_E_NO_SERVICE, scard.SCARD_F_COMM_ERROR):
        doing = f"{doing}: pcscd is not running or went away"
    elif code == scard.SCARD_W_SECURITY_VIOLATION & 0xFFFFFFFF:
        doing = f"{doing}: pcscd closed the connection (stopping, or access denied by polkit)"
    return cls(doing, reader=reader, code=code)


def _check(rv: int, reader: str | None, doing: str) -> None:
    if rv != _OK:
        raise error_for(rv, reader, doing)


# --- contexts and readers ------------------------------------------------------------------


def _establish() -> int:
    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    _check(rv, None, "cannot reach pcscd")
    return ctx


def _release(ctx: int) -> None:
    scard.SCardReleaseContext(ctx)  # fails harmlessly when pcscd already dropped it


def _list(ctx: int) -> list[str]:
    rv, names = scard.SCardListReaders(ctx, [])
    if rv in (scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_READER_UNAVAILABLE):
        return []
    _check(rv, None, "cannot list readers")
    return list(names)


def _ms(seconds: float | None) -> int:
    if seconds is None:
        return _INFINITE_MS
    return max(0, min(_INFINITE_MS, int(seconds * 1000)))


def list_readers() -> list[str]:
    """Names of the readers pcscd knows now (empty when none is plugged)."""
    ctx = _establish()
    try:
        return _list(ctx)
    finally:
        _release(ctx)


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
            for event in watcher.poll(_INFINITE_MS / 1000 if left is None else left):
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
    ctx = _establish()
    try:
        state = scard.SCARD_STATE_UNAWARE
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            rv, states = scard.SCardGetStatusChange(ctx, _ms(left), [(reader, state)])
            if rv == scard.SCARD_E_TIMEOUT:
                raise CardTimeout(f"card still present after {timeout:g} s", reader=reader)
            _check(rv, reader, "cannot watch the reader")
            event = states[0][1]
            if event & _GONE:
                raise ReaderGone("reader went away while waiting for card removal", reader=reader)
            if not event & _PRESENT:
                return
            state = event & ~_CHANGED
    finally:
        _release(ctx)


# --- card connection -----------------------------------------------------------------------


class CardConnection:
    """One card on one reader (shared mode, T=0 or T=1), with exchange counters.

    `apdu_count` counts transmit calls and `transmit_seconds` the time spent inside them, so
    a benchmark can tell the reader's own overhead from the card stack's.

    Shared mode lets several programs use the card; `with conn.transaction():` makes a
    sequence of exchanges (a whole read: select, authenticate, read) theirs alone, so that
    another program's commands cannot interleave and break its secure-messaging session.
    """

    def __init__(self, reader: str, *, exclusive: bool = False) -> None:
        self.reader = reader
        self.apdu_count = 0
        self.transmit_seconds = 0.0
        self._card: int | None = None
        self._ctx: int | None = _establish()
        try:
            share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
            protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
            rv, card, self.protocol = scard.SCardConnect(self._ctx, reader, share, protocols)
            _check(rv, reader, "cannot connect to the card")
            self._card = card
            rv, _name, _state, _proto, atr = scard.SCardStatus(card)
            _check(rv, reader, "cannot read the card status")
            self.atr = bytes(atr)
            # Reader state at connect (card event counter in the high word): lets a failed
            # transmit tell "card pulled" from "exchange failed".
            rv, states = scard.SCardGetStatusChange(
                self._ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
            )
            _check(rv, reader, "cannot read the reader state")
            self._state = states[0][1] & ~_CHANGED
        except BaseException:
            self.disconnect()
            raise

    @property
    def connected(self) -> bool:
        return self._card is not None

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; return the response data followed by SW1 SW2."""
        if self._card is None:
            raise TransactionFailed("not connected", reader=self.reader)
        start = time.perf_counter()
        try:
            rv, response = scard.SCardTransmit(self._card, self.protocol, list(apdu))
        finally:
            self.transmit_seconds += time.perf_counter() - start
            self.apdu_count += 1
        if rv != _OK:
            raise self._transmit_error(rv)
        if len(response) < 2:
            # vpcd (and flaky readers) can report success with no status word when the card
            # vanishes mid-exchange: never hand that on as a response.
            if self._card_left():
                raise CardRemoved(
                    "card removed during an exchange (no status word)", reader=self.reader
                )
            raise TransactionFailed(
                f"response of {len(response)} byte(s), no status word", reader=self.reader
            )
        return bytes(response)

    @contextmanager
    def transaction(self, wait: float = TRANSACTION_WAIT) -> Iterator[Self]:
        """Hold the card (SCardBeginTransaction … SCardEndTransaction) for the block; at
        most `wait` seconds behind another program's transaction, then ReaderBusy (the
        connection is then handed to a helper thread: see `_bounded`)."""
        card = self._card
        if card is None:
            raise TransactionFailed("not connected", reader=self.reader)

        def begin() -> CardConnection:
            _begin_transaction(card, self.reader)
            return self

        def undo(_: CardConnection) -> None:
            scard.SCardEndTransaction(card, scard.SCARD_LEAVE_CARD)

        def give_up() -> None:
            # The handle is no longer ours (our disconnect becomes a no-op); releasing it
            # queues behind the pending call, so a thread does it.
            ctx, self._card, self._ctx = self._ctx, None, None

            def release() -> None:
                scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
                if ctx is not None:
                    _release(ctx)

            threading.Thread(target=release, name="pcsc-release", daemon=True).start()

        _bounded(begin, self.reader, wait, undo=undo, abandon=give_up)
        try:
            yield self
        finally:
            _end_transaction(self)

    def _transmit_error(self, rv: int) -> PcscError:
        if rv == scard.SCARD_E_NOT_TRANSACTED and self._card_left():
            # Right after a pull, pcsc-lite reports "not transacted" until its next poll.
            return CardRemoved("card removed during an exchange", reader=self.reader, code=rv)
        if rv in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD):
            return CardRemoved("card removed", reader=self.reader, code=rv)
        return error_for(rv, self.reader, "exchange with the card failed")

    def _card_left(self) -> bool:
        """Wait (on pcscd, at most one poll period) for the card to be seen gone."""
        deadline = time.monotonic() + _REMOVAL_GRACE
        state = self._state
        while True:
            left = max(0.0, deadline - time.monotonic())
            rv, states = scard.SCardGetStatusChange(self._ctx, _ms(left), [(self.reader, state)])
            if rv == scard.SCARD_E_TIMEOUT:
                return False
            if rv != _OK:
                err = error_for(rv, self.reader, "exchange with the card failed")
                if isinstance(err, PcscUnavailable):
                    raise err
                return True  # the reader is gone: so is the card, for the caller
            event = states[0][1]
            if event & _GONE or not event & _PRESENT or event >> 16 != self._state >> 16:
                return True
            state = event & ~_CHANGED

    def disconnect(self, *, reset: bool = False) -> None:
        """Release the card (reset it with `reset=True`) and the context; idempotent."""
        card, self._card = self._card, None
        if card is not None:
            how = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
            scard.SCardDisconnect(card, how)
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            _release(ctx)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed"
        return f"<CardConnection {self.reader!r} {state} apdus={self.apdu_count}>"


def _begin_transaction(card: int, reader: str) -> None:
    rv = scard.SCardBeginTransaction(card)
    if rv == scard.SCARD_W_RESET_CARD:
        raise TransactionFailed("the card was reset by another program: tap it again",
                                reader=reader, code=rv)
    if rv in (scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD):
        raise CardRemoved("card removed", reader=reader, code=rv)
    _check(rv, reader, "cannot start a transaction with the card")


def _end_transaction(conn: CardConnection) -> None:
    card = conn._card
    if card is not None:
        # Fails harmlessly when the card left: pcscd ends the transaction then.
        scard.SCardEndTransaction(card, scard.SCARD_LEAVE_CARD)


T = TypeVar("T")


def _bounded(work: Callable[[], T], reader: str, wait: float, *,
             undo: Callable[[T], None], abandon: Callable[[], None] | None = None) -> T:
    """`work()` (connect, begin a transaction) within `wait` seconds, else ReaderBusy.

    pcsc-lite makes SCardConnect and SCardBeginTransaction wait, without a bound, while
    another program holds a transaction on the card. So `work` runs in a helper thread;
    when the caller stops waiting, `abandon()` runs at once (in the caller, it must not
    block) and the helper, whenever pcsc-lite returns, `undo`es what `work` got: nothing
    is left held.
    """
    done = threading.Event()
    lock = threading.Lock()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            value: Any = work()
            error = None
        except BaseException as exc:
            value, error = None, exc
        with lock:
            if not outcome.get("abandoned"):
                outcome["value"], outcome["error"] = value, error
                done.set()
                return
        if error is None:
            undo(value)

    helper = threading.Thread(target=run, name="pcsc-wait", daemon=True)
    helper.start()
    if not done.wait(wait):
        with lock:
            if not done.is_set():
                outcome["abandoned"] = True
        if outcome.get("abandoned"):
            log.warning("reader %r: another program held the card for %g s", reader, wait)
            if abandon is not None:
                abandon()
            raise ReaderBusy(f"reader busy: another program is using the card (waited "
                             f"{wait:g} s); try again", reader=reader)
    if outcome["error"] is not None:
        raise outcome["error"]
    return outcome["value"]


@contextmanager
def held_card(reader: str, wait: float = TRANSACTION_WAIT) -> Iterator[CardConnection]:
    """Connect to the card on `reader` and hold it (a PC/SC transaction) for the block:
    the way to run a whole read (select, authenticate, read) with no other program's
    commands in between. Waits at most `wait` seconds for another program's transaction,
    then ReaderBusy."""

    def connect_and_begin() -> CardConnection:
        conn = CardConnection(reader)
        try:
            assert conn._card is not None
            _begin_transaction(conn._card, reader)
        except BaseException:
            conn.disconnect()
            raise
        return conn

    def undo(conn: CardConnection) -> None:
        _end_transaction(conn)
        conn.disconnect()

    conn = _bounded(connect_and_begin, reader, wait, undo=undo)
    try:
        yield conn
    finally:
        _end_transaction(conn)
        conn.disconnect()


def connect(pattern: str | None = None) -> CardConnection:
    """Connect to the card on the single reader matching `pattern` (see `select_reader`)."""
    return CardConnection(select_reader(pattern))


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
            _release(ctx)

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
            self._ctx = _establish()
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
        if state & _PRESENT:
            events.append(ReaderEvent(EventKind.CARD_REMOVED, reader))
        events.append(ReaderEvent(EventKind.READER_REMOVED, reader))

    def _relist(self, events: list[ReaderEvent]) -> None:
        assert self._ctx is not None
        names = match_readers(self.pattern, _list(self._ctx))
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
        rv, states = scard.SCardGetStatusChange(self._ctx, _ms(min(left, tick)), query)
        if rv == scard.SCARD_E_UNKNOWN_READER and self._pnp is not None and not self._has_pnp():
            self._pnp = None  # a PC/SC stack without PnP notification: re-list on ticks
            return
        if rv in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
            return
        err = error_for(rv, None, "cannot watch the readers") if rv != _OK else None
        if isinstance(err, ReaderGone):
            return  # a reader vanished between list and wait: re-list
        if err is not None:
            raise err
        for reader, event, atr in states:
            if reader == PNP_NOTIFICATION:
                self._pnp = event & ~_CHANGED  # pcsc-lite ≥ 2.0 counts readers in the high word
                continue
            if reader not in self._states or event & _GONE:
                continue  # re-listed on the next round
            self._card_events(reader, event, bytes(atr), events)

    def _has_pnp(self) -> bool:
        assert self._ctx is not None
        query = [(PNP_NOTIFICATION, scard.SCARD_STATE_UNAWARE)]
        rv, _ = scard.SCardGetStatusChange(self._ctx, 0, query)
        return rv != scard.SCARD_E_UNKNOWN_READER

    def _card_events(self, reader: str, event: int, atr: bytes, events: list[ReaderEvent]) -> None:
        before = self._states[reader]
        self._states[reader] = event & ~_CHANGED
        was, now = bool(before & _PRESENT), bool(event & _PRESENT)
        swapped = was and now and before >> 16 != event >> 16  # out and in between two calls
        if was and (not now or swapped):
            self._atrs.pop(reader, None)
            events.append(ReaderEvent(EventKind.CARD_REMOVED, reader))
        if now and (not was or swapped):
            self._atrs[reader] = atr
            events.append(ReaderEvent(EventKind.CARD_INSERTED, reader, atr=atr))
