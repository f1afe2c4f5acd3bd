"""The local control socket: how `badged status`, `enrol`, `exchange run` … reach the daemon.

A Unix stream socket at `<runtime_dir>/control.sock`, mode 0660 (group `badged` may
connect) whatever the umask. Protocol: JSON lines, one request and one answer per
connection:

    → {"op": "status"}
    ← {"ok": true, ...}            or   {"ok": false, "error": "message"}

Ops are registered by the runtime: `server.register("status", handler)`; a handler gets the
validated request dict (with its "op") and returns a dict (merged into the answer). It may
block (an enrolment waits for a tap): each request is served in its own thread, at most
`max_clients` at once; beyond that a client gets a polite "busy" answer. Fairness: a
connection holds no slot while it sends its request; the accept loop reads every request
line itself, and a client that has not sent a whole line within `request_timeout` (short)
gets an error and is closed; `light` ops (`status`, `ping`: quick, never blocking) have
slots of their own, so idle or blocked clients never keep `badged status` from answering.
Any malformed request (not JSON, not UTF-8, a lone surrogate, NaN, a number too long, the
wrong fields) gets a clean error answer. Handlers raise `OpError("message")` for a clean
error answer; any other exception is logged with its traceback and answered as an internal
error. A handler registered with
`cancellable=True` is called as `handler(request, cancelled)`: `cancelled` is a
`threading.Event` set when the client hangs up (e.g. Ctrl-C on `badged enrol`), so a
waiting enrolment stops instead of linking whatever card is tapped after the operator
gave up.

Client side: `ControlClient(path).request("status", timeout=5)` returns the answer dict or
raises `DaemonUnreachable` (→ exit code 4) or `RequestError` (the daemon said no).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
SOCKET_MODE = 0o660
MAX_LINE = 64 * 1024  # request line limit (bytes, newline excluded)
MAX_ANSWER = 16 * 1024 * 1024
MAX_CLIENTS = 16  # requests served at once (blocking ones included)
LIGHT_SLOTS = 4  # more, for light ops only (status, ping)
MAX_PENDING = 64  # connections still sending their request; beyond, the oldest is dropped
REQUEST_TIMEOUT = 2.0  # seconds a client has to send its whole request line

FieldType = type | tuple[type, ...]
Handler = Callable[..., Mapping[str, Any] | None]


def socket_path(runtime_dir: str | Path) -> Path:
    """Where the control socket lives: `<runtime_dir>/control.sock` (host file runtime_dir)."""
    return Path(runtime_dir) / SOCKET_NAME


# --- errors ------------------------------------------------------------------------------

class ControlError(Exception):
    """Base of the control socket errors (a garbled answer is a plain ControlError)."""


class DaemonUnreachable(ControlError):  # noqa: N818 (name fixed by the CLI contract)
    """No daemon answers on the socket (missing, refused, permission denied, timeout)."""


class DaemonTimeout(DaemonUnreachable):
    """The daemon accepted the connection but did not answer in time."""


class RequestError(ControlError):
    """The daemon answered `{"ok": false, "error": …}`; `.error` is its message."""

    def __init__(self, error: str, answer: Mapping[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.answer = dict(answer or {})


class ControlSocketError(ControlError):
    """The server cannot take the socket path (another daemon answers, not a socket, …)."""


class OpError(Exception):
    """Raised by a handler: answered as `{"ok": false, "error": str(exc)}`, no traceback."""


# --- server ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Op:
    handler: Handler
    required: Mapping[str, FieldType] = field(default_factory=dict)
    optional: Mapping[str, FieldType] = field(default_factory=dict)
    cancellable: bool = False
    light: bool = False


@dataclass
class _Pending:
    """A connection whose request line is still coming in."""

    conn: socket.socket
    deadline: float
    buf: bytearray = field(default_factory=bytearray)


class _BadRequestError(Exception):
    pass


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
        self._ops: dict[str, _Op] = {}
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
        self._ops[op] = _Op(handler, dict(required or {}), dict(optional or {}), cancellable,
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
                raise _BadRequestError(f"request too long (more than {MAX_LINE} bytes)")
            if not pending.buf.strip():
                raise _BadRequestError("empty request: send one JSON object on one line")
            op_name, op, request = self._prepare(bytes(pending.buf))
        except _BadRequestError as exc:
            log.info("control socket: bad request: %s", exc)
            self._answer_now(conn, {"ok": False, "error": str(exc)})
            return
        self._start(conn, op_name, op, request)

    def _start(self, conn: socket.socket, op_name: str, op: _Op,
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
            conn.send(_encode(answer), socket.MSG_DONTWAIT)
        conn.close()

    def _serve(self, conn: socket.socket, op_name: str, op: _Op, request: dict[str, Any],
               slots: threading.BoundedSemaphore) -> None:
        try:
            conn.setblocking(True)
            answer = self._run(op_name, op, request, conn)
            conn.settimeout(10)
            conn.sendall(_encode(answer))
        except OSError as exc:
            log.debug("control socket: client went away: %s", exc)
        finally:
            conn.close()
            slots.release()
            with self._conns_lock:
                self._conns.discard(threading.current_thread())

    def _prepare(self, line: bytes) -> tuple[str, _Op, dict[str, Any]]:
        """The op and the validated request of a line; _BadRequestError says what is wrong."""
        request = _parse(line)
        op_name = request.get("op")
        if not isinstance(op_name, str):
            raise _BadRequestError("the request has no 'op' (a string)")
        op = self._ops.get(op_name)
        if op is None:
            known = ", ".join(sorted(self._ops))
            raise _BadRequestError(f"unknown op {_shown(op_name)} (known: {known})")
        return op_name, op, _validate(op_name, op, request)

    def _run(self, op_name: str, op: _Op, request: dict[str, Any],
             conn: socket.socket) -> dict[str, Any]:
        log.debug("control op %s", op_name)
        watcher = None
        try:
            if op.cancellable:
                cancelled = threading.Event()
                watcher = _HangupWatcher(conn, cancelled)
                result = op.handler(request, cancelled)
            else:
                result = op.handler(request)
        except OpError as exc:
            # The message may name a person (the client gets it): the journal does not.
            log.info("control op %s refused", op_name)
            log.debug("control op %s refused: %s", op_name, exc)
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control op %s failed", op_name)
            return {"ok": False, "error": f"internal error in {op_name}: "
                                          f"{type(exc).__name__}: {exc}"}
        finally:
            if watcher is not None:
                watcher.stop()
        if result is None:
            result = {}
        if not isinstance(result, Mapping):
            log.error("control op %s returned %s, not a dict", op_name, type(result).__name__)
            return {"ok": False, "error": f"internal error in {op_name}: bad result"}
        answer = {"ok": True, **{k: v for k, v in result.items() if k != "ok"}}
        try:
            _encode(answer)
        except (TypeError, ValueError) as exc:
            log.error("control op %s returned an unserialisable result: %s", op_name, exc)
            return {"ok": False, "error": f"internal error in {op_name}: bad result"}
        return answer


class _HangupWatcher:
    """Sets `cancelled` when the client closes its end while a handler runs."""

    def __init__(self, conn: socket.socket, cancelled: threading.Event) -> None:
        self._conn = conn
        self._cancelled = cancelled
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="control-hangup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._conn, selectors.EVENT_READ)
            while not self._done.is_set():
                if not sel.select(timeout=0.2):
                    continue
                try:
                    data = self._conn.recv(4096, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:  # EOF: the client is gone
                    self._cancelled.set()
                    return

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=1)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadRequestError(f"the request has a number out of range: {text[:20]}")
    return value


def _no_constant(name: str) -> Any:
    raise _BadRequestError(f"the request is not JSON: {name} is not a number")


def _parse(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line.decode("utf-8"), parse_float=_finite,
                             parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise _BadRequestError("the request is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _BadRequestError(f"the request is not JSON: {exc}") from None
    except RecursionError:
        raise _BadRequestError("the request is nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise _BadRequestError(f"the request is not usable JSON: {exc}") from None
    if not isinstance(request, dict):
        raise _BadRequestError("the request must be a JSON object")
    if not _valid_text(request):
        raise _BadRequestError("the request is not valid Unicode text (a lone surrogate "
                               "in a string)")
    return request


def _valid_text(value: Any) -> bool:
    """No lone surrogate (JSON's "\\ud800") anywhere: handlers, logs and SQLite get text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _shown(text: str) -> str:
    """A client's string in an error answer: quoted, and short."""
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _type_ok(value: Any, expected: FieldType) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    for t in types:
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return -(1 << 63) <= value < 1 << 63  # what SQLite and the handlers can take
        if t not in (int, float) and isinstance(value, t):
            return True
    return False


def _type_name(expected: FieldType) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "an object"}
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(names.get(t, t.__name__) for t in types)


