"""The local control socket: how `badged status`, `enrol`, `exchange run` … reach the daemon.

A Unix stream socket at `<runtime_dir>/control.sock`, mode 0660 (group `badged` may
connect) whatever the umask. Protocol: JSON lines, one request and one answer per
connection:

    → {"op": "status"}
    ← {"ok": true, ...}            or   {"ok": false, "error": "message"}

Ops are registered by the runtime: `server.register("status", handler)`; a handler gets the
validated request dict (with its "op") and returns a dict (merged into the answer). It may
block (an enrolment waits for a tap): each connection is served in its own thread, at
most `max_clients` at once; beyond that a client gets a polite "busy" answer. Handlers
raise `OpError("message")` for a clean error answer; any other exception is logged with
its traceback and answered as an internal error. A handler registered with
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
import os
import selectors
import socket
import stat
import threading
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
MAX_CLIENTS = 16

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
                 request_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.max_clients = max_clients
        self.request_timeout = request_timeout
        self._ops: dict[str, _Op] = {}
        self._slots = threading.BoundedSemaphore(max_clients)
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._conns: set[threading.Thread] = set()
        self._conns_lock = threading.Lock()
        self.register("ping", lambda _req: {"pid": os.getpid()})

    def register(self, op: str, handler: Handler, *,
                 required: Mapping[str, FieldType] | None = None,
                 optional: Mapping[str, FieldType] | None = None,
                 cancellable: bool = False) -> None:
        """Serve `op` with `handler(request)` (or `handler(request, cancelled)`).

        `required`/`optional` map field names to accepted types (`str`, `int`, `float` —
        an int is accepted where a float is expected —, `bool`, `list`, `dict`, or a tuple
        of them); any other field is refused. A null optional field counts as absent.
        Re-registering an op replaces its handler (a reload).
        """
        self._ops[op] = _Op(handler, dict(required or {}), dict(optional or {}), cancellable)

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
        assert self._selector is not None and self._listener is not None
        while not self._closing.is_set():
            for key, _ in self._selector.select():
                if key.fileobj is not self._listener or self._closing.is_set():
                    continue
                try:
                    conn, _addr = self._listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    log.warning("control socket accept failed: %s", exc)
                    continue
                conn.setblocking(True)
                if not self._slots.acquire(blocking=False):
                    self._refuse_busy(conn)
                    continue
                thread = threading.Thread(target=self._serve, args=(conn,),
                                          name="control-conn", daemon=True)
                with self._conns_lock:
                    self._conns.add(thread)
                try:
                    thread.start()
                except RuntimeError as exc:  # can't start new thread
                    log.error("control socket: %s", exc)
                    with self._conns_lock:
                        self._conns.discard(thread)
                    self._slots.release()
                    conn.close()

    def _refuse_busy(self, conn: socket.socket) -> None:
        log.warning("control socket: %d requests in progress, refusing a new one",
                    self.max_clients)
        with contextlib.suppress(OSError):
            # Read the request first (briefly): closing with it unread could lose the
            # answer (the client's send fails, or it reads a reset).
            conn.settimeout(0.2)
            with contextlib.suppress(_BadRequestError):
                _read_line(conn, MAX_LINE)
            conn.settimeout(1)
            conn.sendall(_encode({"ok": False, "error": f"badged is busy ({self.max_clients} "
                                  "requests in progress): try again"}))
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(self.request_timeout)
            try:
                line = _read_line(conn, MAX_LINE)
                answer = self._dispatch(line, conn)
            except _BadRequestError as exc:
                log.info("control socket: bad request: %s", exc)
                answer = {"ok": False, "error": str(exc)}
            conn.settimeout(10)
            conn.sendall(_encode(answer))
        except OSError as exc:
            log.debug("control socket: client went away: %s", exc)
        finally:
            conn.close()
            self._slots.release()
            with self._conns_lock:
                self._conns.discard(threading.current_thread())

    def _dispatch(self, line: bytes, conn: socket.socket) -> dict[str, Any]:
        request = _parse(line)
        op_name = request.get("op")
        if not isinstance(op_name, str):
            raise _BadRequestError("the request has no 'op' (a string)")
        op = self._ops.get(op_name)
        if op is None:
            known = ", ".join(sorted(self._ops))
            raise _BadRequestError(f"unknown op {op_name!r} (known: {known})")
        request = _validate(op_name, op, request)
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
            log.info("control op %s refused: %s", op_name, exc)
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


def _read_line(conn: socket.socket, limit: int) -> bytes:
    buf = bytearray()
    while True:
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            raise _BadRequestError("no complete request line received in time") from None
        if not chunk:
            break
        newline = chunk.find(b"\n")
        if newline >= 0:
            buf += chunk[:newline]
            break
        buf += chunk
        if len(buf) > limit:
            break
    if len(buf) > limit:
        raise _BadRequestError(f"request too long (more than {limit} bytes)")
    if not buf.strip():
        raise _BadRequestError("empty request: send one JSON object on one line")
    return bytes(buf)


def _parse(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise _BadRequestError("the request is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _BadRequestError(f"the request is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise _BadRequestError("the request must be a JSON object")
    return request


def _type_ok(value: Any, expected: FieldType) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    for t in types:
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
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
            problems.append(f"unknown field {name!r}")
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
    return json.dumps(answer, ensure_ascii=False, default=_json_default).encode() + b"\n"


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
