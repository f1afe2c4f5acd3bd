"""The control socket over real Unix sockets: protocol, errors, concurrency, permissions."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from badged.daemon.control import (
    MAX_LINE,
    ControlClient,
    ControlError,
    ControlServer,
    ControlSocketError,
    DaemonTimeout,
    DaemonUnreachable,
    OpError,
    RequestError,
    socket_path,
)


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # Short: a Unix socket path is limited to 107 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="bd-", dir="/tmp") as tmp:
        yield Path(tmp)


@pytest.fixture
def server(runtime_dir: Path) -> Iterator[ControlServer]:
    srv = ControlServer(socket_path(runtime_dir), request_timeout=2)
    srv.register("status", lambda req: {"readers": 2, "school": "emse"})
    srv.register("echo", lambda req: dict(req), required={"text": str},
                 optional={"count": int, "ratio": float, "flag": bool})
    srv.start()
    yield srv
    srv.close()


def raw(path: Path, payload: bytes, timeout: float = 5) -> dict[str, Any]:
    """Send bytes as they are, read one answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(payload)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def test_socket_path() -> None:
    assert socket_path("/run/badged") == Path("/run/badged/control.sock")


def test_status_round_trip(server: ControlServer) -> None:
    answer = ControlClient(server.path).request("status")
    assert answer == {"ok": True, "readers": 2, "school": "emse"}
    assert ControlClient(server.path).request("ping")["pid"] == os.getpid()


def test_fields_are_validated_and_passed(server: ControlServer) -> None:
    client = ControlClient(server.path)
    answer = client.request("echo", text="é", count=3, ratio=2, flag=True, timeout=5)
    assert answer == {"ok": True, "op": "echo", "text": "é", "count": 3, "ratio": 2.0,
                      "flag": True}
    assert client.request("echo", text="x", count=None) == {"ok": True, "op": "echo",
                                                            "text": "x"}


@pytest.mark.parametrize(("payload", "message"), [
    (b"hello\n", "not JSON"),
    (b"\xff\xfe{}\n", "not UTF-8"),
    (b"[1, 2]\n", "must be a JSON object"),
    (b'{"text": "x"}\n', "no 'op'"),
    (b'{"op": 3}\n', "no 'op'"),
    (b'{"op": "reboot"}\n', "unknown op 'reboot'"),
    (b'{"op": "echo"}\n', "missing field 'text'"),
    (b'{"op": "echo", "text": 1}\n', "field 'text' must be a string"),
    (b'{"op": "echo", "text": "x", "count": true}\n', "field 'count' must be an integer"),
    (b'{"op": "echo", "text": "x", "count": 1.5}\n', "field 'count' must be an integer"),
    (b'{"op": "echo", "text": "x", "ratio": "1"}\n', "field 'ratio' must be a number"),
    (b'{"op": "echo", "text": "x", "sudo": 1}\n', "unknown field 'sudo'"),
    (b'{"op": "echo", "text": null}\n', "field 'text' must be a string"),
    (b"\n", "empty request"),
    # lone surrogates, in a value, a key, the op: a clean error, never an internal one
    (b'{"op": "echo", "text": "\\ud800"}\n', "lone surrogate"),
    (b'{"op": "echo", "\\udc80": "x"}\n', "lone surrogate"),
    (b'{"op": "\\ud800"}\n', "lone surrogate"),
    (b'{"op": "echo", "text": "x", "ratio": NaN}\n', "NaN is not a number"),
    (b'{"op": "echo", "text": "x", "ratio": -Infinity}\n', "-Infinity is not a number"),
    (b'{"op": "echo", "text": "x", "ratio": 1e999}\n', "number out of range"),
    (b'{"op": "echo", "text": "x", "count": 1' + b"0" * 5000 + b'}\n', "not usable JSON"),
    (b'{"op": "echo", "text": "x", "count": 1' + b"0" * 30 + b'}\n',
     "field 'count' must be an integer"),
    (b'{"op": "echo", "text": ' + b"[" * 40000 + b"]" * 40000 + b"}\n", "request too long"),
    (b'{"op": "echo", "text": ' + b"[" * 20000 + b"]" * 20000 + b"}\n", "nested too deeply"),
    (b'{"op": "' + b"x" * 1000 + b'"}\n', "unknown op 'xxxxxxxxxx"),
])
def test_malformed_requests_get_an_error_answer(server: ControlServer, payload: bytes,
                                                message: str) -> None:
    answer = raw(server.path, payload)
    assert answer["ok"] is False
    assert message in answer["error"]
    assert ControlClient(server.path).request("status")["ok"]  # still serving