def _validate(op_name: str, op: _Op, request: dict[str, Any]) -> dict[str, Any]:
    problems = []
    clean: dict[str, Any] = {"op": op_name}
    for name, value in request.items():
        if name == "op":
            continue
        expected = op.required.get(name, op.optional.get(name))
        if expected is None:
            problems.append(f"unknown field {_shown(name)}")
        elif value is None and name in op.optional:
            continue
        elif not _type_ok(value, expected):
            problems.append(f"field {name!r} must be {_type_name(expected)}")
        else:
            clean[name] = float(value) if expected is float else value
    problems += [f"missing field {name!r}" for name in op.required if name not in request]
    if problems:
        raise _BadRequestError(f"bad {op_name} request: {'; '.join(problems)}")
    return clean


def _encode(answer: Mapping[str, Any]) -> bytes:
    text = json.dumps(answer, ensure_ascii=False, default=_json_default)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate from somewhere: escaped, still JSON
        return json.dumps(answer, default=_json_default).encode() + b"\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, Path | os.PathLike):
        return os.fspath(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --- client ------------------------------------------------------------------------------

class ControlClient:
    """The CLI's side: one connection per request."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def request(self, op: str, *, timeout: float | None = 10.0, **fields: Any) -> dict[str, Any]:
        """Send `{"op": op, **fields}` (None fields left out); the answer if ok.

        `timeout` bounds the connection and the wait for the answer (None: no bound; pass
        more than a blocking op waits, e.g. an enrolment's wait + a margin). Raises
        DaemonUnreachable (exit 4), RequestError (the daemon refused), ControlError
        (garbled answer).
        """
        answer = self.send({"op": op, **{k: v for k, v in fields.items() if v is not None}},
                           timeout=timeout)
        if answer.get("ok") is not True:
            raise RequestError(str(answer.get("error") or "the daemon refused the request"),
                                answer)
        return answer

    def send(self, request: Mapping[str, Any], *, timeout: float | None = 10.0
             ) -> dict[str, Any]:
        """Send a raw request and return the raw answer (ok or not)."""
        where = str(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            try:
                sock.connect(where)
            except FileNotFoundError:
                raise DaemonUnreachable(f"badged is not running: no control socket at "
                                        f"{where}") from None
            except ConnectionRefusedError:
                raise DaemonUnreachable(f"badged is not running: nothing answers on "
                                        f"{where} (stale socket)") from None
            except PermissionError:
                raise DaemonUnreachable(f"permission denied on {where}: run as a member of "
                                        "group badged (or root)") from None
            except TimeoutError:
                raise DaemonTimeout(f"badged did not accept the connection on {where} "
                                    f"within {timeout:g} s") from None
            except OSError as exc:
                raise DaemonUnreachable(f"cannot reach badged on {where}: "
                                        f"{exc.strerror or exc}") from None
            try:
                # The daemon may have answered (e.g. "busy") without reading: read anyway.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(_encode(request))
                data = _read_answer(sock)
            except TimeoutError:
                raise DaemonTimeout(f"badged did not answer on {where} within "
                                    f"{timeout:g} s") from None
            except OSError as exc:
                raise DaemonUnreachable(f"lost the connection to badged on {where}: "
                                        f"{exc.strerror or exc}") from None
        finally:
            sock.close()
        if not data:
            raise DaemonUnreachable(f"badged closed the connection on {where} "
                                    "without answering")
        try:
            answer = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ControlError(f"garbled answer from badged on {where}") from None
        if not isinstance(answer, dict):
            raise ControlError(f"garbled answer from badged on {where}")
        return answer


def _read_answer(sock: socket.socket) -> bytes:
    buf = bytearray()
    while b"\n" not in buf and len(buf) <= MAX_ANSWER:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return bytes(buf.split(b"\n", 1)[0])
