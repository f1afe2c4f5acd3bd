"""The real daemon (`badged run` in a subprocess) against a private pcscd and the simulator.

sd_notify through a real datagram socket, /metrics over HTTP checked by promtool, taps by
the simulated CROUS card, `badged status` over the control socket; and the README demo
(`python -m badged.demo`) end to end.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonkit import (
    BADGED,
    CARD,
    ENROLMENT,
    LOOKUP,
    REPO,
    Notifications,
    Site,
    StartDaemon,
    free_port,
    samples,
    wait_until,
)

from badged.cards.simulator import SimulatedDesfire
from badged.config.host import load_host
from badged.daemon import notify
from badged.daemon.runtime import Daemon

UID = "04112233445566"  # demo/cards/crous-card.yaml
CROUS_NUMBER = "249760531028417"
STATUS_KEYS = {"version", "pid", "school", "name", "started", "uptime_seconds", "last_reload",
               "summary", "pcscd", "readers", "sams", "reader_thread_alive",
               "enrolments_waiting", "jobs", "last_taps", "health", "problems", "outbox",
               "stock", "deadlines"}
DEMO_HOST = REPO / "demo" / "badged.yaml"


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (the Debian package prometheus provides it)"
    out = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=30, check=False)
    assert (out.returncode, out.stdout, out.stderr) == (0, b"", b""), out


# --- sd_notify --------------------------------------------------------------------------

def test_notify_lifecycle_ready_status_watchdog_stopping(site: Site, pcsc, notifications,
                                                         start_daemon: StartDaemon) -> None:
    def probe() -> tuple[bool, int]:
        # Runs in the listener thread the moment READY=1 arrives.
        with urllib.request.urlopen(site.metrics_url, timeout=2) as answer:
            code = answer.status
        return site.control_socket.exists(), code

    notifications.on_ready = probe
    daemon = start_daemon(watchdog_usec=400_000)

    # READY=1 once: the control socket existed and /metrics answered right then.
    assert notifications.ready_probe == (True, 200)
    assert len(notifications.lines("READY=1")) == 1
    status = notifications.wait_for("STATUS=")[0].text
    assert status.startswith("STATUS=school demo: ") and "\n" not in status
    # Right from READY: the reader thread's first look at pcscd is in it.
    assert "2/2 readers up, pcscd up" in status, status

    # WATCHDOG=1 at half of WATCHDOG_USEC (0.2 s) while the reader thread is alive.
    pings = notifications.wait_for("WATCHDOG=1", count=6, timeout=5)
    gaps = [b.at - a.at for a, b in itertools.pairwise(pings)]
    assert 0.15 <= statistics.median(gaps) <= 0.3, gaps
    assert not notifications.lines("STOPPING=1")

    # SIGTERM: STOPPING=1, exit 0, the control socket is gone.
    assert daemon.stop(signal.SIGTERM) == 0, daemon.log()
    notifications.wait_for("STOPPING=1", timeout=2)
    assert not site.control_socket.exists()
    assert "Traceback" not in daemon.log()


def test_watchdog_pings_stop_when_the_reader_thread_dies(site: Site, pcsc,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """In-process: the main loop pings only while the reader thread's heartbeat is fresh."""
    silent = threading.Event()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "reader thread silent" in record.getMessage():
                silent.set()

    handler = Catch(logging.ERROR)
    logging.getLogger("badged.daemon.runtime").addHandler(handler)
    with Notifications() as systemd:
        monkeypatch.setenv("NOTIFY_SOCKET", str(systemd.path))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(site.credentials))
        daemon = Daemon(load_host(site.host_file), reader_tick=0.1)  # fresh: ≤ 0.3 s
        loop = threading.Thread(target=daemon.run, name="daemon-main", daemon=True)
        loop.start()
        try:
            systemd.wait_for("READY=1")
            systemd.wait_for("WATCHDOG=1", count=3, timeout=5)
            daemon.readers.stop()
            assert not daemon.readers.alive
            assert silent.wait(5), "the main loop kept pinging with a dead reader thread"
            before = len(systemd.lines("WATCHDOG=1"))
            silent.clear()
            assert silent.wait(5)  # one more ping slot went by, still silent
            assert len(systemd.lines("WATCHDOG=1")) == before
        finally:
            daemon.request_stop()
            loop.join(10)
            logging.getLogger("badged.daemon.runtime").removeHandler(handler)
            notify.close()
    assert not loop.is_alive()
    assert systemd.lines("STOPPING=1")


