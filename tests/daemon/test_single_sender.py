"""One sender per batch: a command never does the daemon's work while the daemon lives.

`exchange run` and `enrol --person` may bypass the daemon only when it provably does not
run (its lock on `<runtime_dir>/badged.pid` is free), never because it was slow to answer;
and whoever delivers the outbox holds the store's lease, so a relay gets one copy.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemonkit import BADGED, Site, wait_until

from badged.cli import main
from badged.daemon.pidlock import DaemonLock, running_pid
from badged.store import outbox
from badged.store.db import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crous"))
from smtpkit import Recorder, SmtpServer, make_pki

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-relay"


@pytest.fixture
def relay(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    recorder = Recorder(users={"badged": PASSWORD})
    server = SmtpServer(pki, recorder).start()
    yield server, pki, recorder
    server.stop()


def use_relay(site: Site, server: SmtpServer, ca_file: Path) -> None:
    secret = site.host_file.parent / "smtp-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    with site.host_file.open("a") as f:
        f.write(f"smtp:\n  host: 127.0.0.1\n  port: {server.port}\n  starttls: true\n"
                f"  ca_file: {ca_file}\n  username: badged\n"
                "  password: {file: smtp-password}\n")


def cli(site: Site, *args: str):
    return CliRunner().invoke(main, ["--host-config", str(site.host_file), *args])


def import_population(site: Site) -> None:
    for name in ("students", "staff"):
        done = cli(site, "population", "import", str(REPO / f"demo/registry/{name}.csv"),
                   "--source", name)
        assert done.exit_code == 0, done.output


def test_slow_daemon_during_exchange_run_one_copy_at_the_relay(site, start_daemon,
                                                               relay) -> None:
    server, pki, recorder = relay
    use_relay(site, server, pki.ca_file)
    daemon = start_daemon()
    import_population(site)
    recorder.data_delay = 3.0  # the daemon's delivery outlasts the command's patience

    ran = subprocess.run(
        [str(BADGED), "--host-config", str(site.host_file), "exchange", "run", "personnels",
         "--timeout", "1"], env=daemon.env, capture_output=True, text=True, timeout=60)

    assert ran.returncode == 4, ran.stderr
    assert f"badged (pid {daemon.pid}) is running but did not answer" in ran.stderr
    assert "not building or sending from here" in ran.stderr
    assert "Traceback" not in ran.stderr
    wait_until(lambda: len(recorder.received) >= 1, timeout=20, what="the daemon's mail")
    conn = open_store(site.state_dir)
    wait_until(lambda: outbox.pending_count(conn) == 0, timeout=20, what="batch sent")
    recorder.data_delay = 0.0
    again = cli(site, "exchange", "run", "personnels")
    assert again.exit_code == 0, again.output
    assert "personnels: nothing to send" in again.stdout
    assert len(recorder.received) == 1
    assert len(outbox.history(conn)) == 1


def hold_lock(runtime_dir: Path) -> subprocess.Popen[str]:
    """Another process holding the daemon's lock (a daemon that hangs before answering)."""
    code = textwrap.dedent(f"""
        import sys, time
        from badged.daemon.pidlock import DaemonLock
        DaemonLock({str(runtime_dir)!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_daemon_is_never_bypassed(site: Site) -> None:
    holder = hold_lock(site.runtime_dir)
    try:
        assert running_pid(site.runtime_dir) == holder.pid
        import_population(site)
        ran = cli(site, "exchange", "run", "personnels")
        assert ran.exit_code == 4, ran.output
        assert f"badged (pid {holder.pid}) is running but did not answer" in ran.stderr
        enrol = cli(site, "enrol", "--person", "nobody", "--timeout", "1")
        assert enrol.exit_code == 4, enrol.output
        assert "not reading the reader from here" in enrol.stderr
        # Every command that can stand in for the daemon holds back the same way.
        for args in (("exchange", "retry"), ("exchange", "resend", "1"),
                     ("access", "export"), ("crous", "sync")):
            held = cli(site, *args)
            assert held.exit_code == 4, (args, held.output)
            assert f"badged (pid {holder.pid}) is running but did not answer" in \
                held.stderr, (args, held.stderr)
        conn = open_store(site.state_dir)
        assert outbox.history(conn) == []  # nothing built, nothing sent
    finally:
        holder.kill()
        holder.wait()
    # Its holder gone (killed: the kernel drops the lock), the daemon is provably down.
    assert running_pid(site.runtime_dir) is None
    ran = cli(site, "exchange", "run", "personnels")
    assert ran.exit_code == 0, ran.output
    assert "badged is not running: building and sending from here" in ran.stderr


def test_second_daemon_refused_while_the_first_holds_the_lock(site: Site) -> None:
    lock = DaemonLock(site.runtime_dir)
    lock.acquire()
    try:
        second = subprocess.run(
            [str(BADGED), "--host-config", str(site.host_file), "run"], env=site.env(),
            capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert "another badged" in second.stderr and "Traceback" not in second.stderr
    finally:
        lock.release()
    assert running_pid(site.runtime_dir) is None
