"""badged.cards.pcsc through a real (private) pcscd, its vpcd reader and a tiny card."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from badged.cards.pcsc import (
    AmbiguousReader,
    CardConnection,
    CardRemoved,
    CardTimeout,
    EventKind,
    NoCard,
    PcscError,
    PcscUnavailable,
    ReaderEvent,
    ReaderGone,
    ReaderNotFound,
    ReaderWatcher,
    TransactionFailed,
    connect,
    error_for,
    list_readers,
    select_reader,
    wait_for_card,
    wait_for_removal,
)

ATR = bytes.fromhex("3B8180018080")
GET_UID = bytes.fromhex("FFCA000000")


class TinyCard:
    """Just enough of a contactless card: FF CA gives the UID, the rest is 6D00."""

    def __init__(self, uid: str = "04A1B2C3D4E5F6") -> None:
        self.atr = ATR
        self.uid = bytes.fromhex(uid)
        self.power_ons = 0

    def power_on(self) -> None:
        self.power_ons += 1

    def power_off(self) -> None:
        pass

    def process(self, apdu: bytes) -> bytes:
        if apdu[:4] == GET_UID[:4]:
            return self.uid + b"\x90\x00"
        return b"\x6d\x00"


# --- readers -------------------------------------------------------------------------------


def test_list_readers_shows_the_private_pcscd(pcsc):
    assert sorted(list_readers()) == pcsc.readers


@pytest.mark.parametrize(
    ("pattern", "index"),
    [
        ("Virtual PCD 00 01", 1),  # exact
        ("*00 00", 0),  # glob
        ("Virtual PCD ?? 01", 1),
    ],
)
def test_select_reader_by_name_or_glob(pcsc, pattern, index):
    assert select_reader(pattern) == pcsc.readers[index]


def test_select_reader_no_match_names_the_known_readers(pcsc):
    with pytest.raises(ReaderNotFound) as err:
        select_reader("ACS ACR122U*")
    assert "'ACS ACR122U*'" in str(err.value) and pcsc.readers[0] in str(err.value)


@pytest.mark.parametrize("pattern", ["Virtual PCD *", None])
def test_select_reader_ambiguous(pcsc, pattern):
    with pytest.raises(AmbiguousReader, match="matches 2 readers"):
        select_reader(pattern)


def test_select_reader_exact_name_wins_over_glob_characters():
    readers = ["Reader [1]", "Reader 1"]
    assert select_reader("Reader [1]", readers) == "Reader [1]"
    assert select_reader("Reader ?", readers) == "Reader 1"
    with pytest.raises(ReaderNotFound, match="readers: none"):
        select_reader(None, [])


# --- waiting for cards ---------------------------------------------------------------------


def test_wait_for_card_already_present(pcsc, insert_card):
    insert_card(TinyCard(), reader=1)
    assert wait_for_card("*01", timeout=1) == pcsc.readers[1]
    assert wait_for_card(None, timeout=1) == pcsc.readers[1]  # the only reader with a card


def test_wait_for_card_inserted_from_another_thread(pcsc, insert_card):
    inserter = threading.Timer(0.2, insert_card, args=(TinyCard(),))
    start = time.monotonic()
    inserter.start()
    try:
        assert wait_for_card(pcsc.readers[0], timeout=5) == pcsc.readers[0]
    finally:
        inserter.join()
    assert time.monotonic() - start >= 0.2


def test_wait_for_card_times_out(pcsc):
    start = time.monotonic()
    with pytest.raises(CardTimeout, match=r"no card on 'Virtual PCD 00 01' after 0.3 s"):
        wait_for_card("*01", timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 1.5


def test_wait_for_card_on_a_reader_not_there_fails_at_once(pcsc):
    """No reader matches: not a timeout after the full wait, but at once, with the list."""
    start = time.monotonic()
    with pytest.raises(ReaderNotFound, match=r"no reader matches reader pattern "
                       r"'ACS ACR122U\*' \(readers: 'Virtual PCD 00 00', 'Virtual PCD 00 01'\)"):
        wait_for_card("ACS ACR122U*", timeout=30)
    assert time.monotonic() - start < 2


def test_wait_for_removal(pcsc, insert_card):
    card = insert_card(TinyCard())
    with pytest.raises(CardTimeout, match="card still present"):
        wait_for_removal(pcsc.readers[0], timeout=0.2)
    remover = threading.Timer(0.1, card.remove)
    remover.start()
    try:
        wait_for_removal(pcsc.readers[0], timeout=5)
    finally:
        remover.join()
    wait_for_removal(pcsc.readers[0], timeout=0)  # already empty: returns at once


def test_wait_for_removal_on_an_unknown_reader(pcsc):
    with pytest.raises(ReaderGone, match="'No such reader'"):
        wait_for_removal("No such reader", timeout=1)


# --- card connection -----------------------------------------------------------------------


def test_atr_uid_and_counters(pcsc, insert_card):
    engine = TinyCard()
    insert_card(engine)
    with CardConnection(pcsc.readers[0]) as conn:
        assert conn.atr == ATR
        start = time.perf_counter()
        for _ in range(10):
            assert conn.transmit(GET_UID) == engine.uid + b"\x90\x00"
        assert conn.transmit(b"\x00\xa4\x04\x00\x00") == b"\x6d\x00"  # data + SW, SW only
        wall = time.perf_counter() - start
        assert conn.apdu_count == 11
        assert 0 < conn.transmit_seconds <= wall
    assert not conn.connected
    with pytest.raises(TransactionFailed, match="not connected"):
        conn.transmit(GET_UID)


def test_connect_by_pattern(pcsc, insert_card):
    insert_card(TinyCard(), reader=1)
    with connect("*01") as conn:
        assert conn.reader == pcsc.readers[1]


def test_connect_without_card(pcsc):
    with pytest.raises(NoCard) as err:
        CardConnection(pcsc.readers[1])
    assert str(err.value) == (
        f"reader '{pcsc.readers[1]}': cannot connect to the card (SCARD_E_NO_SMARTCARD 0x8010000C)"
    )
    assert (err.value.reader, err.value.code) == (pcsc.readers[1], 0x8010000C)


def test_connect_to_an_unknown_reader(pcsc):
    with pytest.raises(ReaderGone, match=r"SCARD_E_UNKNOWN_READER 0x80100009"):
        CardConnection("No such reader")


def test_card_pulled_between_two_apdus(pcsc, insert_card):
    engine = TinyCard()
    card = insert_card(engine)
    conn = CardConnection(pcsc.readers[0])
    card.pull_after(1)
    assert conn.transmit(GET_UID)[-2:] == b"\x90\x00"
    with pytest.raises(CardRemoved) as err:  # before pcscd's next poll: "not transacted",
        conn.transmit(GET_UID)  # or (vpcd) success with no status word: never garbage
    assert str(err.value).startswith(f"reader '{pcsc.readers[0]}': card removed during")
    with pytest.raises(CardRemoved, match="SCARD_W_REMOVED_CARD 0x80100069"):
        conn.transmit(GET_UID)  # pcscd knows now
    conn.disconnect()
    pcsc.wait_card(present=False)
    with pytest.raises(NoCard):
        CardConnection(pcsc.readers[0])

    card.insert()
    pcsc.wait_card(present=True)
    with CardConnection(pcsc.readers[0]) as again:
        assert again.transmit(GET_UID) == engine.uid + b"\x90\x00"
    assert engine.power_ons == 2


# --- pcscd away ----------------------------------------------------------------------------


def test_pcscd_not_running(pcscd_restart, insert_card):
    insert_card(TinyCard())
    conn = CardConnection(pcscd_restart.readers[0])
    pcscd_restart.stop()
    with pytest.raises(PcscUnavailable, match="SCARD_E_NO_SERVICE 0x8010001D"):
        list_readers()
    with pytest.raises(PcscUnavailable, match="pcscd is not running"):
        CardConnection(pcscd_restart.readers[0])
    with pytest.raises(PcscUnavailable):
        conn.transmit(GET_UID)
    with pytest.raises(PcscUnavailable):
        wait_for_card(None, timeout=1)
    conn.disconnect()  # harmless with pcscd gone
    with ReaderWatcher(retry=False) as watcher:
        [event] = watcher.poll(1)
        assert event.kind is EventKind.PCSC_DOWN
        assert isinstance(event.error, PcscUnavailable)

    pcscd_restart.start()
    assert sorted(list_readers()) == pcscd_restart.readers


def _drain(
    events: queue.Queue[ReaderEvent],
    until: EventKind,
    timeout: float = 5.0,
    reader: str | None = None,
) -> list[ReaderEvent]:
    """Events from the watcher thread up to the first `until` (for `reader` if given)."""
    seen: list[ReaderEvent] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            event = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no {until} event after {timeout} s; saw {seen}")
        seen.append(event)
        if event.kind is until and (reader is None or event.reader == reader):
            return seen


def test_watcher_reports_current_state_then_changes(pcsc, insert_card):
    insert_card(TinyCard())
    with ReaderWatcher() as watcher:
        first = watcher.poll(2)
        assert [(e.kind, e.reader) for e in first] == [
            (EventKind.PCSC_UP, None),
            (EventKind.READER_ADDED, pcsc.readers[0]),
            (EventKind.READER_ADDED, pcsc.readers[1]),
            (EventKind.CARD_INSERTED, pcsc.readers[0]),
        ]
        assert first[-1].atr == ATR
        assert watcher.poll(0.1) == []  # quiet: the caller heartbeats
        card = insert_card(TinyCard(), reader=1)
        assert watcher.poll(2) == [ReaderEvent(EventKind.CARD_INSERTED, pcsc.readers[1], ATR)]
        assert watcher.readers == {pcsc.readers[0]: ATR, pcsc.readers[1]: ATR}
        card.remove()
        assert watcher.poll(2) == [ReaderEvent(EventKind.CARD_REMOVED, pcsc.readers[1])]


def test_watcher_pattern_filters_readers(pcsc):
    with ReaderWatcher("*01") as watcher:
        kinds = [(e.kind, e.reader) for e in watcher.poll(2)]
    assert kinds == [(EventKind.PCSC_UP, None), (EventKind.READER_ADDED, pcsc.readers[1])]


def test_watcher_close_wakes_a_poll_in_progress(pcsc):
    watcher = ReaderWatcher()
    watcher.poll(1)  # initial state
    done = threading.Event()
    thread = threading.Thread(target=lambda: (watcher.poll(30), done.set()))
    thread.start()
    time.sleep(0.1)  # let it block in SCardGetStatusChange
    start = time.monotonic()
    watcher.close()
    thread.join(3)
    assert done.is_set() and time.monotonic() - start < 2.5


def test_watcher_survives_pcscd_restart(pcscd_restart, insert_card):
    sandbox = pcscd_restart
    card = insert_card(TinyCard())
    events: queue.Queue[ReaderEvent] = queue.Queue()
    watcher = ReaderWatcher(retry_interval=0.05)

    def run() -> None:
        for event in watcher.events(tick=0.1):
            if event is not None:
                events.put(event)

    thread = threading.Thread(target=run, name="test-reader-watcher")
    thread.start()
    try:
        _drain(events, EventKind.CARD_INSERTED)
        sandbox.kill()
        down = _drain(events, EventKind.PCSC_DOWN)
        assert [(e.kind, e.reader) for e in down] == [
            (EventKind.CARD_REMOVED, sandbox.readers[0]),
            (EventKind.READER_REMOVED, sandbox.readers[0]),
            (EventKind.READER_REMOVED, sandbox.readers[1]),
            (EventKind.PCSC_DOWN, None),
        ]
        assert isinstance(down[-1].error, PcscUnavailable)
        assert card.wait_removed(2)  # vpcd went away with pcscd

        sandbox.start()
        up = _drain(events, EventKind.READER_ADDED, reader=sandbox.readers[1])
        assert [e.kind for e in up] == [
            EventKind.PCSC_UP,
            EventKind.READER_ADDED,
            EventKind.READER_ADDED,
        ]
        card.insert()
        inserted = _drain(events, EventKind.CARD_INSERTED)
        assert inserted[-1] == ReaderEvent(EventKind.CARD_INSERTED, sandbox.readers[0], ATR)
        assert watcher.available
    finally:
        watcher.close()
        thread.join(5)
    assert not thread.is_alive()


# --- error mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls", "name"),
    [
        (0x8010001D, PcscUnavailable, "SCARD_E_NO_SERVICE"),
        (0x80100013, PcscUnavailable, "SCARD_F_COMM_ERROR"),
        (0x8010000C, NoCard, "SCARD_E_NO_SMARTCARD"),
        (0x80100069, CardRemoved, "SCARD_W_REMOVED_CARD"),
        (0x80100009, ReaderGone, "SCARD_E_UNKNOWN_READER"),
        (0x80100017, ReaderGone, "SCARD_E_READER_UNAVAILABLE"),
        (0x8010002E, ReaderGone, "SCARD_E_NO_READERS_AVAILABLE"),
        (0x8010000A, CardTimeout, "SCARD_E_TIMEOUT"),
        (0x80100066, TransactionFailed, "SCARD_W_UNRESPONSIVE_CARD"),
        (-0x7FEFFFE3, PcscUnavailable, "SCARD_E_NO_SERVICE"),  # a signed 0x8010001D
    ],
)
def test_error_mapping(code, cls, name):
    err = error_for(code, "ACS ACR122U 00 00", "doing it")
    assert type(err) is cls and isinstance(err, PcscError)
    assert str(err).startswith("reader 'ACS ACR122U 00 00': doing it")
    assert str(err).endswith(f"({name} 0x{code & 0xFFFFFFFF:08X})")
    assert "\n" not in str(err)
