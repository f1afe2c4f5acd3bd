"""badged.cards.vpcd: the wire protocol against a scripted vpcd, then through real pcscd."""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from badged.cards.pcsc import CardConnection, CardRemoved
from badged.cards.vpcd import InsertCancelledError, VpcdCard

ATR = bytes.fromhex("3B8180018080")
GET_UID = bytes.fromhex("FFCA000000")
BOOM = bytes.fromhex("00EE000000")


class RecordingCard:
    """A tiny engine that records what the reader does to it."""

    def __init__(self) -> None:
        self.atr = ATR
        self.calls: list[str] = []
        self.powered = False

    def power_on(self) -> None:
        self.powered = True
        self.calls.append("on")

    def power_off(self) -> None:
        self.powered = False
        self.calls.append("off")

    def process(self, apdu: bytes) -> bytes:
        self.calls.append(apdu.hex().upper())
        if apdu == BOOM:
            raise ValueError("engine bug")
        if apdu[:4] == GET_UID[:4]:
            return bytes.fromhex("04112233445566") + b"\x90\x00"
        return b"\x90\x00"


def _vpcd_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vpcd-card")]


# --- wire protocol against a scripted vpcd (no pcscd) ----------------------------------------


class ScriptedVpcd:
    """The server side of vpcd, driven by the test; sends length and payload separately,
    like Debian's vpcd 3.3 does."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.server.settimeout(5)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(5)

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(struct.pack(">H", len(payload)))
        self.conn.sendall(payload)

    def recv(self) -> bytes:
        assert self.conn is not None
        size = struct.unpack(">H", self._exact(2))[0]
        return self._exact(size)

    def _exact(self, n: int) -> bytes:
        assert self.conn is not None
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise EOFError("card closed the connection")
            buf += chunk
        return buf

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def vpcd() -> Iterator[ScriptedVpcd]:
    server = ScriptedVpcd()
    yield server
    server.close()


def test_protocol_control_bytes_and_apdus(vpcd):
    engine = RecordingCard()
    card = VpcdCard(engine, port=vpcd.port).insert()
    try:
        vpcd.accept()
        vpcd.send(b"\x04")
        assert vpcd.recv() == ATR
        vpcd.send(b"\x01")  # power on: no reply
        vpcd.send(GET_UID)
        assert vpcd.recv() == bytes.fromhex("04112233445566") + b"\x90\x00"
        vpcd.send(b"\x02")  # reset: power cycle, no reply
        vpcd.send(b"\x7f")  # unknown control byte: ignored
        vpcd.send(BOOM)  # the engine fails: the card answers 6F00 and stays
        assert vpcd.recv() == b"\x6f\x00"
        vpcd.send(b"\x00")
        vpcd.send(b"\x04")  # a round trip to know every byte above was handled
        assert vpcd.recv() == ATR
        assert engine.calls == ["on", "FFCA000000", "off", "on", "00EE000000", "off"]
        assert card.apdu_count == 2
    finally:
        card.remove()
    assert not card.inserted and card.last_exit == "removed"


def test_pull_after_closes_right_after_the_nth_answer(vpcd):
    engine = RecordingCard()
    card = VpcdCard(engine, port=vpcd.port).insert()
    vpcd.accept()
    vpcd.send(b"\x01")
    card.pull_after(2)
    for _ in range(2):
        vpcd.send(GET_UID)
        assert vpcd.recv()[-2:] == b"\x90\x00"
    assert card.wait_removed(2)
    with pytest.raises(EOFError):
        vpcd.recv()
    assert card.last_exit == "pulled" and not card.inserted
    assert engine.calls[-1] == "off"  # a pulled card loses power
    card.remove()  # reaps the finished thread
    assert _vpcd_threads() == []


def test_vpcd_closing_the_connection_removes_the_card(vpcd):
    card = VpcdCard(RecordingCard(), port=vpcd.port).insert()
    vpcd.accept()
    vpcd.conn.close()  # type: ignore[union-attr]
    vpcd.conn = None
    assert card.wait_removed(2)
    assert card.last_exit == "vpcd-closed"
    card.remove()


def test_insert_without_vpcd_fails_clearly():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        card = VpcdCard(RecordingCard(), port=port)
        with pytest.raises(ConnectionError, match=f"no vpcd listening on 127.0.0.1:{port}"):
            card.insert(timeout=0.1)
    assert not card.inserted and _vpcd_threads() == []


def test_remove_cancels_an_insertion_waiting_for_vpcd():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        card = VpcdCard(RecordingCard(), port=probe.getsockname()[1])
        errors: list[BaseException] = []

        def insert() -> None:
            try:
                card.insert(timeout=None)
            except BaseException as err:
                errors.append(err)

        thread = threading.Thread(target=insert)
        thread.start()
        time.sleep(0.1)
        card.remove()
        thread.join(2)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], InsertCancelledError)


def test_insert_twice_and_concurrent_removes(vpcd):
    card = VpcdCard(RecordingCard(), port=vpcd.port).insert()
    with pytest.raises(RuntimeError, match="already inserted"):
        card.insert()
    removers = [threading.Thread(target=card.remove) for _ in range(8)]
    for t in removers:
        t.start()
    for t in removers:
        t.join(2)
    assert not any(t.is_alive() for t in removers)
    assert not card.inserted and _vpcd_threads() == []
    card.remove()  # idempotent


# --- through the real pcscd ------------------------------------------------------------------


def test_pcscd_powers_the_card_and_removal_powers_it_off(pcsc, insert_card):
    engine = RecordingCard()
    card = insert_card(engine)
    assert engine.powered  # pcscd powers a card up as soon as it sees it
    with CardConnection(pcsc.readers[0]) as conn:
        assert conn.atr == ATR
        assert conn.transmit(GET_UID)[-2:] == b"\x90\x00"
        conn.disconnect(reset=True)  # vpcd sends 02: the card is power-cycled
    assert engine.calls[-2:] == ["off", "on"]
    card.remove()
    assert not engine.powered and _vpcd_threads() == []


def test_pull_mid_read_through_pcscd(pcsc, insert_card):
    card = insert_card(RecordingCard())
    with CardConnection(pcsc.readers[0]) as conn:
        card.pull_after(2)
        conn.transmit(GET_UID)
        conn.transmit(GET_UID)
        with pytest.raises(CardRemoved):
            conn.transmit(GET_UID)
    assert card.last_exit == "pulled"


def test_apdu_round_trip_is_fast(pcsc, insert_card):
    """Loose sanity bound: ~0.1 ms with TCP_QUICKACK, ~40 ms per APDU without it."""
    insert_card(RecordingCard())
    with CardConnection(pcsc.readers[0]) as conn:
        times = []
        for _ in range(100):
            start = time.perf_counter()
            conn.transmit(GET_UID)
            times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.005


def test_serve_forever_until_removed_and_across_a_pcscd_restart(pcscd_restart):
    sandbox = pcscd_restart
    card = VpcdCard(RecordingCard(), port=sandbox.port)
    server = threading.Thread(target=card.serve_forever, name="test-serve-forever")
    server.start()
    try:
        sandbox.wait_card(present=True)
        sandbox.kill()
        assert card.wait_removed(2)  # vpcd dropped it...
        sandbox.start()
        sandbox.wait_card(present=True)  # ...and the card went back in by itself
    finally:
        card.remove()
        server.join(5)
    assert not server.is_alive() and _vpcd_threads() == []
    sandbox.wait_card(present=False)