# --- metrics, taps, status ----------------------------------------------------------------

def test_metrics_promtool_clean_and_a_tap_is_counted(site: Site, pcsc, insert_card,
                                                     start_daemon: StartDaemon) -> None:
    daemon = start_daemon()
    daemon.wait_metric("badged_reader_up", 1, reader=ENROLMENT)
    daemon.wait_metric("badged_reader_up", 1, reader=LOOKUP)
    assert daemon.metric("badged_card_reads_total", reader=LOOKUP) == 0
    promtool_check(daemon.scrape())

    insert_card(SimulatedDesfire.from_file(CARD), reader=1)
    daemon.wait_metric("badged_card_reads_total", 1, reader=LOOKUP)

    text = daemon.scrape()
    promtool_check(text)
    assert daemon.metric("badged_card_reads_total", reader=ENROLMENT) == 0
    assert daemon.metric("badged_card_read_duration_seconds_count") == 1
    assert daemon.metric("badged_build_info") == 1
    assert daemon.metric("badged_config_last_reload_successful") == 1
    # No card id (any form), no CROUS number anywhere in the exposition, labels included.
    reversed_uid = bytes.fromhex(UID)[::-1].hex().upper()
    for secret in (UID, reversed_uid, str(int(UID, 16)), CROUS_NUMBER):
        assert secret not in text.upper()
    for name, labels, _ in samples(text):
        assert set(labels) <= {"version", "reader", "reason", "state", "task", "kind", "op",
                               "code", "blocking", "export", "le"}, name

    status = daemon.status()
    assert set(status) >= STATUS_KEYS
    [tap] = status["last_taps"]
    assert tap["reader"] == LOOKUP and tap["role"] == "lookup"
    assert tap["csn"] == UID and tap["outcome"] == "unknown card"
    assert status["readers"] == {ENROLMENT: True, LOOKUP: True}
    assert status["pcscd"] is True and status["reader_thread_alive"] is True
    assert daemon.stop() == 0


def test_missing_reader_is_not_a_start_failure(site: Site, pcsc, notifications,
                                               start_daemon: StartDaemon) -> None:
    ghost = "Ghost Reader 00 00"
    site.set_readers([(ENROLMENT, "enrolment"), (LOOKUP, "lookup"), (ghost, "lookup")])
    daemon = start_daemon()  # READY=1 arrives
    daemon.wait_metric("badged_reader_up", 1, reader=LOOKUP)
    assert daemon.metric("badged_reader_up", reader=ghost) == 0
    assert daemon.status()["readers"] == {ENROLMENT: True, LOOKUP: True, ghost: False}
    promtool_check(daemon.scrape())
    assert daemon.stop() == 0


# --- the README demo ----------------------------------------------------------------------

@pytest.fixture
def demo_env() -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PCSCLITE_CSOCK_NAME", "BADGED_HOST_CONFIG", "CREDENTIALS_DIRECTORY",
                        "WATCHDOG_USEC", "WATCHDOG_PID")}
    yield env


