"""The outbox over a real SMTP server on loopback (aiosmtpd): STARTTLS with a test CA,
AUTH with a password read from a 0600 file, refusals, dropped connections, crashes."""

from __future__ import annotations

import email
import hashlib
import json
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from smtpkit import Pki, Recorder, SmtpServer, make_pki, reserve_port

from badged.config.model import Smtp
from badged.crous.mail import (
    OutgoingFile,
    PermanentDeliveryError,
    SmtpSender,
    TemporaryDeliveryError,
    build_message,
    deliver_pending,
    list_batches,
    write_batch,
)
from badged.store import outbox
from badged.store.db import open_store

KIT = Path(__file__).with_name("smtpkit.py")
NOW = datetime(2026, 9, 14, 8, 0, tzinfo=UTC)
MONETIQUE, RESTAURATION = "monetique@crous-lyon.example", "restauration@crous-lyon.example"
USER, PASSWORD = "badged", "s3cret pass wörd"

UTF8_CSV = "NOM;PRENOM;INE\r\nÉpée;Zoé;123456789AB\r\n".encode()
CP1252_CSV = "NOM;PRENOM\r\nLefèvre;Chloé\r\nŒuvre;€uro\r\n".encode("windows-1252")
FILES = [OutgoingFile("élèves-primo 2026.csv", UTF8_CSV, "utf-8"),
         OutgoingFile("personnels.csv", CP1252_CSV, "windows-1252")]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(users={USER: PASSWORD})


@pytest.fixture
def start_server(pki: Pki, recorder: Recorder) -> Iterator[Callable[..., SmtpServer]]:
    """`start_server(port=0, wrong_name=False, exclude=None)`: stopped at teardown."""
    servers: list[SmtpServer] = []

    def start(**kwargs: Any) -> SmtpServer:
        server = SmtpServer(pki, recorder, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., SmtpServer]) -> SmtpServer:
    return start_server()


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    """The host file's folder: the 0600 password file, relative references from here."""
    folder = tmp_path / "etc"
    folder.mkdir()
    secret = folder / "smtp-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    secret.chmod(0o600)
    return folder


def smtp_config(port: int, pki: Pki | None, **overrides: Any) -> Smtp:
    doc: dict[str, Any] = {"host": "127.0.0.1", "port": port, "starttls": True,
                           "username": USER, "password": {"file": "smtp-password"}}
    if pki is not None:
        doc["ca_file"] = str(pki.ca_file)
    doc.update(overrides)
    return Smtp.model_validate(doc)


@pytest.fixture
def sender(server: SmtpServer, pki: Pki, base_dir: Path) -> SmtpSender:
    return SmtpSender(smtp_config(server.port, pki), base_dir, timeout=10)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_store(tmp_path / "state")
    yield c
    c.close()


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "archive"


def new_batch(conn: sqlite3.Connection, recipients: list[str] | None = None,
              files: list[OutgoingFile] | None = None) -> int:
    return write_batch(
        conn, school_id="emse", kind="primo-entrants", mail_from="badged@emse.example",
        recipients=recipients or [MONETIQUE, RESTAURATION],
        subject="Primo-entrants 2026 — EMSE", body="Bonjour,\n\nci-joint les fichiers.\n",
        files=FILES if files is None else files,
        items=[("p1", "fp1", "new"), ("p2", "fp2", "new")], academic_year=2026, now=NOW)


def batch(conn: sqlite3.Connection, batch_id: int) -> outbox.Batch:
    found = outbox.get(conn, batch_id)
    assert found is not None
    return found


def parse(raw: bytes) -> EmailMessage:
    """A message as received (CRLF on the wire) or archived (LF)."""
    msg = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


