"""The outbox without a relay: writing batches, the message, the maildir (demo) delivery,
archives, history and purge."""

from __future__ import annotations

import email
import hashlib
import mailbox
import re
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from badged.config.host import load_host
from badged.config.model import Smtp
from badged.crous.mail import (
    MaildirSender,
    OutgoingFile,
    SmtpSender,
    backoff,
    build_message,
    deliver_pending,
    list_batches,
    message_bytes,
    purge,
    sender_for_host,
    write_batch,
)
from badged.store import outbox
from badged.store.db import open_store

NOW = datetime(2026, 9, 14, 8, 0, tzinfo=UTC)
CROUS = ["monetique@crous-lyon.example", "restauration@crous-lyon.example"]
UTF8_CSV = "NOM;PRENOM\r\nÉpée;Zoé\r\n".encode()
CP1252_CSV = "NOM;PRENOM\r\nLefèvre;Chloé\r\n".encode("windows-1252")
FILES = [OutgoingFile("réinscriptions.csv", UTF8_CSV, "utf-8"),
         OutgoingFile("personnels.csv", CP1252_CSV, "windows-1252"),
         OutgoingFile("sans-charset.csv", b"A;B\r\n1;2\r\n", None)]
ITEMS = [("p1", "fp1", "new"), ("p2", "fp2", "changed")]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_store(tmp_path / "state")
    yield c
    c.close()


def new_batch(conn: sqlite3.Connection, *, kind: str = "reinscriptions",
              files: list[OutgoingFile] | None = None,
              items: list[tuple[str, str, str]] | None = None, transport: str = "mail",
              now: datetime = NOW) -> int:
    return write_batch(
        conn, school_id="emse", kind=kind, transport=transport,
        mail_from="badged@emse.example", recipients=CROUS,
        subject="Réinscriptions 2026", body="Bonjour,\nci-joint.\n",
        files=FILES if files is None else files, items=ITEMS if items is None else items,
        academic_year=2026, now=now)


def get(conn: sqlite3.Connection, batch_id: int) -> outbox.Batch:
    found = outbox.get(conn, batch_id)
    assert found is not None
    return found


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


# --- writing -----------------------------------------------------------------------------


def test_write_batch_stores_everything_in_one_go(conn: sqlite3.Connection) -> None:
    batch_id = new_batch(conn)
    b = get(conn, batch_id)
    assert re.fullmatch(rf"<badged\.emse\.reinscriptions\.{batch_id}\.[0-9a-f]{{16}}"
                        r"@emse\.example>", b.message_id)
    assert (b.state, b.attempts, b.next_attempt_at, b.sent_at) == ("pending", 0, None, None)
    assert (b.kind, b.transport, b.school_id, b.academic_year) == \
        ("reinscriptions", "mail", "emse", 2026)
    assert b.recipients == CROUS and b.mail_from == "badged@emse.example"
    assert b.created_at == outbox.iso(NOW)
    assert [(f.name, f.content, f.charset, f.size, f.sha256) for f in b.files] == [
        (f.name, f.content, f.charset, len(f.content), hashlib.sha256(f.content).hexdigest())
        for f in FILES]
    items = conn.execute("SELECT kind, person_id, fingerprint, reason FROM exchange_items "
                         "WHERE batch_id = ? ORDER BY person_id", (batch_id,)).fetchall()
    assert [tuple(r) for r in items] == [("reinscriptions", *i) for i in ITEMS]
    assert not conn.in_transaction
    # Message-IDs differ between batches.
    assert get(conn, new_batch(conn)).message_id != b.message_id


