"""The card side of vsmartcard's vpcd protocol: puts a card engine on a virtual reader.

vpcd (a pcscd driver) listens on TCP; the card connects to it (inserted) or closes the
connection (removed). Each message, both ways, is a 2-byte big-endian length then the
payload. A 1-byte payload from vpcd is a control byte: 00 power off, 01 power on, 02 reset
(no reply), 04 ATR request (reply with the ATR); anything longer is a command APDU, answered
by the response APDU. pcscd asks for the ATR every ~400 ms to see whether the card is there.

Debian 12's vpcd sends the length and the payload in two writes without TCP_NODELAY: the
card must set TCP_QUICKACK before every recv, or each APDU stalls ~40 ms on a delayed ACK.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Protocol, Self

log = logging.getLogger(__name__)

VPCD_PORT = 35963  # vpcd's default port (slot n listens on port + n)
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0x00, 0x01, 0x02, 0x04
SW_NO_DIAGNOSIS = b"\x6f\x00"  # what a card answers when its own code fails


class CardEngine(Protocol):
    """What a virtual card must do (e.g. `badged.cards.simulator.SimulatedDesfire`)."""

    atr: bytes

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...

    def process(self, apdu: bytes) -> bytes: ...


class InsertCancelledError(ConnectionError):
    """`remove()` was called while the card was still trying to reach vpcd."""


class VpcdCard:
    """A card engine inserted in a vpcd reader slot; one serving thread per insertion.

    `insert`, `remove` and `pull_after` may be called from any thread. `remove` joins the
    serving thread, so no thread outlives a removed card.
    """

    def __init__(self, engine: CardEngine, host: str = "127.0.0.1", port: int = VPCD_PORT):
        self.engine = engine
        self.address = (host, port)
        self.apdu_count = 0  # APDUs answered, over all insertions
        self.last_exit = ""  # why the card last left: removed | pulled | vpcd-closed
        self._lock = threading.Lock()  # never taken by the serving thread
        self._count_lock = threading.Lock()
        self._generation = 0  # bumped by remove(): cancels insertions in progress
        self._inserting = False
        self._stop_serving = False
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._out = threading.Event()  # set while the card is not in the reader
        self._out.set()
        self._pull_in: int | None = None

    @property
    def inserted(self) -> bool:
        return not self._out.is_set()

    def insert(self, timeout: float | None = 5.0) -> Self:
        """Connect to vpcd, retrying while it does not listen yet (e.g. pcscd starting)."""
        return self._insert(timeout, serving=False)

    def remove(self) -> None:
        """Take the card out (close the connection) and wait for its thread; idempotent."""
        with self._lock:
            self._generation += 1
            self._stop_serving = True
            sock, self._sock = self._sock, None
            thread, self._thread = self._thread, None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by a pull or by vpcd
                sock.shutdown(socket.SHUT_RDWR)  # wakes the serving thread's recv
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def pull_after(self, n: int) -> None:
        """Fault: the card vanishes right after answering `n` more APDUs (0: now)."""
        if n <= 0:
            self.remove()
            return
        with self._count_lock:
            self._pull_in = n

    def wait_removed(self, timeout: float | None = None) -> bool:
        """Block until the card is out (removed, pulled or dropped by vpcd)."""
        return self._out.wait(timeout)

    def serve_forever(self, *, reinsert: bool = True) -> None:
        """Keep the card in the reader until `remove()` from another thread or Ctrl-C.

        With `reinsert`, the card goes back in when vpcd drops it (pcscd restarted).
        """
        with self._lock:
            self._stop_serving = False
        try:
            while True:
                if not self.inserted:
                    self._insert(None, serving=True)
                self._out.wait()
                if not (reinsert and self.last_exit == "vpcd-closed"):
                    return
                log.info("vpcd %s dropped the card: inserting it again", self._where())
        except (KeyboardInterrupt, InsertCancelledError):
            pass
        finally:
            self.remove()

    def __enter__(self) -> Self:
        return self if self.inserted else self.insert()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "inserted" if self.inserted else "out"
        return f"<VpcdCard {self._where()} {state} apdus={self.apdu_count}>"

    # internals

    def _where(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def _insert(self, timeout: float | None, *, serving: bool) -> Self:
        with self._lock:
            if self.inserted or self._inserting:
                raise RuntimeError(f"card already inserted on vpcd {self._where()}")
            if serving and self._stop_serving:
                raise InsertCancelledError(f"card on {self._where()} removed")
            self._inserting = True
            generation = self._generation
            previous, self._thread = self._thread, None
        try:
            if previous is not None:
                previous.join()  # a pulled card's thread is ending (its socket is closed)
            sock = self._connect(timeout, generation)
            with self._lock:
                if generation != self._generation:
                    sock.close()
                    raise InsertCancelledError(f"insertion on {self._where()} cancelled")
                self._sock, self._pull_in = sock, None
                self._out.clear()
                self._thread = threading.Thread(
                    target=self._serve,
                    args=(sock, generation),
                    daemon=True,
                    name=f"vpcd-card-{self.address[1]}",
                )
                self._thread.start()
        finally:
            with self._lock:
                self._inserting = False
        return self

    def _connect(self, timeout: float | None, generation: int) -> socket.socket:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection(self.address, timeout=1.0)
            except OSError as err:
                if deadline is not None and time.monotonic() >= deadline:
                    raise ConnectionError(
                        f"no vpcd listening on {self._where()} after {timeout:g} s "
                        f"(is pcscd running with a vpcd reader on that port?): {err}"
                    ) from err
                time.sleep(0.02)  # vpcd not listening yet (pcscd starting): retry shortly
                if generation != self._generation:
                    raise InsertCancelledError(f"insertion on {self._where()} cancelled") from err
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock

    def _serve(self, sock: socket.socket, generation: int) -> None:
        powered, pulled = False, False
        try:
            while True:
                header = _recv_exact(sock, 2)
                if header is None:
                    return
                (size,) = struct.unpack(">H", header)
                message = _recv_exact(sock, size)
                if message is None:
                    return
                if size == 1:
                    powered = self._control(sock, message[0], powered)
                    continue
                _send(sock, self._process(message))
                if self._answered():
                    pulled = True
                    return  # the finally clause closes the socket: the card is gone
        except OSError:
            pass  # vpcd went away mid-message, or remove() shut the socket
        finally:
            if powered:
                self._safely(self.engine.power_off)
            sock.close()
            if generation != self._generation:
                self.last_exit = "removed"
            else:
                self.last_exit = "pulled" if pulled else "vpcd-closed"
            self._out.set()

    def _control(self, sock: socket.socket, byte: int, powered: bool) -> bool:
        if byte == CTRL_ATR:
            _send(sock, bytes(self.engine.atr))
        elif byte == CTRL_ON:
            self._safely(self.engine.power_on)
            return True
        elif byte == CTRL_OFF:
            if powered:
                self._safely(self.engine.power_off)
            return False
        elif byte == CTRL_RESET:
            self._safely(self.engine.power_off)
            self._safely(self.engine.power_on)
            return True
        else:
            log.warning("vpcd %s: unknown control byte %02X ignored", self._where(), byte)
        return powered

    def _process(self, apdu: bytes) -> bytes:
        try:
            return bytes(self.engine.process(apdu))
        except Exception:  # a card never crashes the reader: it answers 6F00
            log.exception("card engine failed on APDU %s", apdu.hex().upper())
            return SW_NO_DIAGNOSIS

    def _answered(self) -> bool:
        """Count one APDU; True when a pending pull says the card must vanish now."""
        with self._count_lock:
            self.apdu_count += 1
            if self._pull_in is None:
                return False
            self._pull_in -= 1
            if self._pull_in > 0:
                return False
            self._pull_in = None
            return True

    def _safely(self, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:
            log.exception("card engine failed on power control")


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """`size` bytes, or None when the peer closed the connection."""
    buf = bytearray()
    while len(buf) < size:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)  # not sticky: every time
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)