def test_readme_demo_runs_answers_status_and_stops(tmp_path: Path,
                                                   demo_env: dict[str, str]) -> None:
    """The README's demo, on its own state folder and a free metrics port: it runs beside
    a user's demo (./state/demo, port 8790) on the same machine. Then the README's desk
    enrolment: `enrol` waits, `card simulate` finds the demo's vpcd and taps the second
    demo card on the enrolment reader."""
    state = tmp_path / "demo"
    port = free_port()
    demo_host = ["--host-config", str(state / "badged.yaml")]
    with Notifications() as systemd:
        env = {**demo_env, "NOTIFY_SOCKET": str(systemd.path)}
        proc = subprocess.Popen([sys.executable, "-m", "badged.demo", "--state", str(state),
                                 "--metrics-listen", f"127.0.0.1:{port}"], cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        output: list[bytes] = []
        reader = threading.Thread(target=lambda: output.extend(proc.stdout or []),
                                  daemon=True)
        reader.start()
        try:
            try:
                systemd.wait_for("READY=1", timeout=20, proc=proc)  # type: ignore[arg-type]
            except (AssertionError, TimeoutError) as exc:
                raise AssertionError(f"{exc}\n{b''.join(output).decode()}") from None

            def status() -> dict:
                out = subprocess.run([str(BADGED), *demo_host, "status", "--json"],
                                     capture_output=True, env=demo_env, timeout=20,
                                     check=False)
                assert out.returncode == 0, out
                return json.loads(out.stdout)
            # The simulated card sits on the lookup reader: the demo reads it.
            wait_until(lambda: status()["last_taps"], 10, "the demo card's tap", step=0.1)

            out = subprocess.run([str(BADGED), *demo_host, "status"], capture_output=True,
                                 text=True, env=demo_env, timeout=20, check=False)
            assert out.returncode == 0, out
            assert "school demo: 2/2 readers up, pcscd up" in out.stdout
            # The demo links its simulated card to a primo-entrant (demo/registry/).
            assert f"{UID} card active, holder 22500102" in out.stdout
            # The primo-entrants go to the demo's own local API CROUS through the daemon: a
            # first sync tells the holder and the card, a second has nothing left to tell.
            calls = []
            for _ in range(2):
                out = subprocess.run([str(BADGED), *demo_host, "crous", "sync", "--json"],
                                     capture_output=True, text=True, env=demo_env,
                                     timeout=60, check=False)
                assert out.returncode == 0, out
                assert "not running" not in out.stderr
                calls.append(json.loads(out.stdout)["calls"])
            assert calls[0] > 0 and calls[1] == 0
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                        timeout=5) as answer:
                text = answer.read().decode()
            promtool_check(text)
            assert f'badged_card_reads_total{{reader="{LOOKUP}"}} 1.0' in text

            # `badged doctor` as the demo prints it: every precondition ok (the clock may
            # warn where NTP is unknown, the disk of a full machine).
            [doctor_line] = [line for line in b"".join(output).decode().splitlines()
                             if line.startswith("  doctor ")]
            *assignments, _ = doctor_line.split()[1:-1]
            doctor_env = {**demo_env, **dict(a.split("=", 1) for a in assignments)}
            doctor = subprocess.run([str(BADGED), "doctor"], capture_output=True, text=True,
                                    env=doctor_env, timeout=60, check=False)
            assert doctor.returncode == 0, doctor.stdout + doctor.stderr
            statuses = {line.split()[0] for line in doctor.stdout.splitlines()[:-1]}
            assert statuses <= {"ok", "warn"}, doctor.stdout
            assert all(line.startswith("ok") or line.startswith(("warn  clock", "warn  disk"))
                       for line in doctor.stdout.splitlines()[:-1]), doctor.stdout

            # The README's desk enrolment with the second demo card.
            enrol = subprocess.Popen([str(BADGED), *demo_host, "enrol", "--person",
                                      "22500101", "--timeout", "30"], env=demo_env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            wait_until(lambda: status()["enrolments_waiting"] == 1, 10, "enrol waiting")
            tap = subprocess.Popen([str(BADGED), *demo_host, "card", "simulate", "--card",
                                    str(REPO / "demo/cards/student-card.yaml")], env=demo_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                enrolled, err = enrol.communicate(timeout=30)
            finally:
                tap.send_signal(signal.SIGINT)
                tap.communicate(timeout=10)
            assert enrol.returncode == 0, err
            assert enrolled.startswith("card 04A1B2C3D4E5F6 linked to 22500101: CROUS "
                                       "number 249760531044556 (from the card)")

            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0, b"".join(output).decode()
            systemd.wait_for("STOPPING=1", timeout=2)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(5)
    log = b"".join(output).decode()
    assert "badged demo: school demo" in log and "Traceback" not in log
    assert not (state / "run" / "control.sock").exists()


def test_only_the_main_thread_takes_the_signals(site: Site, pcsc,
                                                start_daemon: StartDaemon) -> None:
    """The kernel gives a process signal to any thread not blocking it; Python runs the
    handler in the main thread only when it next runs bytecode — after its current wait
    (up to 30 s). So the daemon's other threads block SIGTERM, SIGINT and SIGHUP."""
    daemon = start_daemon()
    daemon.status()  # a control connection thread was started too
    handled = (1 << (signal.SIGHUP - 1)) | (1 << (signal.SIGINT - 1)) | (
        1 << (signal.SIGTERM - 1))
    blocked = {}
    for task in Path(f"/proc/{daemon.pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a request's thread that ended while we looked
        mask = int(status.split("SigBlk:")[1].split()[0], 16)
        blocked[int(task.name)] = mask & handled
    assert blocked.pop(daemon.pid) == 0
    assert blocked and set(blocked.values()) == {handled}, blocked
    assert daemon.stop() == 0
