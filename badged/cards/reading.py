"""One read of one card on one reader: wait, connect, apply the profile, disconnect."""

from __future__ import annotations

from .pcsc import CardConnection, PcscError, wait_for_card
from .profile import CardRead, CardReadError, ProfileReader


def read_one(reader: ProfileReader, pattern: str | None, timeout: float | None) -> CardRead:
    """Wait for a card on a reader matching `pattern`, and read it with the profile.

    PC/SC failures (no pcscd, reader gone, card pulled) become CardReadError naming the
    reader, like card errors, so callers handle one error type.
    """
    name = wait_for_card(pattern, timeout)
    try:
        with CardConnection(name) as conn:
            return reader.read(conn.transmit, reader=name, atr=conn.atr)
    except PcscError as exc:
        raise CardReadError(name, str(exc), reason="pcsc") from exc
