"""The contract between the outbox and a sender: `Sender.send` returns once the mail was
accepted, or raises a `DeliveryError` that says whether retrying soon can help."""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from typing import Protocol


class DeliveryError(Exception):
    """An attempt failed; the batch stays pending. `permanent`: retrying soon won't help
    (5xx, refused certificate or login, bad config): the next attempt waits longer.
    `accepted`: recipients that did take the mail (the others were refused)."""

    permanent = False

    def __init__(self, message: str, *, accepted: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.accepted = tuple(accepted)


class TemporaryDeliveryError(DeliveryError):
    """Connection refused or dropped, timeout, 4xx: retried with the normal backoff."""


class PermanentDeliveryError(DeliveryError):
    """5xx on MAIL/RCPT/DATA, TLS certificate refused, login refused: still retried (a
    batch is never dropped), with a long backoff, and the error shows in `exchange list`."""

    permanent = True


class Sender(Protocol):
    def send(self, message: EmailMessage, *, mail_from: str, recipients: list[str],
             again: bool = False) -> None:
        """Deliver or raise DeliveryError; returning means the message was accepted.

        The outbox may hand over a mail it already delivered (a run killed before it
        marked the batch sent): a sender that can tell (the maildir) keeps it once.
        `again`: an operator's resend, delivered even so."""
