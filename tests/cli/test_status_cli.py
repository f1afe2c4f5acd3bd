"""`badged status [--json]` through the CLI, against the real daemon and without one."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from badged.cli import main
from badged.demo.pcscd_sandbox import PcscdSandbox

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
from daemonkit import (
    BADGED,
    ENROLMENT,
    LOOKUP,
    DaemonProcess,
    Notifications,
    Site,
    make_site,
)

# `badged status --json`: the daemon's state (badged/daemon/operations.py Operations.status).
STATUS_KEYS = {"version", "pid", "school", "name", "started", "uptime_seconds", "last_reload",
               "summary", "pcscd", "readers", "sams", "reader_thread_alive",
               "enrolments_waiting", "jobs", "last_taps", "health", "problems", "outbox",
               "stock", "deadlines"}
JOB_KEYS = {"name", "schedule", "interval_seconds", "next_run", "last_run", "last_success",
            "last_error", "failures", "running"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = make_site(tmp_path)
    yield made
    made.cleanup()


@pytest.fixture
def daemon(site: Site, pcsc: PcscdSandbox) -> Iterator[DaemonProcess]:
    with Notifications() as systemd:
        proc = DaemonProcess(site, pcsc.env(), systemd).start()
        try:
            proc.wait_ready()
            proc.wait_metric("badged_reader_up", 1, reader=LOOKUP)
            yield proc
        finally:
            proc.kill()


def badged(site: Site, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["--host-config", str(site.host_file), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_status_json_has_the_documented_keys(site: Site, daemon: DaemonProcess) -> None:
    code, out, err = badged(site, "status", "--json")
    assert (code, err) == (0, "")
    state = json.loads(out)
    assert set(state) == STATUS_KEYS
    assert state["pid"] == daemon.pid and state["school"] == "demo"
    assert state["readers"] == {ENROLMENT: True, LOOKUP: True} and state["sams"] == {}
    assert state["pcscd"] is True and state["reader_thread_alive"] is True
    assert state["enrolments_waiting"] == 0 and state["last_taps"] == []
    assert state["jobs"] and all(set(job) == JOB_KEYS for job in state["jobs"])
    assert "store-maintenance" in {job["name"] for job in state["jobs"]}


def test_status_human(site: Site, daemon: DaemonProcess) -> None:
    code, out, err = badged(site, "status")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("badged ") and f"(pid {daemon.pid}): school demo: 2/2 " \
        "readers up, pcscd up, 0 enrolment(s) waiting" in lines[0]
    assert f"  reader {ENROLMENT}: up" in lines and f"  reader {LOOKUP}: up" in lines
    assert any(line.startswith("  job store-maintenance: last success never, next ")
               for line in lines)


def test_status_through_the_console_script(site: Site, daemon: DaemonProcess) -> None:
    out = subprocess.run([str(BADGED), "--host-config", str(site.host_file), "status",
                          "--json"], capture_output=True, text=True, timeout=30, check=False)
    assert (out.returncode, out.stderr) == (0, "")
    assert json.loads(out.stdout)["pid"] == daemon.pid


@pytest.mark.parametrize("as_json", [False, True])
def test_status_without_daemon_exits_4(site: Site, as_json: bool) -> None:
    code, out, err = badged(site, "status", *(["--json"] if as_json else []))
    assert code == 4 and out == ""
    assert err == f"error: badged is not running: no control socket at {site.control_socket}\n"


def test_status_with_a_stale_socket_exits_4(site: Site) -> None:
    site.runtime_dir.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(site.control_socket))  # bound, never listening: a dead daemon's
    code, _, err = badged(site, "status")
    assert code == 4
    assert err.startswith("error: badged is not running: nothing answers on ")


def test_status_healthy_shows_outbox_stock_and_deadlines(site: Site,
                                                         daemon: DaemonProcess) -> None:
    code, out, _ = badged(site, "status")
    assert code == 0, out
    lines = out.splitlines()
    assert "  health: HEALTHY" in lines
    assert "  outbox: 0 batch(es) pending" in lines
    assert "  card stock: 0 (LOW), threshold 10" in lines
    assert any(line.startswith("  deadline reinscriptions: ") for line in lines), out
    state = json.loads(badged(site, "status", "--json")[1])
    assert state["health"] == "healthy" and state["problems"] == []
    assert state["stock"] == {"level": 0, "low_threshold": 10, "low": True}


def test_status_degraded_exits_1_and_names_the_problem(tmp_path: Path,
                                                       pcsc: PcscdSandbox) -> None:
    site = make_site(tmp_path)
    site.set_readers([(ENROLMENT, "enrolment"), ("ACS ACR1252 * PICC 0", "lookup"),
                      (LOOKUP, "sam")])
    try:
        with Notifications() as systemd:
            proc = DaemonProcess(site, pcsc.env(), systemd).start()
            try:
                proc.wait_ready()
                # STATUS= is right from READY: the missing reader is already in it.
                first = systemd.wait_for("STATUS=")[0].text
                assert "degraded: reader ACS ACR1252 * PICC 0 missing (+1 more)" in first
                code, out, _ = badged(site, "status")
            finally:
                proc.kill()
    finally:
        site.cleanup()
    assert code == 1, out
    assert "  health: DEGRADED" in out
    assert "  problem: reader ACS ACR1252 * PICC 0 missing" in out
    assert f"  problem: SAM {LOOKUP} missing" in out


def test_status_with_an_unknown_school_says_so(site: Site) -> None:
    text = site.host_file.read_text().replace("school: demo", "school: nowhere")
    site.host_file.write_text(text)
    code, out, err = badged(site, "status")
    assert code == 1 and out == ""
    assert "nowhere" in err and "not running" not in err
    assert "badged cannot run this host file" in err
