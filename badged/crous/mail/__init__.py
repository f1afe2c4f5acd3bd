"""CROUS mail exchanges through the outbox (docs/design.md): write, build, send, archive, purge.

1. `batches.write_batch` stores a batch whole in one transaction: files (with sha256),
   recipients, subject, body, the people it tells the CROUS about, and its Message-ID.
   Nothing is sent.
2. `outbox.deliver_pending` sends each pending batch that is due, one mail per batch
   (`message.build_message`), through a sender (`senders.Sender`: `smtp.SmtpSender`, or
   `maildir.MaildirSender` for the demo), under the outbox lease, with retries and
   backoff; the bytes sent are archived (`badged.crous.archives`).
3. `outbox.purge` drops the archives and file contents of sent batches past retention.

The names below are the package's interface: callers import them from `badged.crous.mail`.
Importing it loads the mail code (email, smtplib, mailbox): the daemon does so only in the
jobs that send or purge.
"""

from ...store.outbox import Batch, BatchInfo, FileInfo
from ..archives import archive_path_for, clean_leftovers
from .batches import OutgoingFile, write_batch
from .maildir import MaildirSender
from .message import build_message, message_bytes
from .outbox import (
    BACKOFF,
    LEASE,
    PERMANENT_BACKOFF,
    DeliveryReport,
    OutboxError,
    Outcome,
    PurgeReport,
    Waiting,
    backoff,
    deliver_pending,
    list_batches,
    make_due,
    outbox_lease,
    purge,
    resend,
    resends,
    sender_for_host,
)
from .senders import DeliveryError, PermanentDeliveryError, Sender, TemporaryDeliveryError
from .smtp import SmtpSender

__all__ = [
    "BACKOFF",
    "LEASE",
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
    "Waiting",
    "archive_path_for",
    "backoff",
    "build_message",
    "clean_leftovers",
    "deliver_pending",
    "list_batches",
    "make_due",
    "message_bytes",
    "outbox_lease",
    "purge",
    "resend",
    "resends",
    "sender_for_host",
    "write_batch",
]
