"""The SFTP destination against a real OpenSSH sshd on loopback: upload to a temporary
name then rename, the configured mode, the host key checked (a wrong one refused with a
clear error), key-based auth, and a down or refusing server retried with the previous
export left in place."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from accesskit import NOW, MakeHost
from sshkit import SshServer, keygen

from badged.access import export as access
from badged.access.destinations import DestinationError
from badged.doctor import access as doctor_access
from badged.enrolment.lifecycle import change_state
from badged.store import access as store
from badged.store.db import open_store


@pytest.fixture
def sshd(tmp_path: Path):
    server = SshServer(tmp_path / "sshd").start()
    yield server
    server.stop()


def sftp_exports(server: SshServer, inbox: Path, known_hosts: Path) -> str:
    return (
        "access_exports:\n"
        "  til:\n"
        "    format: til\n"
        "    csn: hex\n"
        "    file_name: cartes.csv\n"
        '    schedule: "every 1 hours"\n'
        "    destination:\n"
        "      sftp:\n"
        "        host: 127.0.0.1\n"
        f"        port: {server.port}\n"
        f"        user: {server.user}\n"
        f"        key: {{file: {server.client_key}}}\n"
        f"        known_hosts: {{file: {known_hosts}}}\n"
        f"        path: {inbox}\n"
        "        timeout_seconds: 5\n")


@pytest.fixture
def setup(sshd: SshServer, make_host: MakeHost, tmp_path: Path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line())
    host = make_host(exports=sftp_exports(sshd, inbox, known_hosts))
    return host, inbox, known_hosts


def test_upload_then_nothing_when_unchanged(setup, sshd: SshServer) -> None:
    host, inbox, _ = setup
    site = host.load_site()
    conn = open_store(host.state_dir)
    result = access.run(conn, host, site, "til", NOW)
    assert result.ok, result.error
    assert result.plan.destination == f"sftp {sshd.user}@127.0.0.1:{sshd.port} {inbox}"
    content = (inbox / "cartes.csv").read_bytes()
    assert content.startswith("s1;Lefèvre;Zoé;04A1B2C3D4E5F6;10/09/2026;".encode("latin-1"))
    assert content.count(b"\r\n") == 6
    assert (inbox / "cartes.csv").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in inbox.iterdir()) == ["cartes.csv"]  # no temporary left

    again = access.run(conn, host, site, "til", NOW + timedelta(hours=1))
    assert again.ok and not again.written
    log = sshd.log.read_text()
    assert log.count("subsystem 'sftp'") == 1  # unchanged: no connection at all

    change_state(conn, "04A1B2C3D4E5F6", "stolen", who="desk")
    third = access.run(conn, host, site, "til", NOW + timedelta(hours=2))
    assert third.ok and third.written
    assert b"04A1B2C3D4E5F6;10/09/2026;31/12/2037;0;" in (inbox / "cartes.csv").read_bytes()
    # The check for `badged doctor`: reachable, host key right, logged in; nothing written.
    assert access.check(host, site, "til").endswith("host key verified, logged in, "
                                                   "folder present")
    assert sorted(p.name for p in inbox.iterdir()) == ["cartes.csv"]


def test_the_copy_a_killed_upload_left_is_removed(setup) -> None:
    """An export killed between its upload and the rename leaves `.NAME.<pid>.part` on
    the server: the next export of that file removes it once that process is gone (and
    leaves any other file alone)."""
    host, inbox, _ = setup
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid: a writer that is gone
    stale = inbox / f".cartes.csv.{child.pid}.part"
    stale.write_bytes(b"s1;Lef")
    other = inbox / f".autre.csv.{child.pid}.part"
    other.write_bytes(b"x")
    result = access.run(open_store(host.state_dir), host, host.load_site(), "til", NOW)
    assert result.ok, result.error
    assert sorted(p.name for p in inbox.iterdir()) == [other.name, "cartes.csv"]


def test_a_wrong_host_key_is_refused(setup, tmp_path: Path) -> None:
    host, inbox, known_hosts = setup
    other = keygen(tmp_path / "other_host_key")
    kind, blob = (tmp_path / "other_host_key.pub").read_text().split()[:2]
    known_hosts.write_text(known_hosts.read_text().split()[0] + f" {kind} {blob}\n")
    site = host.load_site()
    conn = open_store(host.state_dir)
    result = access.run(conn, host, site, "til", NOW)
    assert not result.ok
    assert "host key mismatch: the server shows ssh-ed25519 SHA256:" in result.error
    assert "which known_hosts does not hold for [127.0.0.1]:" in result.error
    assert list(inbox.iterdir()) == []
    with pytest.raises(DestinationError, match="host key mismatch"):
        access.check(host, site, "til")
    [line] = doctor_access.checks(host, site)  # what `badged doctor` prints
    assert (line.check, line.status) == ("access til", "fail")
    assert "host key mismatch" in line.detail and "ssh-keyscan" in (line.fix or "")
    assert other.exists()


def test_no_known_host_key_is_refused(setup) -> None:
    host, inbox, known_hosts = setup
    known_hosts.write_text("")
    result = access.run(open_store(host.state_dir), host, host.load_site(), "til", NOW)
    assert "has no key for [127.0.0.1]:" in result.error and "ssh-keyscan -p" in result.error
    known_hosts.write_text("")
    known_hosts.chmod(0o666)
    result = access.run(open_store(host.state_dir), host, host.load_site(), "til", NOW)
    assert "is writable by group or others (mode 0666)" in result.error
    assert list(inbox.iterdir()) == []


def test_a_refusing_then_down_server_is_retried_and_the_previous_export_stays(
        setup, sshd: SshServer) -> None:
    host, inbox, _ = setup
    site = host.load_site()
    conn = open_store(host.state_dir)
    assert access.run(conn, host, site, "til", NOW).ok
    good = (inbox / "cartes.csv").read_bytes()
    change_state(conn, "04A1B2C3D4E5F6", "lost", who="desk")

    # The server no longer accepts our key.
    authorized = sshd.authorized.read_text()
    sshd.authorized.write_text("")
    refused = access.run(conn, host, site, "til", NOW)
    assert not refused.ok and f"refused the key of user {sshd.user}" in refused.error
    assert (refused.failures, refused.retry_at) == (1, NOW.timestamp() + 60)

    # Then it is down.
    sshd.stop()
    later = NOW + timedelta(minutes=1)
    down = access.run(conn, host, site, "til", later)
    assert not down.ok and "cannot connect: Connection refused" in down.error
    assert (down.failures, down.retry_at) == (2, later.timestamp() + 120)
    assert (inbox / "cartes.csv").read_bytes() == good
    assert sorted(p.name for p in inbox.iterdir()) == ["cartes.csv"]
    state = store.state(conn, "til")
    assert state.failures == 2 and state.next_attempt_at == later.timestamp() + 120
    # The daemon's view: no retry before the backoff is over, one after.
    exports = site.school.access_exports
    assert access.due(exports, {"til": state}, marker=99, baseline=0,
                      now=later.timestamp() + 119) == []
    assert access.due(exports, {"til": state}, marker=99, baseline=0,
                      now=later.timestamp() + 120) == [("til", "retry")]

    # Back up (same port and keys): the retry delivers the blocked card.
    sshd.authorized.write_text(authorized)
    sshd.start()
    retry = access.run(conn, host, site, "til", later + timedelta(minutes=2))
    assert retry.ok and retry.written, retry.error
    assert b"04A1B2C3D4E5F6;10/09/2026;31/12/2037;0;" in (inbox / "cartes.csv").read_bytes()
    assert store.state(conn, "til").failures == 0


def test_the_daemon_does_not_import_paramiko() -> None:
    code = ("import sys, badged.daemon.runtime, badged.cli, badged.access.export; "
            "print('paramiko' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_a_silent_server_times_out(make_host: MakeHost, tmp_path: Path, sshd: SshServer
                                   ) -> None:
    """A port that accepts and then says nothing (a stalled server): the export gives up
    after its timeout instead of holding the daemon's main loop."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line().replace(f":{sshd.port} ", f":{port} "))
    exports = sftp_exports(sshd, tmp_path, known_hosts).replace(
        f"port: {sshd.port}", f"port: {port}").replace("timeout_seconds: 5",
                                                       "timeout_seconds: 1")
    host = make_host(exports=exports)
    try:
        started = time.monotonic()
        result = access.run(open_store(host.state_dir), host, host.load_site(), "til", NOW)
        took = time.monotonic() - started
    finally:
        listener.close()
    assert not result.ok, result.error
    assert result.error.startswith(f"sftp {sshd.user}@127.0.0.1:{port} {tmp_path}: SSH "
                                   "handshake failed: "), result.error
    # Which side of paramiko's thread sees it first varies: either way, the banner.
    assert result.error.endswith(("no SSH banner from the server within 1 s",
                                  "Error reading SSH protocol banner")), result.error
    assert took < 10