def test_request_without_newline_then_eof(server: ControlServer) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(server.path))
        sock.sendall(b'{"op": "status"}')
        sock.shutdown(socket.SHUT_WR)
        assert json.loads(sock.makefile("rb").readline())["ok"] is True


def test_too_long_line(server: ControlServer) -> None:
    payload = b'{"op": "echo", "text": "' + b"x" * MAX_LINE + b'"}\n'
    answer = raw(server.path, payload)
    assert answer == {"ok": False, "error": f"request too long (more than {MAX_LINE} bytes)"}
    fits = b'{"op": "echo", "text": "' + b"x" * (MAX_LINE - 40) + b'"}\n'
    assert raw(server.path, fits)["ok"] is True


def test_silent_client_times_out(runtime_dir: Path) -> None:
    with ControlServer(socket_path(runtime_dir), request_timeout=0.3) as srv, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(srv.path))
        answer = json.loads(sock.makefile("rb").readline())
    assert answer["ok"] is False and "in time" in answer["error"]


def test_handler_errors(server: ControlServer, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(req: dict[str, Any]) -> dict[str, Any]:
        raise OpError("no person p42")

    def crash(req: dict[str, Any]) -> dict[str, Any]:
        raise ZeroDivisionError("division by zero")

    server.register("refuse", refuse)
    server.register("crash", crash)
    server.register("bad", lambda req: {"x": object()})
    server.register("list", lambda req: [1])  # type: ignore[arg-type, return-value]
    client = ControlClient(server.path)
    with caplog.at_level(logging.INFO, logger="badged.daemon.control"):
        with pytest.raises(RequestError) as err:
            client.request("refuse")
        assert err.value.error == "no person p42"
        with pytest.raises(RequestError, match="internal error in crash: ZeroDivisionError"):
            client.request("crash")
        with pytest.raises(RequestError, match="internal error in bad: bad result"):
            client.request("bad")
        with pytest.raises(RequestError, match="internal error in list: bad result"):
            client.request("list")
    crashes = [r for r in caplog.records if "crash failed" in r.getMessage()]
    assert crashes and crashes[0].exc_info is not None  # logged with its traceback
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refused and refused[0].exc_info is None
    assert client.request("status")["ok"]


def test_blocking_handlers_run_concurrently_and_the_rest_is_refused(
        runtime_dir: Path) -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def wait(req: dict[str, Any]) -> dict[str, Any]:
        entered.release()
        release.wait(10)
        return {"waited": True}

    srv = ControlServer(socket_path(runtime_dir), max_clients=3)
    srv.register("wait", wait)
    srv.register("plain", lambda req: {})
    srv.register("status", lambda req: {}, light=True)
    answers: list[dict[str, Any]] = []
    with srv:
        threads = [threading.Thread(target=lambda: answers.append(
            ControlClient(srv.path).request("wait", timeout=10))) for _ in range(3)]
        for t in threads:
            t.start()
        for _ in range(3):
            assert entered.acquire(timeout=5)
        with pytest.raises(RequestError, match="busy"):
            ControlClient(srv.path).request("plain", timeout=5)
        # a light op has slots of its own: status answers while every slot is blocked
        assert ControlClient(srv.path).request("status", timeout=5) == {"ok": True}
        release.set()
        for t in threads:
            t.join(5)
        assert answers == [{"ok": True, "waited": True}] * 3
        assert ControlClient(srv.path).request("status", timeout=5) == {"ok": True}


def test_client_hangup_cancels_a_cancellable_handler(server: ControlServer) -> None:
    started, cancelled_seen = threading.Event(), threading.Event()

    def enrol(req: dict[str, Any], cancelled: threading.Event) -> dict[str, Any]:
        started.set()
        if cancelled.wait(5):
            cancelled_seen.set()
            raise OpError("cancelled")
        return {"csn": "04112233445566"}

    server.register("enrol", enrol, required={"person": str}, cancellable=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(server.path))
        sock.sendall(b'{"op": "enrol", "person": "p1"}\n')
        assert started.wait(5)
    assert cancelled_seen.wait(5)
    # a client that stays gets its answer
    started.clear()
    server.register("enrol", lambda req, cancelled: {"person": req["person"]},
                    required={"person": str}, cancellable=True)
    assert ControlClient(server.path).request("enrol", person="p2")["person"] == "p2"


def test_socket_mode_is_0660_under_umask_0077(runtime_dir: Path) -> None:
    old = os.umask(0o077)
    try:
        with ControlServer(socket_path(runtime_dir)) as srv:
            st = srv.path.lstat()
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o660
            assert sorted(p.name for p in runtime_dir.iterdir()) == ["control.sock"]
    finally:
        os.umask(old)
    assert not (runtime_dir / "control.sock").exists()  # removed at close


def test_stale_socket_is_replaced(runtime_dir: Path) -> None:
    path = socket_path(runtime_dir)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a crashed daemon's socket
    with pytest.raises(DaemonUnreachable, match="stale"):
        ControlClient(path).request("ping")
    with ControlServer(path) as srv:
        assert ControlClient(srv.path).request("ping")["ok"]


def test_live_daemon_is_not_displaced(server: ControlServer) -> None:
    with pytest.raises(ControlSocketError, match="another badged is already listening"):
        ControlServer(server.path).start()
    assert ControlClient(server.path).request("status")["ok"]


def test_a_regular_file_is_not_replaced(runtime_dir: Path) -> None:
    path = socket_path(runtime_dir)
    path.write_text("precious")
    with pytest.raises(ControlSocketError, match="not a socket"):
        ControlServer(path).start()
    assert path.read_text() == "precious"


def test_close_leaves_a_newer_socket_alone(runtime_dir: Path) -> None:
    path = socket_path(runtime_dir)
    old = ControlServer(path)
    old.start()
    path.unlink()  # e.g. an operator removed it, and a new daemon took the path
    with ControlServer(path) as new:
        old.close()
        assert ControlClient(new.path).request("ping")["ok"]


def test_client_errors_name_the_path(runtime_dir: Path) -> None:
    path = socket_path(runtime_dir)
    with pytest.raises(DaemonUnreachable, match=f"no control socket at {path}"):
        ControlClient(path).request("status")


def test_client_timeout(server: ControlServer) -> None:
    server.register("slow", lambda req: time.sleep(0.5) or {})
    with pytest.raises(DaemonTimeout, match="did not answer"):
        ControlClient(server.path).request("slow", timeout=0.2)


def test_garbled_answer(runtime_dir: Path) -> None:
    path = socket_path(runtime_dir)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fake:
        fake.bind(str(path))
        fake.listen()

        def answer() -> None:
            conn, _ = fake.accept()
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n\n")
            conn.close()

        t = threading.Thread(target=answer)
        t.start()
        with pytest.raises(ControlError, match="garbled"):
            ControlClient(path).request("status")
        t.join(5)


def test_permission_denied(server: ControlServer) -> None:
    """A user outside group badged: DaemonUnreachable naming the path and the group.

    The client runs in a forked child that drops to nobody (as root) — no interpreter or
    file of the checkout needs to be readable by nobody, wherever the checkout lives.
    """
    if os.geteuid() != 0:
        server.path.chmod(0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, try the socket, report through the pipe
        code = 1
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            try:
                ControlClient(server.path).request("status", timeout=5)
            except DaemonUnreachable as exc:
                os.write(write, str(exc).encode())
                code = 4
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 4, message
    assert f"permission denied on {server.path}" in message
    assert "group badged" in message


# --- fairness --------------------------------------------------------------------------------

def idle_connections(path: Path, n: int, first_bytes: bytes = b"") -> list[socket.socket]:
    socks = []
    for _ in range(n):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        if first_bytes:
            sock.sendall(first_bytes)
        socks.append(sock)
    return socks


def test_idle_connections_hold_no_slot(runtime_dir: Path) -> None:
    """16 idle connections (and 16 half-sent requests): status still answers at once.

    The client's own timeout (1 s) is the bound: before, every slot was held by an idle
    connection until its 10 s timeout, and a client waited for "busy".
    """
    with ControlServer(socket_path(runtime_dir), request_timeout=30) as srv:
        srv.register("status", lambda req: {"up": True}, light=True)
        srv.register("plain", lambda req: {"done": True})
        socks = idle_connections(srv.path, 16) + idle_connections(srv.path, 16, b'{"op": ')
        try:
            assert ControlClient(srv.path).request("status", timeout=1) == {"ok": True,
                                                                            "up": True}
            assert ControlClient(srv.path).request("plain", timeout=1)["done"] is True
        finally:
            for sock in socks:
                sock.close()


def test_a_slow_sender_is_cut_at_the_request_deadline(runtime_dir: Path) -> None:
    """A client trickling its request byte by byte (for 10 s) is answered within its own
    3 s timeout: request_timeout bounds the whole line, not each byte."""
    stop = threading.Event()
    with ControlServer(socket_path(runtime_dir), request_timeout=0.5) as srv, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(srv.path))

        def trickle() -> None:
            for byte in b'{"op": "ping"' + b" " * 200:
                if stop.wait(0.05):
                    return
                try:
                    sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            sock.settimeout(3)
            answer = json.loads(sock.makefile("rb").readline())
        finally:
            stop.set()
            sender.join(5)
    assert answer == {"ok": False,
                      "error": "no complete request line received in time (0.5 s)"}


def test_beyond_max_pending_the_oldest_idle_connection_is_dropped(runtime_dir: Path) -> None:
    with ControlServer(socket_path(runtime_dir), request_timeout=30, max_pending=3) as srv:
        socks = idle_connections(srv.path, 3)
        try:
            assert ControlClient(srv.path).request("ping", timeout=2)["ok"]
            socks[0].settimeout(5)
            assert json.loads(socks[0].recv(4096))["error"] == (
                "too many connections waiting to send a request")
        finally:
            for sock in socks:
                sock.close()


# --- fuzzing -------------------------------------------------------------------------------

# Text with lone surrogates too (JSON can carry them as "\ud800" escapes).
any_text = st.text(max_size=20) | st.text(st.characters(categories=["Cs", "Ll", "Zs"]),
                                          max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                      children, max_size=3),
    max_leaves=8)
