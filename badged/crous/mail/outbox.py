"""The outbox's policy: what is sent when, by whom, how often it is tried, what is kept.

`deliver_pending` sends each pending batch that is due (written by `batches.write_batch`),
one mail per batch (`message.build_message`), through a sender (`smtp.SmtpSender`, or
`maildir.MaildirSender` for the demo: `sender_for_host` picks). A batch is marked sent only
once the server accepted the message (or the maildir write returned); then its .eml is
archived (`crous.archives`). A failed attempt keeps it pending with the error and a growing
backoff; a batch is never dropped. A crash between the server's acceptance and `mark sent`
sends the same mail again (same Message-ID) at the next run: at most a resend, never a lost
batch. One process delivers at a time, whichever it is (the daemon, `badged exchange run`):
it holds the store's "outbox" lease (see `badged.store.leases`) while it works. The bytes
handed to the relay are stored with "marked sent" and are what the archive holds. When the
relay refuses some recipients only, the next attempt goes to those only.

`purge` drops the archives and file contents of sent batches past retention; the batch
rows, checksums and items stay (what the CROUS was told, and when).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...store import events, leases
from ...store import outbox as store
from ...store.outbox import Batch, BatchInfo
from ..archives import clean_leftovers, delete_archive, write_archive
from .maildir import MaildirSender
from .message import build_message, message_bytes
from .senders import DeliveryError, PermanentDeliveryError, Sender, TemporaryDeliveryError
from .smtp import DEFAULT_TIMEOUT, SmtpSender

if TYPE_CHECKING:
    from ...config.host import Host
    from ...config.model import School

log = logging.getLogger(__name__)

# Delay before the next attempt after the n-th failed one; then every 3 h.
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15),
           timedelta(hours=1))
PERMANENT_BACKOFF = timedelta(hours=3)
# The outbox lease: renewed before each batch, so it only has to outlast one mail's
# delivery (a few SMTP timeouts); a crashed holder blocks delivery at most this long.
LEASE, LEASE_SECONDS = leases.OUTBOX, 600.0


# --- where mail goes ------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Waiting:
    """A mail batch still undelivered after a run, and when it is tried next (None: as
    soon as a deliverer runs)."""

    batch_id: int
    kind: str
    attempts: int
    next_attempt_at: str | None
    last_error: str | None


@dataclass
class DeliveryReport:
    """What one `deliver_pending` did: `sent` and `failed` this run, `pending` left (mail
    transport, due or not) and each of them in `waiting`, `archive_errors` (sent but not
    archived yet: retried), `busy` (another process holds the outbox lease: who)."""

    sent: int = 0
    failed: int = 0
    pending: int = 0
    archive_errors: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    busy: str | None = None


def _archive(conn: sqlite3.Connection, archive_dir: Path, batch: Batch, data: bytes,
             sent_at: datetime, report: DeliveryReport) -> str | None:
    try:
        path = str(write_archive(archive_dir, batch, data, sent_at))
    except OSError as exc:
        report.archive_errors += 1
        log.error("outbox: batch %d sent but not archived (retried next run): %s",
                  batch.id, exc)
        return None
    store.set_archive(conn, batch.id, path)
    return path


def _due_time(now: datetime) -> datetime:
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def outbox_lease(conn: sqlite3.Connection, what: str, *, seconds: float = LEASE_SECONDS,
                 clock: leases.Clock = time.time
                 ) -> contextlib.AbstractContextManager[Callable[[], bool] | None]:
    """Hold the outbox lease for a block: yields `renew()`, or None when another process
    holds it (`leases.holder(conn, LEASE)` says who)."""
    return leases.holding(conn, LEASE, what, seconds, clock)


def _waiting(conn: sqlite3.Connection) -> list[Waiting]:
    return [Waiting(b.id, b.kind, b.attempts, b.next_attempt_at, b.last_error)
            for b in store.pending(conn, "mail")]


def deliver_pending(conn: sqlite3.Connection, sender: Sender, *, now: datetime,
                    archive_dir: Path, metrics: Any = None, what: str = "badged",
                    lease_seconds: float = LEASE_SECONDS,
                    clock: leases.Clock = time.time) -> DeliveryReport:
    """Send every pending mail batch due at `now` (never tried, or its backoff is over).

    Only while holding the outbox lease (`what` names this deliverer to the others);
    when another process holds it, nothing is sent and `report.busy` says who. Each
    batch: build, send to the recipients that have not accepted it yet, then `mark sent`
    with the bytes sent (only once the sender returned), then those bytes archived under
    `archive_dir/YYYY/MM/<id>-<kind>.eml` (0600, folders 0700). A failed attempt records
    its error, the recipients that accepted, and the next attempt time. Sent batches
    whose archive could not be written are archived again; unfinished archive copies a
    killed run left are removed. `metrics`, if given, gets `set_outbox_pending(n)`.
    """
    now = _due_time(now)
    report = DeliveryReport()
    with outbox_lease(conn, what, seconds=lease_seconds, clock=clock) as renew:
        if renew is None:
            current = leases.holder(conn, LEASE)
            report.busy = current.describe() if current else "another process"
            log.info("outbox: not delivering, %s is", report.busy)
        else:
            clean_leftovers(archive_dir)
            _deliver_due(conn, sender, now, archive_dir, report, renew)
    report.pending = store.pending_count(conn, "mail")
    report.waiting = _waiting(conn)
    if metrics is not None and hasattr(metrics, "set_outbox_pending"):
        metrics.set_outbox_pending(store.pending_count(conn))
    return report


def _deliver_due(conn: sqlite3.Connection, sender: Sender, now: datetime, archive_dir: Path,
                 report: DeliveryReport, renew: Callable[[], bool]) -> None:
    for batch in store.due(conn, now):
        if not renew():
            log.error("outbox: lost the delivery lease: stopping before batch %d", batch.id)
            break
        try:
            message = build_message(batch)
            data = message_bytes(message)
        except Exception as exc:  # a batch that cannot be built must not block the others
            log.exception("outbox: batch %d (%s) cannot be built", batch.id, batch.kind)
            _failed(conn, batch, PermanentDeliveryError(f"cannot build the mail: {exc}"),
                    now, report)
            continue
        done = set(batch.delivered_to)
        left = [r for r in batch.recipients if r not in done]
        try:
            sender.send(message, mail_from=batch.mail_from or "", recipients=left)
        except DeliveryError as exc:
            _failed(conn, batch, exc, now, report)
            continue
        except Exception as exc:  # a sender bug: not sent as far as we know; retry
            log.exception("outbox: batch %d (%s): sender failed", batch.id, batch.kind)
            _failed(conn, batch, TemporaryDeliveryError(f"{type(exc).__name__}: {exc}"),
                    now, report)
            continue
        store.mark_sent(conn, batch.id, now=now, archive_path=None, message=data)
        path = _archive(conn, archive_dir, batch, data, now, report)
        report.sent += 1
        report.outcomes.append(Outcome(batch.id, batch.kind, True, archive_path=path))
        log.info("outbox: batch %d (%s) sent, %s, via %r", batch.id, batch.kind,
                 batch.message_id, sender)
    for batch in store.sent_unarchived(conn):
        if any(o.batch_id == batch.id for o in report.outcomes):
            continue
        sent_at = datetime.fromisoformat(batch.sent_at) if batch.sent_at else now
        data = store.sent_message(conn, batch.id)
        if data is None:  # sent by a version that did not keep the bytes: rebuild
            try:
                data = message_bytes(build_message(batch, date=sent_at))
            except Exception:
                log.exception("outbox: batch %d (%s) cannot be archived", batch.id,
                              batch.kind)
                report.archive_errors += 1
                continue
        _archive(conn, archive_dir, batch, data, sent_at, report)


def _failed(conn: sqlite3.Connection, batch: Batch, exc: DeliveryError, now: datetime,
            report: DeliveryReport) -> None:
    failures = batch.attempts + 1
    when = now + backoff(failures, permanent=exc.permanent)
    error = f"{'permanent' if exc.permanent else 'temporary'}: {exc}"
    store.mark_failed(conn, batch.id, error=error, now=now, next_attempt_at=when,
                      delivered_to=exc.accepted)
    report.failed += 1
    report.outcomes.append(Outcome(batch.id, batch.kind, False, error, exc.permanent, when))
    log.warning("outbox: batch %d (%s) attempt %d failed, next at %s: %s", batch.id,
                batch.kind, failures, store.iso(when), error)


# --- operators: deliver now, send again -----------------------------------------------------


class OutboxError(Exception):
    """An outbox command that cannot apply (no such batch, not sent yet, purged…)."""


def _state_of(conn: sqlite3.Connection, batch_id: int) -> tuple[str, str | None]:
    """(state, purged_at) of a batch an operator named; OutboxError if there is none."""
    state = store.state_of(conn, batch_id)
    if state is None:
        raise OutboxError(f"no batch {batch_id} (badged exchange list shows them)")
    return state


def make_due(conn: sqlite3.Connection, batch_id: int | None = None) -> list[int]:
    """`exchange retry`: the pending batches (or one) due now, ignoring their backoff (the
    relay or the password was fixed). OutboxError if `batch_id` is not a pending batch."""
    if batch_id is not None:
        state = _state_of(conn, batch_id)
        if state[0] != store.PENDING:
            raise OutboxError(f"batch {batch_id} is {state[0]}, not pending: nothing to retry "
                              f"(to send it again: badged exchange resend {batch_id})")
    return store.make_due(conn, batch_id)


def resend(conn: sqlite3.Connection, sender: Sender, batch_id: int, *, now: datetime,
           actor: str) -> str:
    """`exchange resend`: a sent batch's mail again, same Message-ID (the CROUS's mail
    system sees it is the same file), recorded in the events journal whatever the outcome.
    Its Message-ID; OutboxError if it cannot be, DeliveryError if the relay refused."""
    state = _state_of(conn, batch_id)
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
                    recipients=batch.recipients, again=True)
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
          now: datetime, what: str = "badged") -> PurgeReport:
    """Delete the archives and file contents of batches SENT more than `retention_days`
    ago, and the unfinished archive copies a killed run left. Pending batches (and sent
    ones not archived yet) are never touched; batch rows, file names, sizes, checksums and
    items stay. Under the outbox lease: skipped (0 purged) while another process
    delivers."""
    now = _due_time(now)
    with outbox_lease(conn, what) as renew:
        if renew is None:  # the deliverer archives meanwhile: purge at the next run
            return PurgeReport(0, 0)
        clean_leftovers(archive_dir)
        return _purge(conn, archive_dir, retention_days, now)


def _purge(conn: sqlite3.Connection, archive_dir: Path, retention_days: int,
           now: datetime) -> PurgeReport:
    deleted = batches = 0
    for batch_id, path_text in store.purgeable(conn, now - timedelta(days=retention_days)):
        path = Path(path_text)
        done = delete_archive(path, archive_dir)
        if done is None:
            log.warning("outbox: batch %d archive %s is outside %s: left in place",
                        batch_id, path, Path(archive_dir).resolve())
        deleted += bool(done)
        store.mark_purged(conn, batch_id, now)
        batches += 1
    if batches:
        log.info("outbox: purged %d batch(es) sent more than %d days ago", batches,
                 retention_days)
    return PurgeReport(batches, deleted)
