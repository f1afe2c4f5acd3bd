"""One card on one reader: connect, transmit, and a PC/SC transaction that holds the card.

`held_card` is how a whole read (select, authenticate, read) runs with no other program's
commands in between; pcsc-lite's unbounded waits behind another program's transaction are
bounded here (`ReaderBusy`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self, TypeVar

from smartcard import scard

from .context import CHANGED, GONE, OK, PRESENT, establish, ms, release
from .errors import (
    CardRemoved,
    PcscError,
    PcscUnavailable,
    ReaderBusy,
    TransactionFailed,
    check,
    error_for,
)
from .readers import select_reader

log = logging.getLogger(__name__)

_REMOVAL_GRACE = 0.6  # pcscd polls vpcd/readers every 400 ms: how long to wait for it to notice
TRANSACTION_WAIT = 5.0  # how long a read waits for another program's read of the same card


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
        self._ctx: int | None = establish()
        try:
            share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
            protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
            rv, card, self.protocol = scard.SCardConnect(self._ctx, reader, share, protocols)
            check(rv, reader, "cannot connect to the card")
            self._card = card
            rv, _name, _state, _proto, atr = scard.SCardStatus(card)
            check(rv, reader, "cannot read the card status")
            self.atr = bytes(atr)
            # Reader state at connect (card event counter in the high word): lets a failed
            # transmit tell "card pulled" from "exchange failed".
            rv, states = scard.SCardGetStatusChange(
                self._ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
            )
            check(rv, reader, "cannot read the reader state")
            self._state = states[0][1] & ~CHANGED
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
        if rv != OK:
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

            def let_go() -> None:
                scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
                if ctx is not None:
                    release(ctx)

            threading.Thread(target=let_go, name="pcsc-release", daemon=True).start()

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
            rv, states = scard.SCardGetStatusChange(self._ctx, ms(left), [(self.reader, state)])
            if rv == scard.SCARD_E_TIMEOUT:
                return False
            if rv != OK:
                err = error_for(rv, self.reader, "exchange with the card failed")
                if isinstance(err, PcscUnavailable):
                    raise err
                return True  # the reader is gone: so is the card, for the caller
            event = states[0][1]
            if event & GONE or not event & PRESENT or event >> 16 != self._state >> 16:
                return True
            state = event & ~CHANGED

    def disconnect(self, *, reset: bool = False) -> None:
        """Release the card (reset it with `reset=True`) and the context; idempotent."""
        card, self._card = self._card, None
        if card is not None:
            how = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
            scard.SCardDisconnect(card, how)
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            release(ctx)

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
    check(rv, reader, "cannot start a transaction with the card")


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

