"""What a killed run leaves in the outbox is cleaned up, and archives are what was sent."""

from __future__ import annotations

import email
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from badged.crous.mail import (
    MaildirSender,
    OutgoingFile,
    clean_leftovers,
    deliver_pending,
    purge,
    write_batch,
)
from badged.store import outbox
from badged.store.db import open_store

NOW = datetime(2026, 9, 14, 8, 0, tzinfo=UTC)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_store(tmp_path / "state")
    yield c
    c.close()


def new_batch(conn: sqlite3.Connection) -> int:
    return write_batch(
        conn, school_id="emse", kind="reinscriptions", mail_from="badged@emse.example",
        recipients=["monetique@crous.example"], subject="Réinscriptions",
        body="Bonjour,\n", files=[OutgoingFile("r.csv", "NOM\r\nÉpée\r\n".encode(), "utf-8")],
        items=[("p1", "f1", "new")], academic_year=2026, now=NOW)


def leftover(archive: Path, batch_id: int) -> Path:
    """The unfinished copy a SIGKILL between "marked sent" and "archived" leaves."""
    folder = archive / "2026" / "09"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{batch_id}-reinscriptions.eml.0a1b2c3d.tmp"
    path.write_bytes(b"From: badged@emse.example\n" * 1000)
    return path


def test_leftover_copy_is_removed_by_the_next_delivery(conn, tmp_path: Path) -> None:
    archive = tmp_path / "state" / "archive"
    stale = leftover(archive, 7)
    keep = archive / "2026" / "09" / "notes.tmp"      # not ours: left alone
    keep.write_text("x")
    deliver_pending(conn, MaildirSender(tmp_path / "maildir"), now=NOW, archive_dir=archive)
    assert not stale.exists()
    assert keep.exists()


def test_leftover_copy_is_removed_at_purge(conn, tmp_path: Path) -> None:
    archive = tmp_path / "state" / "archive"
    stale = leftover(archive, 3)
    purge(conn, archive, 365, NOW)
    assert not stale.exists()


def test_clean_leftovers_without_archive(tmp_path: Path) -> None:
    assert clean_leftovers(tmp_path / "absent") == 0


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_archive_written_later_is_the_bytes_sent(conn, tmp_path: Path) -> None:
    maildir = tmp_path / "maildir"
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    batch_id = new_batch(conn)
    # `now` is the job's start; the mail is built a moment later (its Date is the clock).
    first = deliver_pending(conn, MaildirSender(maildir), now=NOW - timedelta(seconds=1),
                            archive_dir=blocked)
    assert (first.sent, first.archive_errors) == (1, 1)
    [sent_file] = list((maildir / "new").iterdir())
    sent = sent_file.read_bytes()

    archive = tmp_path / "state" / "archive"
    deliver_pending(conn, MaildirSender(maildir), now=NOW + timedelta(days=2),
                    archive_dir=archive)
    done = outbox.get(conn, batch_id)
    assert done is not None and done.archive_path is not None
    assert Path(done.archive_path).read_bytes() == sent          # byte for byte, Date too
    assert outbox.sent_message(conn, batch_id) is None          # the copy is dropped
    assert parse(sent)["Date"] is not None
