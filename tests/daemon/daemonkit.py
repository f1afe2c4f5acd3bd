"""Run the real daemon (`badged run`) as a subprocess, the way systemd does, for the tests.

    site = make_site(tmp_path)                       # host file + copy of config/ + keys
    with Notifications() as systemd:                 # $NOTIFY_SOCKET: a datagram socket
        proc = DaemonProcess(site, pcsc.env(), systemd, watchdog_usec=400_000).start()
        systemd.wait_for("READY=1")
        text = proc.scrape()                         # GET /metrics
        proc.stop()                                  # SIGTERM, exit code

Nothing sleeps blindly: waits are on notify datagrams, HTTP answers or a polled condition
with a deadline. Socket paths (notify, control) live in a short directory under /tmp:
AF_UNIX paths are limited to 108 bytes and pytest's tmp_path can be longer.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from badged.daemon.control import ControlClient, socket_path
from badged.demo.runner import write_credentials

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
CARD = REPO / "demo" / "cards" / "crous-card.yaml"
BADGED = Path(sys.executable).with_name("badged")  # the venv's console script
ENROLMENT, LOOKUP = "Virtual PCD 00 00", "Virtual PCD 00 01"

T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the config refuses port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], timeout: float = 10.0, what: str = "condition",
               step: float = 0.02) -> T:
    """Poll `check` until it returns a truthy value (returned) or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = check()
        except Exception as exc:  # e.g. connection refused while starting
            value, last_exc = None, exc  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc})" if last_exc else ""
            raise TimeoutError(f"{what}: not true after {timeout:g} s{detail}")
        time.sleep(step)


@dataclass
class Site:
    """A host file, its config tree (a copy of the repo's), state, runtime and keys."""

    root: Path
    host_file: Path
    tree: Path
    state_dir: Path
    runtime_dir: Path
    credentials: Path
    metrics_port: int
    _short: Path = field(repr=False)

    @property
    def school_file(self) -> Path:
        return self.tree / "schools" / "demo.yaml"

    @property
    def control_socket(self) -> Path:
        return socket_path(self.runtime_dir)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def client(self) -> ControlClient:
        return ControlClient(self.control_socket)

    def set_readers(self, readers: Iterable[tuple[str, str]]) -> None:
        """Rewrite the school's `readers:` rules as (name, role) pairs."""
        rules = "".join(f'  - {{name: "{name}", role: {role}}}\n' for name, role in readers)
        text = self.school_file.read_text()
        text, n = re.subn(r"^readers:\n(?:  - .*\n)+", "readers:\n" + rules, text,
                          flags=re.MULTILINE)
        assert n == 1, "the demo school's readers block moved: update daemonkit"
        self.school_file.write_text(text)

    def env(self) -> dict[str, str]:
        return {"CREDENTIALS_DIRECTORY": str(self.credentials)}

    def cleanup(self) -> None:
        shutil.rmtree(self._short, ignore_errors=True)


def make_site(root: Path, *, metrics_port: int | None = None, log_level: str = "DEBUG") -> Site:
    """Host file (school demo, metrics on a free loopback port) + tree copy + keys in `root`."""
    tree = root / "config"
    shutil.copytree(CONFIG, tree)
    short = Path(tempfile.mkdtemp(prefix="bd-", dir="/tmp"))
    port = metrics_port or free_port()
    host_file = root / "badged.yaml"
    host_file.write_text(
        f"tree: {tree}\nschool: demo\nstate_dir: {root / 'state'}\n"
        f"runtime_dir: {short / 'run'}\nlog_level: {log_level}\n"
        f'metrics_listen: "127.0.0.1:{port}"\n')
    return Site(root=root, host_file=host_file, tree=tree, state_dir=root / "state",
                runtime_dir=short / "run", credentials=write_credentials(root / "credentials"),
                metrics_port=port, _short=short)


@dataclass(frozen=True)
class Datagram:
    at: float  # time.monotonic() at reception
    text: str


