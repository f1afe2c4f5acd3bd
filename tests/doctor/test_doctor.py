"""`badged doctor` on a real host: a running daemon, a private pcscd with the simulator's
readers, a real SMTP relay (aiosmtpd, STARTTLS with a test CA, AUTH). Healthy: nothing
fails; then the relay's CA missing, a key file 0644 and pcscd stopped: one fail line each,
with its fix, and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from badged.demo.pcscd_sandbox import PcscdSandbox
from badged.demo.runner import DEMO_API_CLIENT, DEMO_KEYS
from badged.testing.crous_peer import CrousPeer

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "daemon"))
sys.path.insert(0, str(TESTS / "crous"))
from daemonkit import (  # noqa: E402
    BADGED,
    ENROLMENT,
    LOOKUP,
    DaemonProcess,
    Notifications,
    Site,
    make_site,
)
from smtpkit import Pki, Recorder, SmtpServer, make_pki  # noqa: E402

USER, PASSWORD = "badged", "s3cret-relay"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = make_site(tmp_path)
    yield made
    made.cleanup()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def relay(pki: Pki) -> Iterator[SmtpServer]:
    server = SmtpServer(pki, Recorder(users={USER: PASSWORD})).start()
    yield server
    server.stop()


@pytest.fixture
def crous_api(site: Site) -> Iterator[CrousPeer]:
    """The demo CROUS's API: a local peer on a free port, the copied tree pointed at it."""
    with CrousPeer(clients={DEMO_API_CLIENT: DEMO_KEYS["demo-crous-api"]}) as peer:
        crous = site.tree / "crous" / "demo.yaml"
        crous.write_text(crous.read_text().replace("http://127.0.0.1:8791", peer.base_url))
        yield peer


def add_relay(site: Site, port: int, ca_file: Path | None) -> None:
    password = site.root / "smtp-password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    ca = f", ca_file: {ca_file}" if ca_file else ""
    text = "\n".join(line for line in site.host_file.read_text().splitlines()
                     if not line.startswith("smtp:"))
    site.host_file.write_text(
        f"{text}\nsmtp: {{host: 127.0.0.1, port: {port}, starttls: true{ca}, "
        f"username: {USER}, password: {{file: {password}}}}}\n")


