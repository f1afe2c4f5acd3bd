"""sd_notify through a real datagram Unix socket, as systemd's $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from badged.daemon import notify


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)
    yield
    notify.close()  # drop the notifier bound to this test's socket


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket bound in tmp_path, named by $NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def nothing_received(sock: socket.socket) -> bool:
    sock.settimeout(0.1)
    try:
        sock.recv(4096)
    except TimeoutError:
        return True
    return False


def test_lifecycle_messages_reach_the_socket(systemd: socket.socket) -> None:
    notify.ready()
    assert recv(systemd) == "READY=1"
    notify.status("2 lecteurs,\n0 lot en attente — réinscriptions envoyées")
    assert recv(systemd) == "STATUS=2 lecteurs, 0 lot en attente — réinscriptions envoyées"
    notify.watchdog()
    assert recv(systemd) == "WATCHDOG=1"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify.reloading()
    lines = recv(systemd).split("\n")
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC" and int(value) >= before
    notify.stopping()
    assert recv(systemd) == "STOPPING=1"


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"badged-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notify.ready()
        assert recv(sock) == "READY=1"


def test_no_op_without_notify_socket(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "n.sock"))
        notify.ready()
        notify.status("x")
        notify.watchdog()
        notify.stopping()
        assert nothing_received(sock)


def test_missing_socket_is_silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "absent.sock"))
    notify.ready()  # must not raise


def test_follows_a_changed_notify_socket(tmp_path: Path, systemd: socket.socket,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    notify.ready()
    assert recv(systemd) == "READY=1"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other:
        other.bind(str(tmp_path / "other.sock"))
        other.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "other.sock"))
        notify.watchdog()
        assert recv(other) == "WATCHDOG=1"
    assert nothing_received(systemd)


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    (None, None, None),
    ("30000000", None, 15.0),
    ("30000000", "self", 15.0),
    ("30000000", "1", None),          # meant for another process
    ("0", None, None),
    ("abc", None, None),
    ("-5", None, None),
])
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec: str | None,
                           pid: str | None, expected: float | None) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    assert notify.watchdog_interval() == expected
