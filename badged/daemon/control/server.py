"""The control socket's server side: the socket, the request slots and the limits.

A Unix stream socket at `<runtime_dir>/control.sock`, mode 0660 (group `badged` may
connect) whatever the umask; one request and one answer per connection (see `protocol`).

Ops are registered by the runtime: `server.register("status", handler)` (what a handler
gets and answers: see `handlers`). A handler may block (an enrolment waits for a tap): each
request is served in its own thread, at most `max_clients` at once; beyond that a client
gets a polite "busy" answer. Fairness: a connection holds no slot while it sends its
request; the accept loop reads every request line itself, and a client that has not sent a
whole line within `request_timeout` (short) gets an error and is closed; `light` ops
(`status`, `ping`: quick, never blocking) have slots of their own, so idle or blocked
clients never keep `badged status` from answering.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ControlSocketError
from .handlers import Handler, Op, run
from .protocol import (
    MAX_LINE,
    BadRequestError,
    FieldType,
    encode,
    parse_request,
    shown,
    validate,
)

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
MAX_CLIENTS = 16  # requests served at once (blocking ones included)
LIGHT_SLOTS = 4  # more, for light ops only (status, ping)
MAX_PENDING = 64  # connections still sending their request; beyond, the oldest is dropped
REQUEST_TIMEOUT = 2.0  # seconds a client has to send its whole request line

@dataclass
class _Pending:
    """A connection whose request line is still coming in."""

    conn: socket.socket
    deadline: float
    buf: bytearray = field(default_factory=bytearray)


class ControlServer:
    """The daemon's side. `start()` binds, `close()` stops and removes the socket.

    >>> server = ControlServer(socket_path(host.runtime_dir))
    >>> server.register("status", lambda req: {"readers": 2})
    >>> server.register("enrol", enrol, required={"person": str},
    ...                 optional={"reader": str, "wait_seconds": float}, cancellable=True)
    >>> server.start()
    """

    def __init__(self, path: str | Path, *, max_clients: int = MAX_CLIENTS,
                 request_timeout: float = REQUEST_TIMEOUT, light_slots: int = LIGHT_SLOTS,
                 max_pending: int = MAX_PENDING) -> None:
        self.path = Path(path)
        self.max_clients = max_clients
        self.request_timeout = request_timeout
        self.max_pending = max_pending
        self._ops: dict[str, Op] = {}
        self._slots = threading.BoundedSemaphore(max_clients)
        self._light_slots = threading.BoundedSemaphore(light_slots)
        self._pending: dict[int, _Pending] = {}  # by file descriptor, oldest first
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._conns: set[threading.Thread] = set()
        self._conns_lock = threading.Lock()
        self.register("ping", lambda _req: {"pid": os.getpid()}, light=True)

    def register(self, op: str, handler: Handler, *,
                 required: Mapping[str, FieldType] | None = None,
                 optional: Mapping[str, FieldType] | None = None,
                 cancellable: bool = False, light: bool = False) -> None:
        """Serve `op` with `handler(request)` (or `handler(request, cancelled)`).

        `required`/`optional` map field names to accepted types (`str`, `int`, `float` —
        an int is accepted where a float is expected —, `bool`, `list`, `dict`, or a tuple
        of them); any other field is refused. A null optional field counts as absent.
        `light`: a quick op that never blocks (status): it has slots of its own.
        Re-registering an op replaces its handler (a reload).
        """
        self._ops[op] = Op(handler, dict(required or {}), dict(optional or {}), cancellable,
                            light)

    def unregister(self, op: str) -> None:
        self._ops.pop(op, None)

    # lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket (0660), replacing a stale one; ControlSocketError if taken."""
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        self._check_existing()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            # Bound under a private name, made 0660, then renamed into place: a client
            # never sees the socket with the umask's mode, a stale socket is replaced
            # atomically.
            listener.bind(str(tmp))
            tmp.chmod(SOCKET_MODE)
            listener.listen(64)
            tmp.replace(self.path)
            st = self.path.lstat()
        except OSError as exc:
            listener.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise ControlSocketError(f"cannot create the control socket {self.path}: "
                                     f"{exc.strerror or exc}") from None
        self._inode = (st.st_dev, st.st_ino)
        listener.setblocking(False)
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._closing.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="control-accept",
                                        daemon=True)
        self._thread.start()
        log.info("control socket %s", self.path)

    def _check_existing(self) -> None:
        try:
            st = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(f"{self.path} exists and is not a socket: "
                                     "refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("replacing the stale control socket %s", self.path)
            return
        except OSError as exc:
            raise ControlSocketError(f"cannot check the existing control socket "
                                     f"{self.path}: {exc.strerror or exc}") from None
        finally:
            probe.close()
        raise ControlSocketError(f"another badged is already listening on {self.path}")

    def close(self, grace: float = 5.0) -> None:
        """Stop accepting, remove the socket (if still ours), wait up to `grace` seconds
        for requests in progress (idempotent)."""
        if self._listener is None:
            return
        self._closing.set()
        assert self._wake_w is not None and self._thread is not None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        assert self._selector is not None and self._wake_r is not None
        self._selector.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        self._listener = None
        with contextlib.suppress(OSError):
            st = self.path.lstat()
            if (st.st_dev, st.st_ino) == self._inode:
                self.path.unlink()
        with self._conns_lock:
            pending = list(self._conns)
        for thread in pending:
            thread.join(timeout=grace)

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # serving -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        """Accept, read every request line here (no slot held meanwhile), then dispatch."""
        assert self._selector is not None and self._listener is not None
        try:
            while not self._closing.is_set():
                timeout = None
                if self._pending:
                    first = min(p.deadline for p in self._pending.values())
                    timeout = max(0.0, first - time.monotonic())
                for key, _ in self._selector.select(timeout):
                    if self._closing.is_set():
                        break
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is not self._wake_r:
                        self._receive(key.fd)
                now = time.monotonic()
                for fd in [fd for fd, p in self._pending.items() if p.deadline <= now]:
                    self._answer_now(self._drop(fd), {
                        "ok": False, "error": "no complete request line received in time "
                        f"({self.request_timeout:g} s)"})
        finally:
            for fd in list(self._pending):
                self._drop(fd).close()

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        while True:
            try:
                conn, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("control socket accept failed: %s", exc)
                return
            conn.setblocking(False)
            if len(self._pending) >= self.max_pending:
                oldest = next(iter(self._pending))
                log.warning("control socket: %d connections sending no request, dropping "
                            "the oldest", len(self._pending))
                self._answer_now(self._drop(oldest), {
                    "ok": False, "error": "too many connections waiting to send a request"})
            self._pending[conn.fileno()] = _Pending(
                conn, time.monotonic() + self.request_timeout)
            self._selector.register(conn, selectors.EVENT_READ)

    def _drop(self, fd: int) -> socket.socket:
        """Stop watching a pending connection; the caller answers and/or closes it."""
        assert self._selector is not None
        pending = self._pending.pop(fd)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(pending.conn)
        return pending.conn

    def _receive(self, fd: int) -> None:
        pending = self._pending.get(fd)
        if pending is None:
            return
        try:
            chunk = pending.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
            pending.buf.clear()  # reset by the client: nothing to answer
        newline = chunk.find(b"\n")
        pending.buf += chunk if newline < 0 else chunk[:newline]
        if chunk and newline < 0 and len(pending.buf) <= MAX_LINE:
            return  # more to come
        conn = self._drop(fd)
        if not chunk and not pending.buf:  # gone without a word
            conn.close()
            return
        try:
            if len(pending.buf) > MAX_LINE:
                raise BadRequestError(f"request too long (more than {MAX_LINE} bytes)")
            if not pending.buf.strip():
                raise BadRequestError("empty request: send one JSON object on one line")
            op_name, op, request = self._prepare(bytes(pending.buf))
        except BadRequestError as exc:
            log.info("control socket: bad request: %s", exc)
            self._answer_now(conn, {"ok": False, "error": str(exc)})
            return
        self._start(conn, op_name, op, request)

    def _start(self, conn: socket.socket, op_name: str, op: Op,
               request: dict[str, Any]) -> None:
        """Serve a valid request in a thread of its pool, or answer "busy"."""
        slots = self._light_slots if op.light else self._slots
        if not slots.acquire(blocking=False):
            log.warning("control socket: %d requests in progress, refusing %s",
                        self.max_clients, op_name)
            self._answer_now(conn, {"ok": False, "error": f"badged is busy ({self.max_clients} "
                                    "requests in progress): try again"})
            return
        thread = threading.Thread(target=self._serve, args=(conn, op_name, op, request, slots),
                                  name="control-conn", daemon=True)
        with self._conns_lock:
            self._conns.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # can't start new thread
            log.error("control socket: %s", exc)
            with self._conns_lock:
                self._conns.discard(thread)
            slots.release()
            self._answer_now(conn, {"ok": False, "error": "badged cannot start a thread for "
                                    "this request: try again"})

    @staticmethod
    def _answer_now(conn: socket.socket, answer: Mapping[str, Any]) -> None:
        """A short answer from the accept loop: never blocks on a client that does not
        read (an answer this small fits in the socket's buffer), then close."""
        with contextlib.suppress(OSError):
            conn.send(encode(answer), socket.MSG_DONTWAIT)
        conn.close()

    def _serve(self, conn: socket.socket, op_name: str, op: Op, request: dict[str, Any],
               slots: threading.BoundedSemaphore) -> None:
        try:
            conn.setblocking(True)
            answer = run(op_name, op, request, conn)
            conn.settimeout(10)
            conn.sendall(encode(answer))
        except OSError as exc:
            log.debug("control socket: client went away: %s", exc)
        finally:
            conn.close()
            slots.release()
            with self._conns_lock:
                self._conns.discard(threading.current_thread())

    def _prepare(self, line: bytes) -> tuple[str, Op, dict[str, Any]]:
        """The op and the validated request of a line; BadRequestError says what is wrong."""
        request = parse_request(line)
        op_name = request.get("op")
        if not isinstance(op_name, str):
            raise BadRequestError("the request has no 'op' (a string)")
        op = self._ops.get(op_name)
        if op is None:
            known = ", ".join(sorted(self._ops))
            raise BadRequestError(f"unknown op {shown(op_name)} (known: {known})")
        return op_name, op, validate(op_name, op.required, op.optional, request)