class Notifications:
    """systemd's side of sd_notify: a datagram socket, read by a thread into `received`.

    `on_ready` (optional) is called in the reading thread right when READY=1 arrives, before
    anything else: a probe of what must already be true at READY time.
    """

    def __init__(self, on_ready: Callable[[], Any] | None = None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="bd-notify-", dir="/tmp"))
        self.path = self._dir / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.received: list[Datagram] = []
        self.on_ready = on_ready
        self.ready_probe: Any = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="notify-listener", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:  # shutdown() by close()
                return
            at = time.monotonic()
            text = data.decode("utf-8", "replace")
            if self.on_ready is not None and "READY=1" in text.split("\n"):
                try:
                    self.ready_probe = self.on_ready()
                except Exception as exc:
                    self.ready_probe = exc
            with self._cond:
                self.received.append(Datagram(at, text))
                self._cond.notify_all()

    def lines(self, prefix: str = "") -> list[Datagram]:
        """Every received line starting with `prefix` (multi-line datagrams are split)."""
        with self._cond:
            return [Datagram(d.at, line) for d in self.received
                    for line in d.text.split("\n") if line.startswith(prefix)]

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 10.0,
                 after: float | None = None,
                 proc: subprocess.Popen[bytes] | None = None) -> list[Datagram]:
        """Block until `count` lines starting with `prefix` (received after `after`) are in;
        fail early when `proc` exits."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [d for d in self.lines(prefix) if after is None or d.at > after]
                if len(found) >= count:
                    return found
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"daemon exited ({proc.returncode}) before "
                                         f"{count} × {prefix!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{count} × {prefix!r} not received in {timeout:g} s; "
                                       f"got {[d.text for d in self.received]}")
                self._cond.wait(min(left, 0.1))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=2)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Notifications:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaemonProcess:
    """`badged --host-config … run` in a subprocess; stderr (the log) goes to a file."""

    def __init__(self, site: Site, pcsc_env: Mapping[str, str],
                 notifications: Notifications | None = None, *,
                 watchdog_usec: int | None = None, extra_env: Mapping[str, str] | None = None,
                 argv: list[str] | None = None) -> None:
        self.site = site
        self.notifications = notifications
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                            "BADGED_HOST_CONFIG")}
        env.update(pcsc_env)
        env.update(site.env())
        if notifications is not None:
            env["NOTIFY_SOCKET"] = str(notifications.path)
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        env.update(extra_env or {})
        self.env = env
        self.argv = argv or [str(BADGED), "--host-config", str(site.host_file), "run"]
        self.log_path = site.root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    def start(self) -> DaemonProcess:
        with self.log_path.open("wb") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15.0) -> DaemonProcess:
        assert self.notifications is not None and self.proc is not None
        try:
            self.notifications.wait_for("READY=1", timeout=timeout, proc=self.proc)
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n--- daemon log ---\n{self.log()}") from None
        return self

    def send(self, sig: int) -> None:
        """Send a signal (SIGHUP, SIGTERM, …) to the daemon."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def scrape(self, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(self.site.metrics_url, timeout=timeout) as answer:
            assert answer.status == 200
            return str(answer.read().decode("utf-8"))

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample on a fresh scrape (None if absent)."""
        return sample(self.scrape(), name, **labels)

    def wait_metric(self, name: str, value: float, timeout: float = 10.0,
                    **labels: str) -> None:
        def check() -> bool:
            assert self.alive, f"daemon exited:\n{self.log()}"
            return self.metric(name, **labels) == value
        try:
            wait_until(check, timeout, f"{name}{labels} == {value}")
        except TimeoutError as exc:
            got = self.metric(name, **labels) if self.alive else "(daemon gone)"
            raise AssertionError(f"{exc}; last value {got}\n--- daemon log ---\n"
                                 f"{self.log()}") from None

    def status(self) -> dict[str, Any]:
        return self.site.client().request("status", timeout=5)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop within {timeout:g} s:\n"
                                 f"{self.log()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# What the `start_daemon` fixture (conftest.py) hands a test.
StartDaemon = Callable[..., DaemonProcess]


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of each sample of a text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \S+)?", line)
        assert m, f"unparsable sample line {line!r}"
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m[2] or ""))
        out.append((m[1], labels, float(m[3])))
    return out


def sample(text: str, name: str, **labels: str) -> float | None:
    for n, ls, value in samples(text):
        if n == name and all(ls.get(k) == v for k, v in labels.items()):
            return value
    return None
