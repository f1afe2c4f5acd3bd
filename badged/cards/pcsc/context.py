"""PC/SC contexts and the reader-state bits, shared by the reader watch and the connection.

Each call that waits or connects owns its PC/SC context: pcsc-lite serialises calls on one
context, so sharing one between threads would make a reader thread block a card read.
"""

from __future__ import annotations

from smartcard import scard

from .errors import check

INFINITE_MS = 0x7FFFFFFF

OK = scard.SCARD_S_SUCCESS
CHANGED = scard.SCARD_STATE_CHANGED
PRESENT = scard.SCARD_STATE_PRESENT
GONE = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE


def establish() -> int:
    """A new PC/SC context of our own; PcscUnavailable when pcscd does not answer."""
    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    check(rv, None, "cannot reach pcscd")
    return ctx


def release(ctx: int) -> None:
    scard.SCardReleaseContext(ctx)  # fails harmlessly when pcscd already dropped it


def list_names(ctx: int) -> list[str]:
    """The readers pcscd knows on `ctx` (empty when none is plugged)."""
    rv, names = scard.SCardListReaders(ctx, [])
    if rv in (scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_READER_UNAVAILABLE):
        return []
    check(rv, None, "cannot list readers")
    return list(names)


def ms(seconds: float | None) -> int:
    """Seconds as pcsc-lite's timeout in milliseconds (None: wait without end)."""
    if seconds is None:
        return INFINITE_MS
    return max(0, min(INFINITE_MS, int(seconds * 1000)))
