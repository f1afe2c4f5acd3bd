"""CROUS mail exchanges through the outbox (docs/design.md): write, build, send, archive, purge.

1. `write_batch` stores a batch whole in one transaction: files (with sha256), recipients,
   subject, body, the people it tells the CROUS about, and its Message-ID. Nothing is sent.
2. `deliver_pending` sends each pending batch that is due, one mail per batch, through a
   sender (`SmtpSender`, or `MaildirSender` for the demo). A batch is marked sent only once
   the server accepted the message (or the maildir write returned); then its .eml is
   archived. A failed attempt keeps it pending with the error and a growing backoff; a batch
   is never dropped. A crash between the server's acceptance and `mark sent` sends the same
   mail again (same Message-ID) at the next run: at most a resend, never a lost batch.
3. `purge` drops the archives and file contents of sent batches past retention; the batch
   rows, checksums and items stay (what the CROUS was told, and when).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import mailbox
import os
import secrets
import smtplib
import sqlite3
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import clock
from ..config.errors import SecretError
from ..config.model import Smtp
from ..config.secrets import read_secret
from ..store import events
from ..store import outbox as store
from ..store.outbox import Batch, BatchInfo, FileInfo

if TYPE_CHECKING:
    from ..config.host import Host
    from ..config.model import School

__all__ = [
    "BACKOFF",
    "PERMANENT_BACKOFF",
    "Batch",
    "BatchInfo",
    "DeliveryError",
    "DeliveryReport",
    "FileInfo",
    "MaildirSender",
    "OutboxError",
    "Outcome",
    "OutgoingFile",
    "PermanentDeliveryError",
    "PurgeReport",
    "Sender",
    "SmtpSender",
    "TemporaryDeliveryError",
    "archive_path_for",
    "backoff",
    "build_message",
    "deliver_pending",
    "list_batches",
    "make_due",
    "message_bytes",
    "purge",
    "resend",
    "resends",
    "sender_for_host",
    "write_batch",
]

log = logging.getLogger(__name__)

# Delay before the next attempt after the n-th failed one; then every 3 h.
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15),
           timedelta(hours=1))
PERMANENT_BACKOFF = timedelta(hours=3)
DEFAULT_TIMEOUT = 30.0


# --- writing a batch ----------------------------------------------------------------------


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


# --- the message ----------------------------------------------------------------------------


def build_message(batch: Batch, *, date: datetime | None = None) -> EmailMessage:
    """The one mail of a batch: From mail_from, To every recipient, the stored Message-ID,
    a text/plain UTF-8 body and each file as a text/csv attachment (base64, byte for byte,
    its charset, an RFC 2231 filename when not ASCII). Deterministic but for `Date` (now,
    unless given)."""
    if batch.mail_from is None:
        raise ValueError(f"batch {batch.id} has no mail_from")
    msg = EmailMessage(policy=email_policy.default)
    msg["From"] = batch.mail_from
    msg["To"] = ", ".join(batch.recipients)
    msg["Subject"] = batch.subject or f"{batch.kind} ({batch.id})"
    msg["Date"] = format_datetime(date.astimezone(UTC) if date else clock.now())
    msg["Message-ID"] = batch.message_id
    msg["Auto-Submitted"] = "auto-generated"     # RFC 3834: no auto-replies to a daemon
    msg["X-Badged-Batch"] = f"{batch.kind}.{batch.id}"
    msg.set_content(batch.body or "", subtype="plain", charset="utf-8",
                    cte="quoted-printable")
    for f in batch.files:
        params = {"name": f.name}
        if f.charset:
            params["charset"] = f.charset
        msg.add_attachment(f.content, maintype="text", subtype="csv", filename=f.name,
                           params=params)
    if msg.is_multipart():
        for part in msg.iter_parts():
            del part["MIME-Version"]
        # A fixed boundary keeps the message deterministic; base64 and quoted-printable
        # bodies can never contain "=_".
        msg.set_boundary("=_badged_" + hashlib.sha256(batch.message_id.encode()).hexdigest()[:32])
    return msg


def message_bytes(message: EmailMessage) -> bytes:
    """The message as archived and as written to a maildir (LF line endings)."""
    return message.as_bytes(policy=email_policy.default)


# --- senders -----------------------------------------------------------------------------


class DeliveryError(Exception):
    """An attempt failed; the batch stays pending. `permanent`: retrying soon won't help
    (5xx, refused certificate or login, bad config): the next attempt waits longer."""

    permanent = False


class TemporaryDeliveryError(DeliveryError):
    """Connection refused or dropped, timeout, 4xx: retried with the normal backoff."""


class PermanentDeliveryError(DeliveryError):
    """5xx on MAIL/RCPT/DATA, TLS certificate refused, login refused: still retried (a
    batch is never dropped), with a long backoff, and the error shows in `exchange list`."""

    permanent = True


class Sender(Protocol):
    def send(self, message: EmailMessage, *, mail_from: str, recipients: list[str]) -> None:
        """Deliver or raise DeliveryError; returning means the message was accepted."""


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _by_code(code: int, text: str) -> DeliveryError:
    return PermanentDeliveryError(text) if 500 <= code < 600 else TemporaryDeliveryError(text)


def _login(client: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH: smtplib's login for ASCII credentials; PLAIN or LOGIN with UTF-8 (RFC 4616)
    otherwise, since smtplib can only encode ASCII ones."""
    if username.isascii() and password.isascii():
        client.login(username, password)
        return
    client.ehlo_or_helo_if_needed()
    offered = (client.esmtp_features.get("auth") or "").upper().split()
    user, secret = username.encode(), password.encode()
    if "PLAIN" in offered:
        code, text = client.docmd(
            "AUTH", "PLAIN " + base64.b64encode(b"\0" + user + b"\0" + secret).decode())
    elif "LOGIN" in offered:
        code, text = client.docmd("AUTH", "LOGIN " + base64.b64encode(user).decode())
        if code == 334:
            code, text = client.docmd(base64.b64encode(secret).decode())
    else:
        raise smtplib.SMTPException(
            f"a non-ASCII password needs AUTH PLAIN or LOGIN; the server offers {offered}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, text)


class SmtpSender:
    """Send through the host's relay (host file `smtp:`): STARTTLS with the certificate and
    host name verified (system CAs, plus `ca_file` if set), AUTH when `username` is set
    (the password read through its reference at each attempt), one connection per mail.

    Relative `ca_file` and password file paths are from `base_dir` (the host file's folder).
    """

    def __init__(self, smtp: Smtp, base_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.smtp = smtp
        self.base_dir = Path(base_dir)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SmtpSender({self.smtp.host}:{self.smtp.port})"

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.smtp.ca_file:
            context.load_verify_locations(cafile=self.base_dir / self.smtp.ca_file)
        return context

    def _setup(self) -> tuple[ssl.SSLContext | None, str | None]:
        """The TLS context and password, or PermanentDeliveryError (a config problem)."""
        context = password = None
        if self.smtp.starttls:
            try:
                context = self.tls_context()
            except (OSError, ssl.SSLError) as exc:
                raise PermanentDeliveryError(
                    f"smtp.ca_file {self.smtp.ca_file}: {exc}") from None
        if self.smtp.username:
            if self.smtp.password is None:
                raise PermanentDeliveryError("smtp.username is set but smtp.password is not")
            try:
                password = read_secret(self.smtp.password, self.base_dir).decode("utf-8")
            except (SecretError, UnicodeDecodeError) as exc:
                raise PermanentDeliveryError(f"SMTP password: {exc}") from None
        return context, password

    def send(self, message: EmailMessage, *, mail_from: str, recipients: list[str]) -> None:
        context, password = self._setup()
        where = f"{self.smtp.host}:{self.smtp.port}"
        try:
            # Connects and reads the greeting (SMTPConnectError unless 220).
            client = smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.timeout)
        except Exception as exc:
            raise self._classify(exc, where) from exc
        try:
            try:
                client.ehlo()
                if context is not None:
                    client.starttls(context=context)
                    client.ehlo()
                if self.smtp.username:
                    assert password is not None
                    _login(client, self.smtp.username, password)
                refused = client.send_message(message, from_addr=mail_from,
                                              to_addrs=recipients)
            except Exception as exc:
                raise self._classify(exc, where) from exc
        finally:
            # Once send_message returned, the server has the mail: a failed QUIT changes
            # nothing.
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
        if refused:
            detail = "; ".join(f"{addr}: {_reply(code, text)}"
                               for addr, (code, text) in sorted(refused.items()))
            err = _by_code(max(code for code, _ in refused.values()),
                           f"{where} refused recipient(s) {detail}; the others accepted the "
                           "mail; not marked sent: it will be sent again to all its "
                           "recipients, same Message-ID")
            raise err

    def _classify(self, exc: Exception, where: str) -> DeliveryError:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentDeliveryError(
                f"{where}: TLS certificate refused: {exc.verify_message or exc} (add the "
                "relay's CA with smtp.ca_file)")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return PermanentDeliveryError(
                f"{where}: login as {self.smtp.username!r} refused: "
                f"{_reply(exc.smtp_code, exc.smtp_error)}")
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{addr}: {_reply(code, text)}"
                               for addr, (code, text) in sorted(exc.recipients.items()))
            return _by_code(max(codes, default=0),
                            f"{where} refused every recipient (RCPT): {detail}")
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return _by_code(exc.smtp_code, f"{where} refused the sender {exc.sender} (MAIL): "
                            f"{_reply(exc.smtp_code, exc.smtp_error)}")
        if isinstance(exc, smtplib.SMTPDataError):
            return _by_code(exc.smtp_code, f"{where} refused the message (DATA): "
                            f"{_reply(exc.smtp_code, exc.smtp_error)}")
        if isinstance(exc, smtplib.SMTPResponseException):
            return _by_code(exc.smtp_code, f"{where}: {_reply(exc.smtp_code, exc.smtp_error)}")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TemporaryDeliveryError(f"{where}: connection closed by the server "
                                          f"({exc or 'no reply'})")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentDeliveryError(f"{where}: {exc} (check smtp.starttls, "
                                          "smtp.username)")
        if isinstance(exc, smtplib.SMTPException):
            # e.g. "No suitable authentication method found", "STARTTLS extension not
            # supported by server": a configuration mismatch.
            return PermanentDeliveryError(f"{where}: {exc}")
        if isinstance(exc, TimeoutError):
            return TemporaryDeliveryError(f"{where}: timed out after {self.timeout:g} s")
        if isinstance(exc, ConnectionRefusedError):
            return TemporaryDeliveryError(f"{where}: connection refused")
        if isinstance(exc, OSError):
            return TemporaryDeliveryError(f"{where}: {exc}")
        if isinstance(exc, UnicodeError):
            return PermanentDeliveryError(f"{where}: {exc}")
        return TemporaryDeliveryError(f"{where}: {type(exc).__name__}: {exc}")