def doctor(site: Site, pcsc: PcscdSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BADGED_HOST_CONFIG",)}
    env.update(pcsc.env(), CREDENTIALS_DIRECTORY=str(site.credentials))
    return subprocess.run([str(BADGED), "--host-config", str(site.host_file), "doctor",
                           "--timeout", "5", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def lines(out: str, status: str) -> dict[str, str]:
    """check name → the rest of its line, for the lines of one status."""
    found = {}
    for line in out.splitlines():
        if line.startswith(f"{status:<4}  "):
            name, _, rest = line[6:].partition(": ")
            found[name] = rest
    return found


def test_doctor_healthy_then_each_fault_its_fail_line(site: Site, pcscd_restart: PcscdSandbox,
                                                      relay: SmtpServer, pki: Pki,
                                                      crous_api: CrousPeer) -> None:
    pcsc = pcscd_restart
    add_relay(site, relay.port, pki.ca_file)
    with Notifications() as systemd:
        daemon = DaemonProcess(site, pcsc.env(), systemd).start().wait_ready()
        try:
            healthy = doctor(site, pcsc)
            assert healthy.returncode == 0, healthy.stdout + healthy.stderr
            assert lines(healthy.stdout, "fail") == {}
            # Only what is true of this machine may warn: the clock's synchronisation, and
            # the disk of a nearly full CI machine.
            assert set(lines(healthy.stdout, "warn")) <= {"clock", "disk"}, healthy.stdout
            good = lines(healthy.stdout, "ok")
            for name in ("host file", "config tree", "state dir", "runtime dir", "store",
                         "pcscd socket", "pcscd", f"reader {ENROLMENT}", f"reader {LOOKUP}",
                         "key F58540/1", "smtp password", "smtp tcp", "smtp ehlo",
                         "smtp starttls", "smtp auth", "API CROUS token", "access doors",
                         "daemon"):
                assert name in good, (name, healthy.stdout)
            assert "certificate verified" in good["smtp starttls"]
            assert f"login as '{USER}' accepted" in good["smtp auth"]
            assert good["access doors"].endswith("access/doors: writable (to be created)")
            assert relay.recorder.received == []  # no mail sent
            assert crous_api.api_requests() == []  # a token, no API call

            report = json.loads(doctor(site, pcsc, "--json").stdout)
            assert report["ok"] is True
            assert {c["status"] for c in report["checks"]} <= {"ok", "warn"}
            assert set(report["checks"][0]) == {"check", "status", "detail", "fix"}

            # The faults: the relay's CA missing, a key file 0644, pcscd stopped.
            add_relay(site, relay.port, None)
            (site.credentials / "demo-crous-read").chmod(0o644)
            pcsc.stop()
            broken = doctor(site, pcsc)
        finally:
            daemon.stop()
    assert broken.returncode == 1, broken.stdout
    failed = lines(broken.stdout, "fail")
    assert "certificate refused" in failed["smtp starttls"]
    assert "fix: set smtp.ca_file" in failed["smtp starttls"]
    assert "readable by group or others" in failed["key F58540/1"]
    assert "fix: chmod 600" in failed["key F58540/1"]
    assert "pcscd is not running" in failed["pcscd socket"]
    assert "fix: " in failed["pcscd socket"] and "pcscd.socket" in failed["pcscd socket"]
    assert set(failed) == {"smtp starttls", "key F58540/1", "pcscd socket"}, broken.stdout
    assert "Traceback" not in broken.stdout + broken.stderr


def test_doctor_reader_missing_and_sam_missing(site: Site, pcsc: PcscdSandbox) -> None:
    site.set_readers([(ENROLMENT, "enrolment"), (LOOKUP, "sam"),
                      ("ACS ACR1252 * PICC 0", "lookup")])
    out = doctor(site, pcsc)
    assert out.returncode == 1
    failed = lines(out.stdout, "fail")
    assert "has no SAM inserted" in failed[f"reader {LOOKUP}"]
    missing = failed["reader ACS ACR1252 * PICC 0"]
    assert f"no reader matches (readers: '{ENROLMENT}', '{LOOKUP}')" in missing
    assert "badged reader list" in missing
    assert "not answering" in failed["daemon"]  # no daemon in this test


def test_doctor_bad_host_file_stops_at_the_host_file(tmp_path: Path) -> None:
    host = tmp_path / "badged.yaml"
    host.write_text("tree: .\nschool: Bad School\n")
    out = subprocess.run([str(BADGED), "--host-config", str(host), "doctor"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 1
    assert out.stdout.startswith("fail  host file: ")
    assert f"{host}:2:" in out.stdout and "Traceback" not in out.stderr


def _runs_as(user: str) -> bool:
    """Whether `user` can run this interpreter and import badged (not from a 0700 /root)."""
    return subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", "import badged"],
                          capture_output=True, check=False).returncode == 0


def test_pcscd_is_asked_as_the_service_user(pcsc: PcscdSandbox) -> None:
    """As root, doctor connects to pcscd as the service user (runuser): what root reaches,
    the service may not (here: `nobody`, kept out of the private pcscd's 0700 folder)."""
    import pwd

    from badged.doctor.pcsc import _list_as

    me = pwd.getpwuid(os.geteuid()).pw_name
    assert _list_as(me) == (pcsc.readers, None, me, None)
    readers, error, who, not_as_user = _list_as("nobody")
    if os.geteuid() == 0 and _runs_as("nobody"):
        assert who == "nobody" and readers == [] and "cannot reach pcscd" in str(error)
        assert not_as_user is None
    elif os.geteuid() == 0:  # a checkout nobody cannot read (e.g. under /root): said so
        assert who == me and "could not run as nobody" in str(not_as_user)
    else:  # not root: asked as ourselves
        assert who == me and readers == pcsc.readers
