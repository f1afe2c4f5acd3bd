"""One deliverer at a time: the outbox lease in the store, over a real (slow) relay."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from smtpkit import Recorder, SmtpServer, make_pki

from badged.config.model import Smtp
from badged.crous.mail import (
    LEASE,
    MaildirSender,
    OutgoingFile,
    SmtpSender,
    deliver_pending,
    write_batch,
)
from badged.store import leases, outbox
from badged.store.db import open_store

NOW = datetime(2026, 9, 14, 8, 0, tzinfo=UTC)
PASSWORD = "pw-lease"


@pytest.fixture
def relay(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    recorder = Recorder(users={"badged": PASSWORD})
    server = SmtpServer(pki, recorder).start()
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "pw").write_text(PASSWORD)
    (etc / "pw").chmod(0o600)
    smtp = Smtp.model_validate({"host": "127.0.0.1", "port": server.port, "starttls": True,
                                "ca_file": str(pki.ca_file), "username": "badged",
                                "password": {"file": "pw"}})
    yield SmtpSender(smtp, etc, timeout=10), recorder
    server.stop()


def new_batch(conn: sqlite3.Connection) -> int:
    return write_batch(
        conn, school_id="emse", kind="personnels", mail_from="badged@emse.example",
        recipients=["monetique@crous.example"], subject="Personnels", body="Ci-joint.\n",
        files=[OutgoingFile("p.csv", b"A;B\r\n", "utf-8")], items=[("p1", "f1", "new")],
        academic_year=2026, now=NOW)


def test_two_deliverers_at_once_send_one_copy(tmp_path: Path, relay) -> None:
    sender, recorder = relay
    state = tmp_path / "state"
    new_batch(open_store(state))
    recorder.data_delay = 1.0
    reports = []

    def deliver(what: str) -> None:
        conn = open_store(state)
        reports.append(deliver_pending(conn, sender, now=NOW, archive_dir=state / "archive",
                                       what=what))

    first = threading.Thread(target=deliver, args=("the badged daemon",))
    first.start()
    conn = open_store(state)
    # The first one holds the lease while its mail is in flight…
    deadline = time.monotonic() + 10
    while leases.holder(conn, LEASE) is None:
        assert time.monotonic() < deadline, "the first deliverer never took the lease"
        time.sleep(0.01)
    second = deliver_pending(conn, sender, now=NOW, archive_dir=state / "archive",
                             what="badged exchange run")
    first.join(20)
    # …so the second one sends nothing, says who delivers, and counts the batch pending.
    assert second.sent == 0 and second.failed == 0
    assert second.busy is not None and "the badged daemon" in second.busy
    assert f"pid {os.getpid()}" in second.busy
    assert second.pending == 1 and [w.batch_id for w in second.waiting] == [1]
    assert [r.sent for r in reports] == [1]
    assert len(recorder.received) == 1
    assert leases.holder(conn, LEASE) is None  # released when done


def test_a_crashed_holders_lease_expires(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "state")
    new_batch(conn)
    other = leases.Holder("elsewhere:1:x", "another-host", 1, "badged exchange run", 0.0)
    clock = [1_000_000.0]
    assert leases.acquire(conn, LEASE, other, 600, clock=lambda: clock[0]) is None
    box = MaildirSender(tmp_path / "maildir")
    kwargs = {"now": NOW, "archive_dir": tmp_path / "archive", "clock": lambda: clock[0]}

    busy = deliver_pending(conn, box, **kwargs)
    assert busy.sent == 0 and busy.busy is not None and "another-host" in busy.busy

    clock[0] += 601  # its owner never renewed it: it expired
    done = deliver_pending(conn, box, **kwargs)
    assert done.sent == 1 and done.busy is None
    assert outbox.pending_count(conn) == 0


def test_a_killed_holder_on_this_host_loses_its_lease_at_once(tmp_path: Path) -> None:
    conn = open_store(tmp_path / "state")
    new_batch(conn)
    code = ("import sys; from badged.store.db import open_store; from badged.store import "
            "leases; c = open_store(__import__('pathlib').Path(sys.argv[1])); "
            "leases.acquire(c, 'outbox', leases.new_owner('badged exchange run'), 600); "
            "print('held', flush=True); __import__('time').sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "state")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        box = MaildirSender(tmp_path / "maildir")
        busy = deliver_pending(conn, box, now=NOW, archive_dir=tmp_path / "archive")
        assert busy.sent == 0 and f"pid {child.pid}" in (busy.busy or "")
    finally:
        child.kill()
        child.wait()
    done = deliver_pending(conn, box, now=NOW, archive_dir=tmp_path / "archive")
    assert done.sent == 1 and done.busy is None


def test_a_lease_is_taken_by_one_of_many_racers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    open_store(state).close()
    winners = []
    barrier = threading.Barrier(8)

    def race() -> None:
        conn = open_store(state)
        me = leases.new_owner("racer")
        barrier.wait()
        if leases.acquire(conn, "outbox", me, 60) is None:
            winners.append(me.owner)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(winners) == 1
