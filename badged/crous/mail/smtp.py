"""The production sender: the host's SMTP relay (STARTTLS, AUTH), and what each way an
SMTP exchange can fail means for the batch (temporary: retried soon; permanent: later)."""

from __future__ import annotations

import base64
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

from ...config.errors import SecretError
from ...config.model import Smtp
from ...config.secrets import read_secret
from .senders import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError

DEFAULT_TIMEOUT = 30.0


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


def _by_code(code: int, text: str, accepted: Sequence[str] = ()) -> DeliveryError:
    cls = PermanentDeliveryError if 500 <= code < 600 else TemporaryDeliveryError
    return cls(text, accepted=accepted)


def login(client: smtplib.SMTP, username: str, password: str) -> None:
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

    def send(self, message: EmailMessage, *, mail_from: str, recipients: list[str],
             again: bool = False) -> None:
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
                    login(client, self.smtp.username, password)
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
            accepted = [r for r in recipients if r not in refused]
            raise _by_code(max(code for code, _ in refused.values()),
                           f"{where} refused recipient(s) {detail}; the others accepted the "
                           "mail; not marked sent: it will be sent again to the refused "
                           "recipient(s) only, same Message-ID", accepted=accepted)

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