requests = st.one_of(
    st.binary(max_size=200).map(lambda b: b + b"\n"),
    st.fixed_dictionaries({"op": st.sampled_from(["status", "ping", "echo", "crash-free"])},
                          optional={"text": json_values, "count": json_values,
                                    "ratio": json_values, "flag": json_values,
                                    "other": json_values}).map(
        lambda r: json.dumps(r).encode() + b"\n"),
    any_text.map(lambda t: json.dumps({"op": "echo", "text": t}).encode() + b"\n"),
    any_text.map(lambda t: json.dumps({"op": t, t: 1}).encode() + b"\n"),
)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[ControlServer]:
    with tempfile.TemporaryDirectory(prefix="bd-", dir="/tmp") as tmp:
        srv = ControlServer(socket_path(tmp), request_timeout=2)
        srv.register("status", lambda req: {"readers": 2}, light=True)
        srv.register("echo", lambda req: dict(req), required={"text": str},
                     optional={"count": int, "ratio": float, "flag": bool})
        with srv:
            yield srv


@given(requests)
def test_fuzzed_requests_get_a_clean_answer(fuzz_server: ControlServer, payload: bytes) -> None:
    answer = raw(fuzz_server.path, payload)
    assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool)
    if not answer["ok"]:
        assert isinstance(answer["error"], str)
        assert "internal error" not in answer["error"]
