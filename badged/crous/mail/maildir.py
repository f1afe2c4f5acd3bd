"""The demo's sender: each mail into a local maildir, readable by no one else."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from pathlib import Path

from .message import message_bytes
from .senders import TemporaryDeliveryError


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
