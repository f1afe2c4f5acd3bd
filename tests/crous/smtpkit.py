"""Test kit for the outbox: a test CA, a real SMTP server on loopback, a crashing child.

- `make_pki(folder)`: a CA and server certificates made with `cryptography` (EC P-256):
  one for 127.0.0.1/localhost, one for another host name (name mismatch).
- `SmtpServer`: aiosmtpd on 127.0.0.1 with a free port, STARTTLS required, AUTH
  (PLAIN/LOGIN) required, recording what it accepted; knobs to refuse a recipient, refuse
  DATA, or drop the connection in the middle of DATA.
- `python smtpkit.py child SPEC_JSON`: a child process that writes a batch and SIGKILLs
  itself before delivery (`kill_before_delivery`) or right after the server accepted the
  mail, before `mark sent` (`kill_after_send`). The kill hook lives here, in test code only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# --- PKI -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: Path            # the test CA certificate (PEM): what smtp.ca_file points to
    cert_file: Path          # server certificate for 127.0.0.1 and localhost
    key_file: Path
    wrong_cert_file: Path    # server certificate for smtp.example.invalid only
    wrong_key_file: Path

    def server_context(self, *, wrong_name: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if wrong_name:
            context.load_cert_chain(self.wrong_cert_file, self.wrong_key_file)
        else:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "badged tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("badged test CA")).issuer_name(_name("badged test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                     crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def leaf(stem: str, names: list[x509.GeneralName]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(stem)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
        cert_file, key_file = folder / f"{stem}.pem", folder / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_file, key)
        return cert_file, key_file

    cert_file, key_file = leaf("server", [x509.DNSName("localhost"),
                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    wrong_cert, wrong_key = leaf("wrong", [x509.DNSName("smtp.example.invalid")])
    return Pki(ca_file, cert_file, key_file, wrong_cert, wrong_key)


# --- the SMTP server -----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes           # the message as received (CRLF line endings)
    tls: bool
    login: str | None
    mechanism: str | None


@dataclass
class Recorder:
    """The aiosmtpd handler: accepts, refuses or drops as told; records what it accepted."""

    users: dict[str, str] = field(default_factory=dict)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)   # address → reply
    data_reply: str | None = None                              # e.g. "554 5.6.0 no"
    drop_in_data: int = 0                                      # drop the next N DATA
    data_delay: float = 0.0                                    # seconds before DATA's reply
    received: list[Received] = field(default_factory=list)
    auth_attempts: list[tuple[str, str]] = field(default_factory=list)  # (mechanism, login)
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        with self.lock:
            self.auth_attempts.append((mechanism, login))
        ok = self.users.get(login) == password
        session.__dict__["badged_mechanism"] = mechanism
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, rcpt_options: list[str]) -> str:
        reply = self.refuse_rcpt.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
            self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)               # a slow relay
        if self.data_reply:
            return self.data_reply
        content = envelope.original_content or b""
        assert envelope.mail_from is not None
        with self.lock:
            self.received.append(Received(
                envelope.mail_from, list(envelope.rcpt_tos), bytes(content),
                tls=server._tls_protocol is not None,
                login=session.auth_data if session.authenticated else None,
                mechanism=session.__dict__.get("badged_mechanism")))
        return "250 2.0.0 Message accepted for delivery"


class _KitSMTP(SMTP):
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        handler = self.event_handler
        if handler.drop_in_data > 0 and self.envelope is not None and self.envelope.rcpt_tos:
            handler.drop_in_data -= 1
            handler.dropped += 1
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")     # a first line of the message, then…
            assert self.transport is not None
            self.transport.abort()                     # …the connection is gone
            return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _KitSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # Bound on port 0: learn the port before the controller's own test connection.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    """A real SMTP server on 127.0.0.1 (port 0: a free one, or a given one to come back up
    on the same port), STARTTLS and AUTH required."""

    def __init__(self, pki: Pki, recorder: Recorder, *, port: int = 0,
                 wrong_name: bool = False, exclude: list[str] | None = None) -> None:
        self.recorder = recorder
        self.controller = _Controller(
            recorder, hostname="127.0.0.1", port=port, loop=asyncio.new_event_loop(),
            server_hostname="mx.test", ready_timeout=10,
            tls_context=pki.server_context(wrong_name=wrong_name), require_starttls=True,
            auth_required=True, auth_require_tls=True, authenticator=recorder.authenticate,
            auth_exclude_mechanism=exclude or [])

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def reserve_port() -> socket.socket:
    """A bound, non-listening socket: its port refuses connections until it is closed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


# --- the crashing child ----------------------------------------------------------------------


def _child(spec: dict[str, Any]) -> None:
    """Write a batch, then SIGKILL before delivery, or right after the server accepted the
    mail (before `mark sent`)."""
    import smtplib

    from badged.config.model import Smtp
    from badged.crous.mail import OutgoingFile, SmtpSender, deliver_pending, write_batch
    from badged.store.db import open_store

    conn = open_store(Path(spec["state_dir"]))
    batch_id = write_batch(
        conn, school_id="emse", kind="primo-entrants", mail_from="badged@emse.example",
        recipients=spec["recipients"], subject="Primo-entrants", body="Ci-joint.\n",
        files=[OutgoingFile("primo.csv", bytes.fromhex(spec["content_hex"]), "utf-8")],
        items=[("p1", "f1", "new")], academic_year=2026)
    print(batch_id, flush=True)
    if spec["mode"] == "kill_before_delivery":
        os.kill(os.getpid(), signal.SIGKILL)
    assert spec["mode"] == "kill_after_send"
    original = smtplib.SMTP.send_message

    def send_then_die(self: smtplib.SMTP, *args: Any, **kwargs: Any) -> Any:
        refused = original(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)      # the server has it; the store does not know
        return refused

    smtplib.SMTP.send_message = send_then_die  # type: ignore[method-assign]
    sender = SmtpSender(Smtp.model_validate(spec["smtp"]), Path(spec["base_dir"]), 10)
    deliver_pending(conn, sender, now=dt.datetime.fromisoformat(spec["now"]),
                    archive_dir=Path(spec["archive_dir"]))
    raise SystemExit("not killed")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        _child(json.loads(sys.argv[2]))
    else:
        raise SystemExit("usage: smtpkit.py child SPEC_JSON")
