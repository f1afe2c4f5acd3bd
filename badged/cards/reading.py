"""One read of one card on one reader: wait, connect, apply the profile, disconnect."""

from __future__ import annotations

from .pcsc import CardTimeout, PcscError, ReaderNotFound, held_card, wait_for_card
from .profile import CardRead, CardReadError, ProfileReader


def read_one(reader: ProfileReader, pattern: str | None, timeout: float | None) -> CardRead:
    """Wait for a card on a reader matching `pattern`, and read it with the profile.

    Once a card is found, PC/SC failures (card pulled, reader gone, pcscd gone) become
    CardReadError naming the reader, like card errors. While waiting, they are raised as
    the typed PcscError (PcscUnavailable, ReaderGone, CardTimeout), naming `pattern`.
    """
    try:
        name = wait_for_card(pattern, timeout)
    except PcscError as exc:
        if exc.reader is None and pattern is not None and not isinstance(
                exc, CardTimeout | ReaderNotFound):
            raise type(exc)(exc.reason, reader=pattern, code=exc.code) from exc
        raise
    try:
        with held_card(name) as conn:
            return reader.read(conn.transmit, reader=name, atr=conn.atr)
    except PcscError as exc:
        raise CardReadError(name, str(exc), reason="pcsc") from exc
