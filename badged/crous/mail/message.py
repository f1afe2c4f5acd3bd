"""The one mail of a batch, byte for byte as it is sent, written to a maildir and archived."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime

from ... import clock
from ...store.outbox import Batch


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
