"""The demo's sender: each mail into a local maildir, readable by no one else.

Delivery follows the maildir convention (the whole mail written and fsync'ed in `tmp/`,
then linked into `new/`, so a reader never sees half a mail) and is idempotent: the mail's
file name is made of its Message-ID, and a mail already in `new/` or `cur/` is not
delivered again (but for an operator's `exchange resend`). The outbox marks a batch sent
only after the sender returned; a run killed in between sends the batch again at its next
run, and a maildir keeps it once.
(`mailbox.Maildir.add` names each delivery anew: it would keep it twice. Its folders are
created only with the maildir itself: a kill in between left a maildir without `tmp/`.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from email.message import EmailMessage
from pathlib import Path

from ... import leftovers
from .message import message_bytes
from .senders import TemporaryDeliveryError


def mail_name(message_id: str) -> str:
    """The mail's file name in `new/` (and before the `:2,` flags in `cur/`)."""
    return f"badged.{hashlib.sha256(message_id.encode()).hexdigest()[:32]}"


class MaildirSender:
    """The demo's delivery: each mail into a local maildir, directories 0700 and messages
    0600, each Message-ID once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"MaildirSender({self.path})"

    def send(self, message: EmailMessage, *, mail_from: str, recipients: list[str],
             again: bool = False) -> None:
        """Deliver `message` once per Message-ID; `again` (an operator's resend): one
        more copy."""
        message_id = message["Message-ID"]
        if not message_id:
            raise TemporaryDeliveryError("maildir: a mail without a Message-ID")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for folder in (self.path, *(self.path / sub for sub in ("tmp", "new", "cur"))):
                folder.mkdir(mode=0o700, exist_ok=True)
            name = mail_name(str(message_id))
            leftovers.remove_stale(self.path / "tmp" / name)  # a killed delivery's copy
            if again:
                name = f"{name}.again.{secrets.token_hex(4)}"
            elif self._delivered(name):
                return
            self._deliver(name, message_bytes(message))
        except OSError as exc:
            raise TemporaryDeliveryError(f"maildir {self.path}: {exc}") from exc

    def _delivered(self, name: str) -> bool:
        return (self.path / "new" / name).exists() or any(
            (self.path / "cur").glob(f"{name}:*")) or (self.path / "cur" / name).exists()

    def _deliver(self, name: str, data: bytes) -> None:
        tmp = leftovers.temporary(self.path / "tmp" / name)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # ours: a pid reused since
        leftovers.write_new(tmp, data, 0o600)
        try:
            os.link(tmp, self.path / "new" / name)  # never over a mail already there
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