class MaildirSender:
    """The demo's delivery: each mail into a local maildir (stdlib `mailbox.Maildir`),
    directories 0700 and messages 0600."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"MaildirSender({self.path})"

    def send(self, message: EmailMessage, *, mail_from: str, recipients: list[str]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            box = mailbox.Maildir(self.path, factory=None, create=True)
            key = box.add(message_bytes(message))
            # Readable by no one else even before this chmod: the maildir's folders are
            # 0700 (mailbox creates them so).
            (self.path / "new" / key).chmod(0o600)
        except OSError as exc:
            raise TemporaryDeliveryError(f"maildir {self.path}: {exc}") from exc


def sender_for_host(host: Host, school: School,
                    timeout: float = DEFAULT_TIMEOUT) -> SmtpSender | MaildirSender:
    """The host file's relay if it has `smtp:`, else the school's maildir (demo only)."""
    if host.config.smtp is not None:
        return SmtpSender(host.config.smtp, host.file.resolve().parent, timeout)
    if school.maildir:
        return MaildirSender(host.state_dir / school.maildir)
    raise ValueError(f"{host.file}: no smtp: and school has no maildir: nowhere to send mail")


# --- delivering the outbox ---------------------------------------------------------------


def backoff(failures: int, *, permanent: bool = False) -> timedelta:
    """Wait after the `failures`-th failed attempt: 1 min, 5 min, 15 min, 1 h, then 3 h;
    3 h at once after a permanent error."""
    if permanent or failures > len(BACKOFF):
        return PERMANENT_BACKOFF
    return BACKOFF[max(failures, 1) - 1]


@dataclass(frozen=True)
class Outcome:
    batch_id: int
    kind: str
    sent: bool
    error: str | None = None
    permanent: bool = False
    next_attempt_at: datetime | None = None
    archive_path: str | None = None


@dataclass
class DeliveryReport:
    """What one `deliver_pending` did: `sent` and `failed` this run, `pending` left (mail
    transport, due or not), `archive_errors` (sent but not archived yet: retried)."""

    sent: int = 0
    failed: int = 0
    pending: int = 0
    archive_errors: int = 0
    outcomes: list[Outcome] = field(default_factory=list)


def archive_path_for(archive_dir: Path, batch: Batch, sent_at: datetime) -> Path:
    sent_at = sent_at.astimezone(UTC)
    return (Path(archive_dir) / f"{sent_at:%Y}" / f"{sent_at:%m}"
            / f"{batch.id}-{batch.kind}.eml")


def _write_archive(archive_dir: Path, batch: Batch, data: bytes, sent_at: datetime) -> Path:
    path = archive_path_for(archive_dir, batch, sent_at)
    archive_dir = Path(archive_dir)
    archive_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = archive_dir
    for part in path.parent.relative_to(archive_dir).parts:
        folder = folder / part
        if not folder.exists():
            folder.mkdir(mode=0o700)
            folder.chmod(0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _archive(conn: sqlite3.Connection, archive_dir: Path, batch: Batch, data: bytes,
             sent_at: datetime, report: DeliveryReport) -> str | None:
    try:
        path = str(_write_archive(archive_dir, batch, data, sent_at))
    except OSError as exc:
        report.archive_errors += 1
        log.error("outbox: batch %d sent but not archived (retried next run): %s",
                  batch.id, exc)
        return None
    store.set_archive(conn, batch.id, path)
    return path


def _due_time(now: datetime) -> datetime:
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def deliver_pending(conn: sqlite3.Connection, sender: Sender, *, now: datetime,
                    archive_dir: Path, metrics: Any = None) -> DeliveryReport:
    """Send every pending mail batch due at `now` (never tried, or its backoff is over).

    Each batch: build, send, then `mark sent` (only once the sender returned), then its
    .eml archived under `archive_dir/YYYY/MM/<id>-<kind>.eml` (0600, folders 0700). A
    failed attempt records its error and the next attempt time. Sent batches whose archive
    could not be written are archived again. `metrics`, if given, gets
    `set_outbox_pending(n)`.
    """
    now = _due_time(now)
    report = DeliveryReport()
    for batch in store.due(conn, now):
        try:
            message = build_message(batch)
            data = message_bytes(message)
        except Exception as exc:  # a batch that cannot be built must not block the others
            log.exception("outbox: batch %d (%s) cannot be built", batch.id, batch.kind)
            _failed(conn, batch, PermanentDeliveryError(f"cannot build the mail: {exc}"),
                    now, report)
            continue
        try:
            sender.send(message, mail_from=batch.mail_from or "", recipients=batch.recipients)
        except DeliveryError as exc:
            _failed(conn, batch, exc, now, report)
            continue
        except Exception as exc:  # a sender bug: not sent as far as we know; retry
            log.exception("outbox: batch %d (%s): sender failed", batch.id, batch.kind)
            _failed(conn, batch, TemporaryDeliveryError(f"{type(exc).__name__}: {exc}"),
                    now, report)
            continue
        store.mark_sent(conn, batch.id, now=now, archive_path=None)
        path = _archive(conn, archive_dir, batch, data, now, report)
        report.sent += 1
        report.outcomes.append(Outcome(batch.id, batch.kind, True, archive_path=path))
        log.info("outbox: batch %d (%s) sent, %s, via %r", batch.id, batch.kind,
                 batch.message_id, sender)
    for batch in store.sent_unarchived(conn):
        if any(o.batch_id == batch.id for o in report.outcomes):
            continue
        sent_at = datetime.fromisoformat(batch.sent_at) if batch.sent_at else now
        try:
            data = message_bytes(build_message(batch, date=sent_at))
        except Exception:
            log.exception("outbox: batch %d (%s) cannot be archived", batch.id, batch.kind)
            report.archive_errors += 1
            continue
        _archive(conn, archive_dir, batch, data, sent_at, report)
    report.pending = store.pending_count(conn, "mail")
    if metrics is not None and hasattr(metrics, "set_outbox_pending"):
        metrics.set_outbox_pending(store.pending_count(conn))
    return report


def _failed(conn: sqlite3.Connection, batch: Batch, exc: DeliveryError, now: datetime,
            report: DeliveryReport) -> None:
    failures = batch.attempts + 1
    when = now + backoff(failures, permanent=exc.permanent)
    error = f"{'permanent' if exc.permanent else 'temporary'}: {exc}"
    store.mark_failed(conn, batch.id, error=error, now=now, next_attempt_at=when)
    report.failed += 1
    report.outcomes.append(Outcome(batch.id, batch.kind, False, error, exc.permanent, when))
    log.warning("outbox: batch %d (%s) attempt %d failed, next at %s: %s", batch.id,
                batch.kind, failures, store.iso(when), error)


# --- operators: deliver now, send again -----------------------------------------------------


class OutboxError(Exception):
    """An outbox command that cannot apply (no such batch, not sent yet, purged…)."""


def make_due(conn: sqlite3.Connection, batch_id: int | None = None) -> list[int]:
    """`exchange retry`: the pending batches (or one) due now, ignoring their backoff (the
    relay or the password was fixed). OutboxError if `batch_id` is not a pending batch."""
    if batch_id is not None:
        state = store.state_of(conn, batch_id)
        if state is None:
            raise OutboxError(f"no batch {batch_id} (badged exchange list shows them)")
        if state[0] != store.PENDING:
            raise OutboxError(f"batch {batch_id} is {state[0]}, not pending: nothing to retry "
                              f"(to send it again: badged exchange resend {batch_id})")
    return store.make_due(conn, batch_id)


def resend(conn: sqlite3.Connection, sender: Sender, batch_id: int, *, now: datetime,
           actor: str) -> str:
    """`exchange resend`: a sent batch's mail again, same Message-ID (the CROUS's mail
    system sees it is the same file), recorded in the events journal whatever the outcome.
    Its Message-ID; OutboxError if it cannot be, DeliveryError if the relay refused."""
    state = store.state_of(conn, batch_id)
    if state is None:
        raise OutboxError(f"no batch {batch_id} (badged exchange list shows them)")
    if state[0] != store.SENT:
        raise OutboxError(f"batch {batch_id} is {state[0]}, not sent yet: the outbox sends "
                          f"it (now: badged exchange retry {batch_id})")
    if state[1] is not None:
        raise OutboxError(f"batch {batch_id} was purged on {state[1]} (past "
                          "archive_retention_days): its files are gone")
    batch = store.get(conn, batch_id)
    assert batch is not None
    detail = {"batch": batch.id, "kind": batch.kind, "message_id": batch.message_id,
              "recipients": batch.recipients, "actor": actor}
    try:
        sender.send(build_message(batch, date=now), mail_from=batch.mail_from or "",
                    recipients=batch.recipients)
    except DeliveryError as exc:
        events.add(conn, "batch-resend", detail={**detail, "outcome": f"failed: {exc}"})
        log.warning("outbox: batch %d (%s) resend by %s failed: %s", batch.id, batch.kind,
                    actor, exc)
        raise
    events.add(conn, "batch-resend", detail={**detail, "outcome": "sent"})
    log.info("outbox: batch %d (%s) sent again by %s, %s, via %r", batch.id, batch.kind,
             actor, batch.message_id, sender)
    return batch.message_id


def resends(conn: sqlite3.Connection) -> dict[int, list[dict[str, Any]]]:
    """batch id → its recorded resends (at, actor, outcome), oldest first."""
    out: dict[int, list[dict[str, Any]]] = {}
    for at, detail in conn.execute(
            "SELECT at, detail FROM events WHERE kind = 'batch-resend' ORDER BY id"):
        data = json.loads(detail)
        out.setdefault(data["batch"], []).append(
            {"at": at, "actor": data.get("actor"), "outcome": data.get("outcome")})
    return out


# --- history and retention -----------------------------------------------------------------


def list_batches(conn: sqlite3.Connection, limit: int | None = None) -> list[BatchInfo]:
    """`badged exchange list`: every batch, newest first, with its delivery state, last
    error, Message-ID, recipients and files (name, size, sha256)."""
    return store.history(conn, limit)


@dataclass(frozen=True)
class PurgeReport:
    batches: int
    archives_deleted: int


def purge(conn: sqlite3.Connection, archive_dir: Path, retention_days: int,
          now: datetime) -> PurgeReport:
    """Delete the archives and file contents of batches SENT more than `retention_days`
    ago. Pending batches (and sent ones not archived yet) are never touched; batch rows,
    file names, sizes, checksums and items stay."""
    now = _due_time(now)
    archive_root = Path(archive_dir).resolve()
    deleted = batches = 0
    for batch_id, path_text in store.purgeable(conn, now - timedelta(days=retention_days)):
        path = Path(path_text)
        if path.resolve().is_relative_to(archive_root):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                deleted += 1
            for folder in (path.parent, path.parent.parent):
                if folder.resolve() != archive_root:
                    with contextlib.suppress(OSError):
                        folder.rmdir()          # only if empty
        else:
            log.warning("outbox: batch %d archive %s is outside %s: left in place",
                        batch_id, path, archive_root)
        store.mark_purged(conn, batch_id, now)
        batches += 1
    if batches:
        log.info("outbox: purged %d batch(es) sent more than %d days ago", batches,
                 retention_days)
    return PurgeReport(batches, deleted)
