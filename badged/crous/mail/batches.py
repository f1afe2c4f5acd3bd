"""A batch into the outbox: checked, stored whole in one transaction, nothing sent."""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ... import clock
from ...store import outbox as store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingFile:
    """A file to attach (a CROUS CSV): its bytes as they must arrive, and the MIME charset
    of its part ("utf-8", "windows-1252"; None: no charset parameter)."""

    name: str
    content: bytes
    charset: str | None = None


def _domain(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"mail_from {address!r} is not an e-mail address")
    return domain


def _check_atom(what: str, value: str) -> None:
    # The Message-ID names the school and the kind: keep it a dot-atom.
    if not value or any(c in value for c in " \t\r\n<>@\"()[]\\,;:"):
        raise ValueError(f"{what} {value!r} cannot go in a Message-ID")


def _check_files(files: Sequence[OutgoingFile]) -> None:
    names = set()
    for f in files:
        if not f.name or "/" in f.name or "\\" in f.name or any(ord(c) < 32 for c in f.name):
            raise ValueError(f"bad attachment name {f.name!r}")
        if f.name in names:
            raise ValueError(f"two attachments named {f.name!r} in one batch")
        names.add(f.name)
        if f.charset is not None:
            try:
                "".encode(f.charset)
            except LookupError:
                raise ValueError(f"{f.name}: unknown charset {f.charset!r}") from None


def write_batch(conn: sqlite3.Connection, *, school_id: str, kind: str, transport: str = "mail",
                mail_from: str, recipients: list[str], subject: str, body: str,
                files: Sequence[OutgoingFile], items: Sequence[tuple[str, str, str]],
                academic_year: int | None, now: datetime | None = None) -> int:
    """Store a pending batch in ONE transaction; its id. Nothing is sent here.

    Inside a transaction the caller opened (e.g. with the change set it was computed
    from), the batch joins it under a savepoint; otherwise it gets its own
    `BEGIN IMMEDIATE … COMMIT`. The Message-ID,
    `<badged.{school}.{kind}.{batch_id}.{random hex}@{domain of mail_from}>`, is made here
    and never changes: every attempt (and a resend after a crash) carries it.
    `items` are (person_id, fingerprint, reason) rows.
    """
    _check_atom("school", school_id)
    _check_atom("kind", kind)
    domain = _domain(mail_from)
    if transport == "mail" and not recipients:
        raise ValueError(f"batch {kind}: no recipients")
    _check_files(files)
    created = now or clock.now()
    stored = [store.NewFile(f.name, bytes(f.content), f.charset,
                            hashlib.sha256(f.content).hexdigest()) for f in files]
    token = secrets.token_hex(8)
    own = not conn.in_transaction
    conn.execute("BEGIN IMMEDIATE" if own else "SAVEPOINT write_batch")
    try:
        batch_id = store.insert_batch(
            conn, school_id=school_id, kind=kind, transport=transport,
            message_id=f"<badged.{school_id}.{kind}.new.{token}@{domain}>",
            mail_from=mail_from, recipients=list(recipients), subject=subject, body=body,
            academic_year=academic_year, created_at=created)
        store.set_message_id(conn, batch_id,
                             f"<badged.{school_id}.{kind}.{batch_id}.{token}@{domain}>")
        store.insert_files(conn, batch_id, stored)
        store.insert_items(conn, batch_id, kind, list(items))
    except BaseException:
        if own:
            conn.execute("ROLLBACK")
        else:
            conn.execute("ROLLBACK TO write_batch")
            conn.execute("RELEASE write_batch")
        raise
    conn.execute("COMMIT" if own else "RELEASE write_batch")
    log.info("outbox: batch %d (%s) written, %d file(s), %d item(s)", batch_id, kind,
             len(stored), len(items))
    return batch_id
