"""The SFTP destination (paramiko, imported only when an SFTP export runs or is checked).

The server's host key must be the one `known_hosts` (a reference) holds for it, else the
connection is refused before anything is sent; authentication is by key only (a
reference, 0600). Each file is uploaded under a hidden temporary name, its mode set, then
renamed over the old one (OpenSSH's posix-rename), so the door system never reads half a
file and a failure leaves the previous export in place.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import posixpath
import socket
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import leftovers
from ..config.errors import SecretError
from ..config.model import SftpDestination
from ..config.secrets import read_secret, secret_path
from .destinations import PART, DestinationError, _temp_name, sftp_description
from .formats import RenderedFile

# Host-key algorithms negotiated for a key type found in known_hosts.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


def fingerprint(key: Any) -> str:
    """OpenSSH's form: SHA256:<base64, no padding>."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class Sftp:
    def __init__(self, spec: SftpDestination, tree: Path) -> None:
        self.spec = spec
        self.tree = tree
        self.mode = int(spec.mode, 8)
        self.description = sftp_description(spec)

    # --- connection ---------------------------------------------------------------------

    def _host_name(self) -> str:
        host = self.spec.host
        return host if self.spec.port == 22 else f"[{host}]:{self.spec.port}"

    def _known_keys(self) -> dict[str, Any]:
        import paramiko

        path = secret_path(self.spec.known_hosts, self.tree)
        try:
            st = path.stat()
        except OSError as exc:
            raise DestinationError(f"{self.description}: known_hosts {path}: "
                                   f"{exc.strerror}") from None
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise DestinationError(f"{self.description}: known_hosts {path} is writable by "
                                   f"group or others (mode {stat.S_IMODE(st.st_mode):04o}): "
                                   "anyone could vouch for a server; chmod 644 it")
        try:
            keys = paramiko.HostKeys(str(path))
        except (OSError, paramiko.SSHException) as exc:
            raise DestinationError(f"{self.description}: known_hosts {path}: {exc}") from None
        found = keys.lookup(self._host_name())
        if not found:
            raise DestinationError(f"{self.description}: known_hosts {path} has no key for "
                                   f"{self._host_name()}: add the server's host key "
                                   f"(ssh-keyscan -p {self.spec.port} {self.spec.host})")
        return {name: found[name] for name in found}

    def _client_key(self) -> Any:
        import paramiko

        try:
            text = read_secret(self.spec.key, self.tree).decode("utf-8", "replace")
        except SecretError as exc:
            raise DestinationError(f"{self.description}: key: {exc}") from None
        for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            with contextlib.suppress(paramiko.SSHException, ValueError):
                return kind.from_private_key(io.StringIO(text + "\n"))
        path = secret_path(self.spec.key, self.tree)
        raise DestinationError(f"{self.description}: key {path}: not an unencrypted "
                               "OpenSSH/PEM private key (ed25519, ecdsa or rsa)")

    @contextlib.contextmanager
    def session(self) -> Iterator[Any]:
        """A connected, host-key-checked, authenticated SFTP client."""
        import paramiko

        known = self._known_keys()
        client_key = self._client_key()
        timeout = self.spec.timeout_seconds
        try:
            sock = socket.create_connection((self.spec.host, self.spec.port), timeout=timeout)
        except OSError as exc:
            raise DestinationError(f"{self.description}: cannot connect: "
                                   f"{exc.strerror or exc}") from None
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = transport.auth_timeout = timeout
            transport.handshake_timeout = timeout
            wanted = [alg for name in known for alg in _ALGORITHMS.get(name, (name,))]
            usable = [alg for alg in wanted if alg in transport._preferred_keys]
            if usable:
                transport.get_security_options().key_types = usable
            try:
                transport.start_client(timeout=timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise DestinationError(f"{self.description}: SSH handshake failed: "
                                       f"{exc or type(exc).__name__}") from None
            try:  # no banner: it fails in paramiko's thread, seen here as no session
                server_key = transport.get_remote_server_key()
            except paramiko.SSHException:
                raise DestinationError(f"{self.description}: SSH handshake failed: no SSH "
                                       f"banner from the server within {timeout:g} s"
                                       ) from None
            expected = known.get(server_key.get_name())
            if expected is None or expected.asbytes() != server_key.asbytes():
                raise DestinationError(
                    f"{self.description}: host key mismatch: the server shows "
                    f"{server_key.get_name()} {fingerprint(server_key)}, which known_hosts "
                    f"does not hold for {self._host_name()}: refused (the server's key "
                    "changed, or someone is in between)")
            try:
                transport.auth_publickey(self.spec.user, client_key)
            except paramiko.AuthenticationException:
                raise DestinationError(f"{self.description}: the server refused the key of "
                                       f"user {self.spec.user} (authorized_keys?)") from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise DestinationError(f"{self.description}: authentication failed: "
                                       f"{exc}") from None
            if not transport.is_authenticated():
                raise DestinationError(f"{self.description}: the server asks for more than "
                                       "a key: only key-based authentication is used")
            try:
                client = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise DestinationError(f"{self.description}: no SFTP service: {exc}") from None
            assert client is not None
            channel = client.get_channel()
            if channel is not None:  # a stalled server must not hold the daemon's loop
                channel.settimeout(timeout)
            try:
                yield client
            finally:
                client.close()
        finally:
            transport.close()

    # --- Destination ----------------------------------------------------------------------

    def present(self, names: Sequence[str]) -> bool:
        return True  # what the store says was uploaded is trusted: no connection for this

    def check(self) -> str:
        with self.session() as client:
            try:
                client.stat(self.spec.path)
            except OSError as exc:
                raise DestinationError(f"{self.description}: folder {self.spec.path}: "
                                       f"{exc.strerror or exc}") from None
        return f"{self.description}: host key verified, logged in, folder present"

    def _remove_stale(self, client: Any, files: Sequence[RenderedFile]) -> None:
        """The unfinished copies an export of this host killed before the rename left."""
        names = {f.name for f in files}
        for entry in client.listdir(self.spec.path):
            if any(leftovers.is_stale(name, entry, PART) for name in names):
                with contextlib.suppress(OSError):
                    client.remove(posixpath.join(self.spec.path, entry))

    def deliver(self, files: Sequence[RenderedFile], *, numbered: str | None = None) -> None:
        import paramiko

        with self.session() as client:
            uploaded: list[tuple[str, str]] = []
            try:
                self._remove_stale(client, files)
                for file in files:
                    temp = posixpath.join(self.spec.path, _temp_name(file.name))
                    with client.open(temp, "wb") as remote:
                        client.chmod(temp, self.mode)  # before any byte is in it
                        remote.write(file.content)
                    uploaded.append((temp, posixpath.join(self.spec.path, file.name)))
                for temp, final in uploaded:
                    client.posix_rename(temp, final)
                uploaded.clear()
            except (OSError, paramiko.SSHException, EOFError) as exc:
                detail = getattr(exc, "strerror", None) or exc or type(exc).__name__
                name = getattr(exc, "filename", None)
                raise DestinationError(f"{self.description}: {detail}"
                                       f"{f' ({name})' if name else ''}") from None
            finally:
                for temp, _ in uploaded:  # a failure: the previous files stay
                    with contextlib.suppress(OSError):
                        client.remove(temp)
