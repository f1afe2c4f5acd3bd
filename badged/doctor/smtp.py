"""Doctor: the SMTP relay, step by step as the sender uses it (TCP, EHLO, STARTTLS with
the certificate verified, AUTH), then QUIT: no mail is sent."""

from __future__ import annotations

import smtplib
import socket
import ssl

from ..config.errors import SecretError
from ..config.host import Host
from ..config.secrets import read_secret
from ..config.tree import Site
from ..crous.mail.smtp import SmtpSender
from ..crous.mail.smtp import login as smtp_login
from . import Check, fail, ok, skip


def checks(host: Host, site: Site, timeout: float) -> list[Check]:
    smtp = host.config.smtp
    if smtp is None:
        if site.school.maildir:
            return [ok("smtp", f"no relay: mail goes to the maildir "
                       f"{host.state_dir / site.school.maildir} (demo)")]
        return [ok("smtp", "no relay configured and no mail exchange")]
    where = f"{smtp.host}:{smtp.port}"
    sender = SmtpSender(smtp, host.file.resolve().parent, timeout)
    out: list[Check] = []
    try:
        # Connects and reads the greeting (SMTPConnectError unless 220).
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        out.append(fail("smtp tcp", f"{where}: {_why(exc)}",
                        "check smtp.host and smtp.port in the host file, the relay, and "
                        "the firewall between this host and it"))
        out.append(skip("smtp ehlo/starttls/auth", "no connection"))
        return out
    out.append(ok("smtp tcp", f"{where} answers with 220"))
    try:
        return out + _session(client, sender, where)
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _session(client: smtplib.SMTP, sender: SmtpSender, where: str) -> list[Check]:
    smtp = sender.smtp
    out: list[Check] = []
    try:
        code, _ = client.ehlo()
    except (OSError, smtplib.SMTPException) as exc:
        return [fail("smtp ehlo", f"{where}: {_why(exc)}", "check the relay's logs")]
    if code != 250:
        return [fail("smtp ehlo", f"{where}: EHLO answered {code}", "check the relay")]
    out.append(ok("smtp ehlo", f"{where}: {', '.join(sorted(client.esmtp_features))}"))
    if smtp.starttls:
        try:
            context = sender.tls_context()
        except (OSError, ssl.SSLError) as exc:
            out.append(fail("smtp starttls", f"smtp.ca_file {smtp.ca_file}: {_why(exc)}",
                            "point smtp.ca_file at the relay's CA certificate (PEM), "
                            "relative to the host file's folder"))
            return out
        try:
            client.starttls(context=context)
            client.ehlo()
        except ssl.SSLCertVerificationError as exc:
            out.append(fail("smtp starttls", f"{where}: certificate refused: "
                            f"{exc.verify_message or exc}",
                            "set smtp.ca_file to the CA that signed the relay's certificate "
                            "(and check smtp.host is a name the certificate carries)"))
            return out
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            out.append(fail("smtp starttls", f"{where}: {_why(exc)}",
                            "the relay must offer STARTTLS on this port (or set "
                            "smtp.starttls: false on a trusted local relay)"))
            return out
        cipher = client.sock.cipher() if isinstance(client.sock, ssl.SSLSocket) else None
        out.append(ok("smtp starttls", f"{where}: certificate verified"
                      + (f", {cipher[1]} {cipher[0]}" if cipher else "")))
    if not smtp.username:
        out.append(ok("smtp auth", "no smtp.username: the relay takes mail without login"))
        return out
    if smtp.password is None:
        out.append(fail("smtp auth", "smtp.username is set but smtp.password is not",
                        "add password: {credential: smtp} to the host file's smtp:"))
        return out
    try:
        password = read_secret(smtp.password, sender.base_dir).decode("utf-8")
    except (SecretError, UnicodeDecodeError) as exc:
        out.append(fail("smtp auth", f"password: {exc}",
                        "fix the password reference (see the line of the smtp password)"))
        return out
    try:
        smtp_login(client, smtp.username, password)
    except smtplib.SMTPAuthenticationError as exc:
        out.append(fail("smtp auth", f"{where}: login as {smtp.username!r} refused: "
                        f"{exc.smtp_code} {_text(exc.smtp_error)}",
                        "check smtp.username and the password credential with the relay's "
                        "administrator"))
    except (OSError, smtplib.SMTPException) as exc:
        out.append(fail("smtp auth", f"{where}: {_why(exc)}",
                        "the relay must offer AUTH PLAIN or LOGIN after STARTTLS"))
    else:
        out.append(ok("smtp auth", f"{where}: login as {smtp.username!r} accepted"))
    return out


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(value.split())


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
