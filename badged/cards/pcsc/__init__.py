"""PC/SC transport on pyscard's low-level API: readers, hot-plug, card events, transmit.

- `errors`: every PC/SC failure as a typed `PcscError` naming the reader and the code;
- `context`: the PC/SC contexts (one per call that waits or connects) and state bits;
- `readers`: list and match readers, wait for a card, `ReaderWatcher` (hot-plug events);
- `connection`: `CardConnection` (transmit, counters) and `held_card` (a transaction).

The names below are the transport's public face: import them from `badged.cards.pcsc`.
"""

from .connection import TRANSACTION_WAIT, CardConnection, connect, held_card
from .errors import (
    AmbiguousReader,
    CardRemoved,
    CardTimeout,
    NoCard,
    PcscError,
    PcscUnavailable,
    ReaderBusy,
    ReaderGone,
    ReaderNotFound,
    TransactionFailed,
    code_name,
    error_for,
)
from .readers import (
    PNP_NOTIFICATION,
    EventKind,
    ReaderEvent,
    ReaderWatcher,
    list_readers,
    match_readers,
    select_reader,
    wait_for_card,
    wait_for_removal,
)

__all__ = [
    "PNP_NOTIFICATION", "TRANSACTION_WAIT", "AmbiguousReader", "CardConnection", "CardRemoved",
    "CardTimeout", "EventKind", "NoCard", "PcscError", "PcscUnavailable", "ReaderBusy",
    "ReaderEvent", "ReaderGone", "ReaderNotFound", "ReaderWatcher", "TransactionFailed",
    "code_name", "connect", "error_for", "held_card", "list_readers", "match_readers",
    "select_reader", "wait_for_card", "wait_for_removal",
]
