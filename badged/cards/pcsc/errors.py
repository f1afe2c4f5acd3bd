"""PC/SC failures as typed errors: one line naming the reader and the PC/SC code.

Every PC/SC failure becomes a `PcscError` whose message names the reader and the PC/SC code
(name and hex), so the daemon can count, log and recover without parsing pyscard
exceptions; the subclass says what happened (pcscd away, reader gone, card removed, …).
"""

from __future__ import annotations

from smartcard import scard

_CODE_NAMES: dict[int, str] = {}
for _name in sorted(dir(scard)):
    if _name.startswith(("SCARD_E_", "SCARD_F_", "SCARD_P_", "SCARD_W_")):
        _CODE_NAMES.setdefault(getattr(scard, _name) & 0xFFFFFFFF, _name)


def code_name(code: int) -> str:
    """`SCARD_E_NO_SMARTCARD` for 0x8010000C; `SCARD_UNKNOWN` for a code pyscard does not name."""
    return _CODE_NAMES.get(code & 0xFFFFFFFF, "SCARD_UNKNOWN")


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


def check(rv: int, reader: str | None, doing: str) -> None:
    """Raise the typed error of a PC/SC return code other than success."""
    if rv != scard.SCARD_S_SUCCESS:
        raise error_for(rv, reader, doing)