def test_write_batch_is_all_or_nothing(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        new_batch(conn, items=[("p1", "a", "new"), ("p1", "b", "new")])   # same person twice
    assert not conn.in_transaction
    for table in ("batches", "batch_files", "exchange_items"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


@pytest.mark.parametrize(("files", "message"), [
    ([OutgoingFile("a.csv", b""), OutgoingFile("a.csv", b"")], "two attachments"),
    ([OutgoingFile("../a.csv", b"")], "bad attachment name"),
    ([OutgoingFile("a.csv", b"", "klingon")], "unknown charset"),
])
def test_write_batch_refuses_bad_files(conn: sqlite3.Connection, files: list[OutgoingFile],
                                       message: str) -> None:
    with pytest.raises(ValueError, match=message):
        new_batch(conn, files=files)
    assert conn.execute("SELECT count(*) FROM batches").fetchone()[0] == 0


def test_write_batch_joins_the_callers_transaction(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    batch_id = new_batch(conn)
    assert conn.in_transaction                    # still the caller's to end
    conn.execute("ROLLBACK")
    assert outbox.get(conn, batch_id) is None

    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO job_runs (job) VALUES ('x')")
    with pytest.raises(sqlite3.IntegrityError):
        new_batch(conn, items=[("p1", "a", "new"), ("p1", "b", "new")])
    assert conn.in_transaction                    # our part undone, the caller's kept
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM job_runs").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM batches").fetchone()[0] == 0


# --- the message -------------------------------------------------------------------------------


def test_build_message_is_deterministic_but_for_date(conn: sqlite3.Connection) -> None:
    b = get(conn, new_batch(conn))
    one, two = build_message(b, date=NOW), build_message(b, date=NOW)
    assert message_bytes(one) == message_bytes(two)
    later = build_message(b, date=NOW + timedelta(hours=1))
    diff = [(x, y) for x, y in zip(message_bytes(one).splitlines(),
                                   message_bytes(later).splitlines(), strict=True) if x != y]
    assert [x.split(b":")[0] for x, _ in diff] == [b"Date"]


def test_build_message_shape(conn: sqlite3.Connection) -> None:
    b = get(conn, new_batch(conn))
    raw = message_bytes(build_message(b, date=NOW))
    msg = parse(raw)
    assert msg["Message-ID"] == b.message_id
    assert msg["From"] == "badged@emse.example"
    assert [a.addr_spec for a in msg["To"].addresses] == CROUS
    assert msg["Subject"] == "Réinscriptions 2026"
    assert msg["Date"].datetime == NOW
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(("plain",))
    assert body is not None and body.get_content_charset() == "utf-8"
    assert body.get_content() == "Bonjour,\nci-joint.\n"
    parts = list(msg.iter_attachments())
    assert [p.get_filename() for p in parts] == [f.name for f in FILES]
    assert [p.get_content_type() for p in parts] == ["text/csv"] * 3
    assert [p.get_content_charset() for p in parts] == [f.charset for f in FILES]
    assert [p.get_payload(decode=True) for p in parts] == [f.content for f in FILES]
    assert b"filename*=utf-8''r%C3%A9inscriptions.csv" in raw
    assert raw.isascii()                          # 7-bit: any relay takes it


def test_backoff_schedule() -> None:
    assert [backoff(n) for n in range(1, 8)] == [
        timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1),
        timedelta(hours=3), timedelta(hours=3), timedelta(hours=3)]
    assert backoff(1, permanent=True) == timedelta(hours=3)


# --- maildir delivery (demo), archives ---------------------------------------------------------


def test_maildir_delivery_and_archive(conn: sqlite3.Connection, tmp_path: Path) -> None:
    maildir, archive = tmp_path / "state" / "maildir", tmp_path / "state" / "archive"
    first, second = new_batch(conn), new_batch(conn, kind="personnels")

    report = deliver_pending(conn, MaildirSender(maildir), now=NOW, archive_dir=archive)

    assert (report.sent, report.failed, report.pending) == (2, 0, 0)
    for sub in ("", "new", "cur", "tmp"):
        assert stat.S_IMODE((maildir / sub).stat().st_mode) == 0o700
    files = sorted((maildir / "new").iterdir())
    assert len(files) == 2
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    box = mailbox.Maildir(maildir, create=False)
    ids = sorted(m["Message-ID"] for m in box)
    assert ids == sorted([get(conn, first).message_id, get(conn, second).message_id])
    for m in box:
        parsed = parse(m.as_bytes())
        assert [p.get_payload(decode=True) for p in parsed.iter_attachments()] == \
            [f.content for f in FILES]

    for batch_id, kind in ((first, "reinscriptions"), (second, "personnels")):
        b = get(conn, batch_id)
        assert b.state == "sent" and b.sent_at == outbox.iso(NOW)
        path = archive / "2026" / "09" / f"{batch_id}-{kind}.eml"
        assert b.archive_path == str(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert parse(path.read_bytes())["Message-ID"] == b.message_id
    assert stat.S_IMODE(archive.stat().st_mode) == 0o700

    again = deliver_pending(conn, MaildirSender(maildir), now=NOW, archive_dir=archive)
    assert (again.sent, again.failed) == (0, 0)
    assert len(list((maildir / "new").iterdir())) == 2


def test_maildir_keeps_each_message_id_once(conn: sqlite3.Connection, tmp_path: Path) -> None:
    """A mail sent again (a run killed between "delivered" and "marked sent") is kept once,
    even after a reader moved it to cur/, unless an operator resends it; a maildir a
    killed run left without tmp/ works."""
    maildir = tmp_path / "maildir"
    (maildir / "new").mkdir(parents=True)
    message = build_message(get(conn, new_batch(conn)))
    sender = MaildirSender(maildir)
    sender.send(message, mail_from="badged@emse.example", recipients=["m@crous.example"])
    sender.send(message, mail_from="badged@emse.example", recipients=["m@crous.example"])
    [name] = [p.name for p in (maildir / "new").iterdir()]
    (maildir / "new" / name).rename(maildir / "cur" / f"{name}:2,S")
    sender.send(message, mail_from="badged@emse.example", recipients=["m@crous.example"])
    assert [p.name for p in (maildir / "new").iterdir()] == []
    assert list((maildir / "tmp").iterdir()) == []
    assert [m["Message-ID"] for m in mailbox.Maildir(maildir, create=False)] == \
        [message["Message-ID"]]
    sender.send(message, mail_from="badged@emse.example", recipients=["m@crous.example"],
                again=True)  # an operator's resend: one more copy
    assert [m["Message-ID"] for m in mailbox.Maildir(maildir, create=False)] == \
        [message["Message-ID"]] * 2


def test_archive_failure_does_not_resend(conn: sqlite3.Connection, tmp_path: Path) -> None:
    maildir = tmp_path / "state" / "maildir"
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("", encoding="utf-8")
    batch_id = new_batch(conn)

    report = deliver_pending(conn, MaildirSender(maildir), now=NOW, archive_dir=blocked)
    assert (report.sent, report.archive_errors) == (1, 1)
    b = get(conn, batch_id)
    assert b.state == "sent" and b.archive_path is None

    # The next run archives it (with its sent date) and does not send it again.
    archive = tmp_path / "state" / "archive"
    later = deliver_pending(conn, MaildirSender(maildir), now=NOW + timedelta(days=40),
                            archive_dir=archive)
    assert (later.sent, later.archive_errors) == (0, 0)
    assert get(conn, batch_id).archive_path == \
        str(archive / "2026" / "09" / f"{batch_id}-reinscriptions.eml")
    assert len(list((maildir / "new").iterdir())) == 1


def test_maildir_failure_is_temporary(conn: sqlite3.Connection, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("", encoding="utf-8")
    batch_id = new_batch(conn)
    report = deliver_pending(conn, MaildirSender(blocked / "maildir"), now=NOW,
                             archive_dir=tmp_path / "archive")
    assert report.failed == 1 and not report.outcomes[0].permanent
    b = get(conn, batch_id)
    assert b.state == "pending" and b.last_error is not None
    assert b.last_error.startswith("temporary: maildir")


def test_api_batches_are_not_mailed(conn: sqlite3.Connection, tmp_path: Path) -> None:
    new_batch(conn, transport="api")
    report = deliver_pending(conn, MaildirSender(tmp_path / "md"), now=NOW,
                             archive_dir=tmp_path / "archive")
    assert (report.sent, report.failed, report.pending) == (0, 0, 0)
    assert outbox.pending_count(conn) == 1


def test_metrics_hook_gets_the_pending_count(conn: sqlite3.Connection, tmp_path: Path) -> None:
    class Gauge:
        value = -1

        def set_outbox_pending(self, n: int) -> None:
            self.value = n

    gauge = Gauge()
    new_batch(conn)
    with_refused = SmtpSender(Smtp.model_validate({"host": "127.0.0.1", "port": 1,
                                                   "starttls": False}), tmp_path, timeout=2)
    deliver_pending(conn, with_refused, now=NOW, archive_dir=tmp_path / "a", metrics=gauge)
    assert gauge.value == 1


# --- history and purge ---------------------------------------------------------------------


def test_list_batches(conn: sqlite3.Connection, tmp_path: Path) -> None:
    sent_id = new_batch(conn)
    deliver_pending(conn, MaildirSender(tmp_path / "md"), now=NOW,
                    archive_dir=tmp_path / "archive")
    pending_id = new_batch(conn, kind="personnels", files=[FILES[1]], items=[ITEMS[0]])
    infos = list_batches(conn)
    assert [i.id for i in infos] == [pending_id, sent_id]          # newest first
    pending, sent = infos
    assert (pending.kind, pending.state, pending.attempts, pending.sent_at, pending.items) == \
        ("personnels", "pending", 0, None, 1)
    assert (sent.kind, sent.state, sent.attempts, sent.sent_at, sent.items) == \
        ("reinscriptions", "sent", 1, outbox.iso(NOW), 2)
    assert sent.recipients == CROUS and sent.message_id == get(conn, sent_id).message_id
    assert [(f.name, f.size, f.sha256, f.charset) for f in sent.files] == [
        (f.name, len(f.content), hashlib.sha256(f.content).hexdigest(), f.charset)
        for f in FILES]


def test_purge_keeps_pending_and_recent(conn: sqlite3.Connection, tmp_path: Path) -> None:
    archive, maildir = tmp_path / "state" / "archive", tmp_path / "state" / "md"
    old_id = new_batch(conn, now=NOW - timedelta(days=500))
    deliver_pending(conn, MaildirSender(maildir), now=NOW - timedelta(days=500),
                    archive_dir=archive)
    recent_id = new_batch(conn, now=NOW - timedelta(days=10))
    deliver_pending(conn, MaildirSender(maildir), now=NOW - timedelta(days=10),
                    archive_dir=archive)
    # Pending for 500 days (the relay never took it): never purged.
    stuck_id = new_batch(conn, now=NOW - timedelta(days=500))
    old_archive = Path(get(conn, old_id).archive_path or "")
    recent_archive = Path(get(conn, recent_id).archive_path or "")
    assert old_archive.exists() and recent_archive.exists()

    report = purge(conn, archive, retention_days=400, now=NOW)

    assert (report.batches, report.archives_deleted) == (1, 1)
    assert not old_archive.exists() and not old_archive.parent.exists()   # empty month gone
    old = get(conn, old_id)
    assert old.state == "sent" and old.archive_path is None
    assert [f.content for f in old.files] == [b""] * len(FILES)
    assert [(f.size, f.sha256) for f in old.files] == \
        [(len(f.content), hashlib.sha256(f.content).hexdigest()) for f in FILES]
    assert conn.execute("SELECT count(*) FROM exchange_items WHERE batch_id = ?",
                        (old_id,)).fetchone()[0] == len(ITEMS)
    [old_info] = [i for i in list_batches(conn) if i.id == old_id]
    assert old_info.purged_at == outbox.iso(NOW)
    assert [f.size for f in old_info.files] == [len(f.content) for f in FILES]

    assert recent_archive.exists()
    assert [f.content for f in get(conn, recent_id).files] == [f.content for f in FILES]
    stuck = get(conn, stuck_id)
    assert stuck.state == "pending"
    assert [f.content for f in stuck.files] == [f.content for f in FILES]

    assert purge(conn, archive, retention_days=400, now=NOW).batches == 0   # idempotent
    # The stuck batch is still delivered, whole, afterwards.
    report2 = deliver_pending(conn, MaildirSender(maildir), now=NOW, archive_dir=archive)
    assert report2.sent == 1 and get(conn, stuck_id).state == "sent"


def test_fresh_store_has_the_outbox_columns(conn: sqlite3.Connection) -> None:
    cols = {r[1] for r in conn.execute("PRAGMA table_info(batch_files)")}
    assert {"charset", "size", "position"} <= cols
    cols = {r[1] for r in conn.execute("PRAGMA table_info(batches)")}
    assert {"school_id", "last_attempt_at", "purged_at", "archive_path"} <= cols


def test_sender_for_host(tmp_path: Path) -> None:
    repo = Path(__file__).parents[2]
    demo = tmp_path / "demo.yaml"
    demo.write_text(f"tree: {repo / 'config'}\nschool: demo\nstate_dir: state\n",
                    encoding="utf-8")
    host = load_host(demo)
    sender = sender_for_host(host, host.load_site().school)
    assert isinstance(sender, MaildirSender) and sender.path == tmp_path / "state" / "maildir"

    relay = tmp_path / "relay.yaml"
    relay.write_text(f"tree: {repo / 'config'}\nschool: emse\nsmtp:\n  host: smtp.example.org\n"
                     "  username: badged\n  password: {file: smtp-password}\n",
                     encoding="utf-8")
    host = load_host(relay)
    sender = sender_for_host(host, host.load_site().school)
    assert isinstance(sender, SmtpSender) and sender.base_dir == tmp_path
    assert (sender.smtp.port, sender.smtp.starttls) == (587, True)