# --- delivery --------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_delivers_over_starttls_with_auth(conn: sqlite3.Connection, pki: Pki,
                                          start_server: Callable[..., SmtpServer],
                                          recorder: Recorder, base_dir: Path,
                                          archive_dir: Path, mechanism: str) -> None:
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    server = start_server(exclude=[other])
    sender = SmtpSender(smtp_config(server.port, pki), base_dir, timeout=10)
    batch_id = new_batch(conn)
    stored = batch(conn, batch_id)

    report = deliver_pending(conn, sender, now=NOW, archive_dir=archive_dir)

    assert (report.sent, report.failed, report.pending) == (1, 0, 0)
    assert len(recorder.received) == 1
    got = recorder.received[0]
    assert got.tls and got.login == USER and got.mechanism == mechanism
    assert recorder.auth_attempts == [(mechanism, USER)]
    assert got.mail_from == "badged@emse.example"
    assert got.rcpt_tos == [MONETIQUE, RESTAURATION]

    msg = parse(got.content)
    assert msg["Message-ID"] == stored.message_id
    assert msg["From"] == "badged@emse.example"
    assert [a.addr_spec for a in msg["To"].addresses] == [MONETIQUE, RESTAURATION]
    assert msg["Subject"] == "Primo-entrants 2026 — EMSE"
    assert msg["Date"] is not None
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content_charset() == "utf-8"
    assert body.get_content() == "Bonjour,\n\nci-joint les fichiers.\n"

    parts = list(msg.iter_attachments())
    assert [p.get_filename() for p in parts] == [f.name for f in FILES]
    for part, sent in zip(parts, FILES, strict=True):
        assert part.get_content_type() == "text/csv"
        assert part.get_content_charset() == sent.charset
        assert part.get_payload(decode=True) == sent.content      # byte for byte
    # The non-ASCII file name travels RFC 2231-encoded; the ASCII one as is.
    raw = got.content.decode("ascii")
    assert "filename*=utf-8''%C3%A9l%C3%A8ves-primo%202026.csv" in raw
    assert 'filename="personnels.csv"' in raw

    done = batch(conn, batch_id)
    assert done.state == "sent" and done.attempts == 1 and done.sent_at == outbox.iso(NOW)
    assert done.archive_path == str(archive_dir / "2026" / "09" / f"{batch_id}-primo-entrants.eml")
    archived = Path(done.archive_path)
    assert stat.S_IMODE(archived.stat().st_mode) == 0o600
    for folder in (archive_dir, archive_dir / "2026", archive_dir / "2026" / "09"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    kept = parse(archived.read_bytes())
    assert kept["Message-ID"] == stored.message_id
    assert [p.get_payload(decode=True) for p in kept.iter_attachments()] == \
        [f.content for f in FILES]

    [info] = list_batches(conn)
    assert (info.id, info.state, info.message_id) == (batch_id, "sent", stored.message_id)
    assert [(f.name, f.size, f.sha256) for f in info.files] == \
        [(f.name, len(f.content), hashlib.sha256(f.content).hexdigest()) for f in FILES]

    # Nothing left: a second run sends nothing.
    again = deliver_pending(conn, sender, now=NOW + timedelta(hours=1), archive_dir=archive_dir)
    assert (again.sent, again.failed) == (0, 0)
    assert len(recorder.received) == 1


def test_message_on_the_wire_is_the_built_message(conn: sqlite3.Connection,
                                                  sender: SmtpSender, recorder: Recorder,
                                                  archive_dir: Path) -> None:
    """What the server got is `build_message` of the batch, but for Date."""
    batch_id = new_batch(conn)
    deliver_pending(conn, sender, now=NOW, archive_dir=archive_dir)
    got = parse(recorder.received[0].content)
    built = build_message(batch(conn, batch_id))
    for msg in (got, built):
        del msg["Date"]
    assert got.as_bytes() == built.as_bytes()


def test_one_recipient_refused_keeps_the_batch_pending(conn: sqlite3.Connection,
                                                       sender: SmtpSender, recorder: Recorder,
                                                       archive_dir: Path) -> None:
    recorder.refuse_rcpt[RESTAURATION] = "550 5.1.1 <restauration@crous-lyon.example>: " \
        "Recipient address rejected"
    batch_id = new_batch(conn)

    report = deliver_pending(conn, sender, now=NOW, archive_dir=archive_dir)

    assert (report.sent, report.failed, report.pending) == (1 - 1, 1, 1)
    [outcome] = report.outcomes
    assert outcome.permanent and not outcome.sent
    pending = batch(conn, batch_id)
    assert pending.state == "pending" and pending.attempts == 1
    assert pending.last_error is not None
    assert pending.last_error.startswith("permanent: ")
    assert RESTAURATION in pending.last_error and "550" in pending.last_error
    assert "not marked sent" in pending.last_error
    assert pending.next_attempt_at == outbox.iso(NOW + timedelta(hours=3))
    assert pending.archive_path is None
    # The other mailbox did get it once.
    assert [r.rcpt_tos for r in recorder.received] == [[MONETIQUE]]
    [info] = list_batches(conn)
    assert info.state == "pending" and info.last_error == pending.last_error

    # Not due yet: not tried.
    early = deliver_pending(conn, sender, now=NOW + timedelta(hours=2), archive_dir=archive_dir)
    assert (early.sent, early.failed, early.pending) == (0, 0, 1)

    recorder.refuse_rcpt.clear()
    later = deliver_pending(conn, sender, now=NOW + timedelta(hours=3), archive_dir=archive_dir)
    assert (later.sent, later.failed, later.pending) == (1, 0, 0)
    # Only the mailbox that refused gets it again: the other one had it already.
    assert [r.rcpt_tos for r in recorder.received] == [[MONETIQUE], [RESTAURATION]]
    ids = {parse(r.content)["Message-ID"] for r in recorder.received}
    assert ids == {pending.message_id}
    assert batch(conn, batch_id).state == "sent"


def test_every_recipient_refused_4xx_is_temporary(conn: sqlite3.Connection,
                                                  sender: SmtpSender, recorder: Recorder,
                                                  archive_dir: Path) -> None:
    recorder.refuse_rcpt[MONETIQUE] = "450 4.2.0 greylisted, try again later"
    batch_id = new_batch(conn, recipients=[MONETIQUE])
    report = deliver_pending(conn, sender, now=NOW, archive_dir=archive_dir)
    assert report.failed == 1 and not report.outcomes[0].permanent
    pending = batch(conn, batch_id)
    assert pending.last_error is not None
    assert pending.last_error.startswith("temporary: ") and "450" in pending.last_error
    assert pending.next_attempt_at == outbox.iso(NOW + timedelta(minutes=1))
    assert recorder.received == []


def test_data_refused_5xx_keeps_the_batch_pending(conn: sqlite3.Connection,
                                                  sender: SmtpSender, recorder: Recorder,
                                                  archive_dir: Path) -> None:
    recorder.data_reply = "554 5.6.0 Message content rejected"
    batch_id = new_batch(conn)

    report = deliver_pending(conn, sender, now=NOW, archive_dir=archive_dir)

    assert (report.sent, report.failed, report.pending) == (0, 1, 1)
    pending = batch(conn, batch_id)
    assert pending.state == "pending"
    assert pending.last_error is not None and "554" in pending.last_error
    assert "DATA" in pending.last_error and pending.last_error.startswith("permanent: ")
    assert pending.next_attempt_at == outbox.iso(NOW + timedelta(hours=3))

    recorder.data_reply = None
    later = deliver_pending(conn, sender, now=NOW + timedelta(hours=3), archive_dir=archive_dir)
    assert later.sent == 1
    assert len(recorder.received) == 1
    assert parse(recorder.received[0].content)["Message-ID"] == pending.message_id


def test_connection_dropped_mid_data_is_retried_then_delivered_once(
        conn: sqlite3.Connection, sender: SmtpSender, recorder: Recorder,
        archive_dir: Path) -> None:
    recorder.drop_in_data = 1
    batch_id = new_batch(conn)

    report = deliver_pending(conn, sender, now=NOW, archive_dir=archive_dir)

    assert recorder.dropped == 1 and recorder.received == []
    assert (report.sent, report.failed) == (0, 1)
    assert not report.outcomes[0].permanent
    pending = batch(conn, batch_id)
    assert pending.state == "pending" and pending.last_error is not None
    assert pending.last_error.startswith("temporary: ")
    assert pending.next_attempt_at == outbox.iso(NOW + timedelta(minutes=1))

    later = deliver_pending(conn, sender, now=NOW + timedelta(minutes=1),
                            archive_dir=archive_dir)
    assert later.sent == 1
    assert len(recorder.received) == 1
    assert parse(recorder.received[0].content)["Message-ID"] == pending.message_id
    assert batch(conn, batch_id).attempts == 2


def test_server_down_for_the_whole_run_backoff_grows(conn: sqlite3.Connection, pki: Pki,
                                                     base_dir: Path,
                                                     archive_dir: Path) -> None:
    with reserve_port() as sock:
        port = sock.getsockname()[1]
        sender = SmtpSender(smtp_config(port, pki), base_dir, timeout=5)
        batch_id = new_batch(conn)
        now, waits = NOW, []
        for _ in range(7):
            report = deliver_pending(conn, sender, now=now, archive_dir=archive_dir)
            assert (report.sent, report.failed, report.pending) == (0, 1, 1)
            pending = batch(conn, batch_id)
            assert pending.last_error is not None
            assert "connection refused" in pending.last_error
            assert pending.last_error.startswith("temporary: ")
            assert pending.next_attempt_at is not None
            due = datetime.fromisoformat(pending.next_attempt_at)
            waits.append(due - now)
            # Not due a second before its time.
            idle = deliver_pending(conn, sender, now=due - timedelta(seconds=1),
                                   archive_dir=archive_dir)
            assert (idle.sent, idle.failed, idle.pending) == (0, 0, 1)
            now = due
    minutes = [int(w.total_seconds() // 60) for w in waits]
    assert minutes == [1, 5, 15, 60, 180, 180, 180]
    assert batch(conn, batch_id).attempts == 7


def test_server_down_then_up_delivers(conn: sqlite3.Connection, pki: Pki, base_dir: Path,
                                      start_server: Callable[..., SmtpServer],
                                      recorder: Recorder, archive_dir: Path) -> None:
    sock = reserve_port()
    port = sock.getsockname()[1]
    sender = SmtpSender(smtp_config(port, pki), base_dir, timeout=5)
    batch_id = new_batch(conn)
    assert deliver_pending(conn, sender, now=NOW, archive_dir=archive_dir).failed == 1
    sock.close()
    start_server(port=port)
    report = deliver_pending(conn, sender, now=NOW + timedelta(minutes=1),
                             archive_dir=archive_dir)
    assert (report.sent, report.failed, report.pending) == (1, 0, 0)
    assert len(recorder.received) == 1
    assert batch(conn, batch_id).state == "sent"


def test_untrusted_certificate_is_refused(conn: sqlite3.Connection, server: SmtpServer,
                                          recorder: Recorder, base_dir: Path,
                                          archive_dir: Path) -> None:
    sender = SmtpSender(smtp_config(server.port, None), base_dir, timeout=10)  # no ca_file
    batch_id = new_batch(conn)
    report = deliver_pending(conn, sender, now=NOW, archive_dir=archive_dir)
    assert report.failed == 1 and report.outcomes[0].permanent
    error = batch(conn, batch_id).last_error
    assert error is not None and "certificate" in error and "ca_file" in error
    assert recorder.auth_attempts == [] and recorder.received == []   # no password sent


def test_certificate_for_another_name_is_refused(conn: sqlite3.Connection, pki: Pki,
                                                 start_server: Callable[..., SmtpServer],
                                                 recorder: Recorder, base_dir: Path) -> None:
    server = start_server(wrong_name=True)
    sender = SmtpSender(smtp_config(server.port, pki), base_dir, timeout=10)
    message = build_message(batch(conn, new_batch(conn)))
    with pytest.raises(PermanentDeliveryError, match="certificate"):
        sender.send(message, mail_from="badged@emse.example", recipients=[MONETIQUE])
    assert recorder.auth_attempts == []


def test_wrong_password_is_refused(conn: sqlite3.Connection, server: SmtpServer, pki: Pki,
                                   recorder: Recorder, base_dir: Path,
                                   archive_dir: Path) -> None:
    (base_dir / "smtp-password").write_text("wrong\n", encoding="utf-8")
    sender = SmtpSender(smtp_config(server.port, pki), base_dir, timeout=10)
    batch_id = new_batch(conn)
    report = deliver_pending(conn, sender, now=NOW, archive_dir=archive_dir)
    assert report.failed == 1 and report.outcomes[0].permanent
    error = batch(conn, batch_id).last_error
    assert error is not None and "login as 'badged' refused" in error and "535" in error
    assert recorder.received == []


def test_password_file_readable_by_others_is_refused(conn: sqlite3.Connection,
                                                     server: SmtpServer, pki: Pki,
                                                     recorder: Recorder,
                                                     base_dir: Path) -> None:
    (base_dir / "smtp-password").chmod(0o644)
    sender = SmtpSender(smtp_config(server.port, pki), base_dir, timeout=10)
    message = build_message(batch(conn, new_batch(conn)))
    with pytest.raises(PermanentDeliveryError, match="chmod 600"):
        sender.send(message, mail_from="badged@emse.example", recipients=[MONETIQUE])
    assert recorder.auth_attempts == []


def test_connection_refused_raises_temporary(conn: sqlite3.Connection, pki: Pki,
                                             base_dir: Path) -> None:
    message = build_message(batch(conn, new_batch(conn)))
    with reserve_port() as sock:
        sender = SmtpSender(smtp_config(sock.getsockname()[1], pki), base_dir, timeout=5)
        with pytest.raises(TemporaryDeliveryError, match="connection refused"):
            sender.send(message, mail_from="badged@emse.example", recipients=[MONETIQUE])


# --- crashes (SIGKILL) -------------------------------------------------------------------------


def run_child(tmp_path: Path, mode: str, smtp: Smtp, base_dir: Path) -> int:
    spec = {"mode": mode, "state_dir": str(tmp_path / "state"),
            "archive_dir": str(tmp_path / "state" / "archive"),
            "recipients": [MONETIQUE], "content_hex": UTF8_CSV.hex(),
            "smtp": smtp.model_dump(mode="json"), "base_dir": str(base_dir),
            "now": NOW.isoformat()}
    proc = subprocess.run([sys.executable, str(KIT), "child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return int(proc.stdout.split()[0])


def test_killed_before_delivery_sends_at_next_run(tmp_path: Path, server: SmtpServer,
                                                  pki: Pki, recorder: Recorder,
                                                  base_dir: Path, archive_dir: Path) -> None:
    smtp = smtp_config(server.port, pki)
    batch_id = run_child(tmp_path, "kill_before_delivery", smtp, base_dir)
    assert recorder.received == []
    conn = open_store(tmp_path / "state")
    try:
        written = batch(conn, batch_id)
        assert written.state == "pending" and written.attempts == 0
        assert [f.content for f in written.files] == [UTF8_CSV]
        report = deliver_pending(conn, SmtpSender(smtp, base_dir, 10), now=NOW,
                                 archive_dir=archive_dir)
        assert report.sent == 1
        assert [parse(r.content)["Message-ID"] for r in recorder.received] == \
            [written.message_id]
        assert batch(conn, batch_id).state == "sent"
    finally:
        conn.close()


def test_killed_after_the_server_accepted_resends_same_message_id(
        tmp_path: Path, server: SmtpServer, pki: Pki, recorder: Recorder, base_dir: Path,
        archive_dir: Path) -> None:
    smtp = smtp_config(server.port, pki)
    batch_id = run_child(tmp_path, "kill_after_send", smtp, base_dir)
    assert len(recorder.received) == 1          # the server had it when the child died
    conn = open_store(tmp_path / "state")
    try:
        written = batch(conn, batch_id)
        assert written.state == "pending" and written.attempts == 0   # never marked
        report = deliver_pending(conn, SmtpSender(smtp, base_dir, 10), now=NOW,
                                 archive_dir=archive_dir)
        assert report.sent == 1
        ids = [parse(r.content)["Message-ID"] for r in recorder.received]
        assert ids == [written.message_id, written.message_id]      # a resend, same id
        for received in recorder.received:
            [part] = parse(received.content).iter_attachments()
            assert part.get_payload(decode=True) == UTF8_CSV
        done = batch(conn, batch_id)
        assert done.state == "sent" and done.archive_path is not None
        # And only once more: the next run has nothing to send.
        deliver_pending(conn, SmtpSender(smtp, base_dir, 10), now=NOW + timedelta(hours=1),
                        archive_dir=archive_dir)
        assert len(recorder.received) == 2
    finally:
        conn.close()
