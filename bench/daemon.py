"""Bench: the daemon's memory, idle CPU and start-up time, beside a bare Python baseline.

Against a private pcscd (vpcd reader pair) with the simulated CROUS card served by a
separate `badged card simulate` process (demo/cards/crous-card.yaml) and the demo school
(a copy of config/, metrics on a free loopback port, test keys as credentials):

1. memory (in a child process that imports nothing of badged before the daemon's own
   modules, so the figure is the daemon's, not this bench's): a `Daemon` is built and
   started exactly as `badged run` does (metrics port, control socket, reader thread);
   VmRSS after start-up and the first tap,
   then after N more taps driven through the reader thread's own tap path
   (`ReaderService._card_inserted(reader, atr)`: connect, full profile read, lookup, event
   row in the store, metrics, last taps) — a real read on pcscd each time, only the
   physical insert/remove (0.4 s of pcscd polling each) is skipped;
2. idle CPU: `badged run` as a real subprocess (watchdog as in systemd/badged.service:
   WATCHDOG_USEC=30 s), utime+stime from /proc/PID/stat over `--idle-seconds`, scaled to 60 s;
3. start-up: wall time from spawning `badged run` to the READY=1 datagram on a real
   $NOTIFY_SOCKET (first start on an empty state dir, then warm starts).

Baseline, same run: a bare `python -c` (RSS, start-up) and `sleep` (idle CPU is 0).
Goals: RSS ≤ 45 MB after the taps, ≤ 0.2 s CPU per idle minute, ≤ 1 s to READY.

    .venv/bin/python bench/daemon.py                       # 10 000 taps, 60 s idle
    .venv/bin/python bench/daemon.py --taps 1000 --idle-seconds 10 --starts 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the memory child must import only the daemon
    from badged.demo.pcscd_sandbox import PcscdSandbox

REPO = Path(__file__).resolve().parent.parent
CARD = REPO / "demo" / "cards" / "crous-card.yaml"
BADGED = Path(sys.executable).with_name("badged")
LOOKUP = "Virtual PCD 00 01"
GOAL_RSS_MB, GOAL_IDLE_CPU, GOAL_READY = 45.0, 0.2, 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def vm(field: str, pid: int | str = "self") -> float:
    """A /proc/PID/status memory field (VmRSS, VmHWM) in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_host(root: Path) -> tuple[Path, Path]:
    """Host file (school demo, free metrics port) + tree copy + credentials; (host, creds)."""
    from badged.demo.runner import DEMO_KEYS

    shutil.copytree(REPO / "config", root / "config")
    creds = root / "credentials"
    creds.mkdir(mode=0o700)
    for name, value in DEMO_KEYS.items():
        fd = os.open(creds / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
    host = root / "badged.yaml"
    host.write_text(f"tree: {root / 'config'}\nschool: demo\nstate_dir: {root / 'state'}\n"
                    f"runtime_dir: {root / 'run'}\nlog_level: WARNING\n"
                    f'metrics_listen: "127.0.0.1:{free_port()}"\n')
    return host, creds


@contextmanager
def simulated_card(pcscd: PcscdSandbox) -> Iterator[subprocess.Popen[bytes]]:
    """The CROUS card on the lookup reader, served by `badged card simulate`."""
    assert pcscd.port is not None
    proc = subprocess.Popen([str(BADGED), "card", "simulate", "--card", str(CARD),
                             "--vpcd-port", str(pcscd.port + 1)],
                            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pcscd.wait_card(present=True, reader=1, timeout=10)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def baseline_python() -> tuple[float, float]:
    """(start-up seconds, RSS MB) of a bare `python -c` reading its own VmRSS."""
    code = ("import pathlib;print([l.split()[1] for l in pathlib.Path('/proc/self/status')"
            ".read_text().splitlines() if l.startswith('VmRSS:')][0])")
    times, rss = [], 0.0
    for _ in range(5):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        times.append(time.perf_counter() - start)
        rss = int(out.stdout) * 1024 / 1e6
    return statistics.median(times), rss


# --- 1. memory, in process ----------------------------------------------------------------

def bench_memory(pcscd: PcscdSandbox, root: Path, taps: int) -> dict[str, float]:
    """The daemon in a child process of its own (bench/_daemon_memory.py), so that its RSS is
    the daemon's: not this bench's own imports (pcscd sandbox, demo helpers, argparse…)."""
    host_file, creds = make_host(root / "mem")
    env = {**os.environ, **pcscd.env(), "CREDENTIALS_DIRECTORY": str(creds)}
    env.pop("NOTIFY_SOCKET", None)
    with simulated_card(pcscd):
        out = subprocess.run([sys.executable, str(Path(__file__).with_name("_daemon_memory.py")),
                              str(host_file), str(taps)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"memory child failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


# --- 2 and 3: a real `badged run` ---------------------------------------------------------

class Notify:
    def __init__(self, root: Path) -> None:
        self.path = root / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait(self, what: str, timeout: float, proc: subprocess.Popen[bytes]) -> float:
        """Monotonic time at which a datagram with line `what` arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if proc.poll() is not None:
                    raise SystemExit(f"badged run exited with {proc.returncode}") from None
                continue
            if what in data.decode().split("\n"):
                return time.monotonic()
        raise SystemExit(f"no {what} within {timeout} s")

    def close(self) -> None:
        self.sock.close()


def spawn(host_file: Path, creds: Path, pcscd: PcscdSandbox, notify: Notify,
          log: Path) -> tuple[subprocess.Popen[bytes], float]:
    env = {**os.environ, **pcscd.env(), "CREDENTIALS_DIRECTORY": str(creds),
           "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "30000000",
           "PYTHONFAULTHANDLER": "1"}
    env.pop("WATCHDOG_PID", None)
    with log.open("ab") as out:
        start = time.monotonic()
        proc = subprocess.Popen([str(BADGED), "--host-config", str(host_file), "run"],
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return proc, start


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM; a daemon still up after 15 s gets SIGABRT (faulthandler dumps its threads
    into the log, as under systemd's watchdog)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            return proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def bench_subprocess(pcscd: PcscdSandbox, root: Path, idle_seconds: float,
                     starts: int) -> dict[str, object]:
    host_file, creds = make_host(root / "proc")
    notify = Notify(root / "proc")
    log = root / "proc" / "daemon.log"
    ready_times, idle_cpu, rss = [], 0.0, 0.0
    try:
        for run in range(starts):
            proc, start = spawn(host_file, creds, pcscd, notify, log)
            ready_times.append(notify.wait("READY=1", 30, proc) - start)
            if run == 0:  # the idle measurement, on the first daemon
                time.sleep(1.0)  # let the reader thread settle (first poll, PnP)
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(idle_seconds)
                cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
                idle_cpu = (cpu1 - cpu0) * 60 / (t1 - t0)
                rss = vm("VmRSS", proc.pid)
            code = stop(proc)
            if code != 0:
                raise SystemExit(f"badged run exited {code}:\n{log.read_text()}")
    finally:
        notify.close()
    return {"ready": ready_times, "idle_cpu_per_min": idle_cpu, "idle_rss": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--taps", type=int, default=10_000, help="taps for the memory bench")
    parser.add_argument("--idle-seconds", type=float, default=60.0,
                        help="idle CPU measurement window (scaled to 60 s)")
    parser.add_argument("--starts", type=int, default=5,
                        help="`badged run` starts timed to READY=1 (the first on an "
                             "empty state dir)")
    args = parser.parse_args(argv)
    from badged.demo.pcscd_sandbox import PcscdSandbox

    root = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    try:
        base_start, base_rss = baseline_python()
        with PcscdSandbox(root / "pcscd") as pcscd:
            proc = bench_subprocess(pcscd, root, args.idle_seconds, args.starts)
            mem = bench_memory(pcscd, root, args.taps)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ready: list[float] = proc["ready"]  # type: ignore[assignment]
    warm = ready[1:] or ready
    idle = float(proc["idle_cpu_per_min"])  # type: ignore[arg-type]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)")
    print(f"baseline: bare python -c: start-up {base_start:.3f} s, RSS {base_rss:.1f} MB")
    print(f"memory (child process): before importing badged {mem['before_import']:.1f} MB, "
          f"after start-up + first tap {mem['started']:.1f} MB, after {mem['taps']:.0f} "
          f"taps {mem['after']:.1f} MB (peak {mem['hwm']:.1f} MB), "
          f"{mem['tap_ms']:.2f} ms/tap, {mem['errors']:.0f} read errors")
    print(f"`badged run` RSS when idle: {float(proc['idle_rss']):.1f} MB")  # type: ignore[arg-type]
    print(f"idle CPU: {idle:.3f} s per 60 s (measured over {args.idle_seconds:g} s)")
    print(f"start to READY=1: first (empty state) {ready[0]:.3f} s, warm median "
          f"{statistics.median(warm):.3f} s, max {max(warm):.3f} s ({len(warm)} starts)")
    checks = [("RSS after taps", mem["after"] <= GOAL_RSS_MB, f"≤ {GOAL_RSS_MB:g} MB"),
              ("idle CPU", idle <= GOAL_IDLE_CPU, f"≤ {GOAL_IDLE_CPU:g} s/60 s"),
              ("start to READY", max(ready) <= GOAL_READY, f"≤ {GOAL_READY:g} s")]
    for name, ok, goal in checks:
        print(f"  {'ok  ' if ok else 'MISS'} {name} (goal {goal})")
    # For bench/run_all: machine-readable figures, one per line (ratio: RSS after the taps
    # over a bare interpreter's).
    print(f"ours: {mem['after']:.2f} MB")
    print(f"baseline: {base_rss:.2f} MB")
    print(f"ratio: {mem['after'] / base_rss:.3f}")
    print(f"figure: rss_after_taps {mem['after']:.2f} MB")
    print(f"figure: idle_cpu {idle:.4f} s")
    print(f"figure: ready_max {max(ready):.3f} s")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
