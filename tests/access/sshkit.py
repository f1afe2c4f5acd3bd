"""A real OpenSSH `sshd` on a loopback port for the SFTP tests: its own host key, config
and authorized key, in a temporary folder; stopped (and its folder kept for the test) at
the end.

    with SshServer(tmp_path / "sshd") as server:      # started, port open
        server.known_hosts(path)                      # a known_hosts line for it
        server.client_key                             # a private key it accepts (0600)

sshd needs an absolute path to its binary and its privilege-separation folder /run/sshd
(scripts/setup.sh test makes it; made here too when we may). Only the user running the
tests may log in (root here: `PermitRootLogin prohibit-password`, keys only).
"""

from __future__ import annotations

import contextlib
import getpass
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path, kind: str = "ed25519") -> Path:
    """A new unencrypted key pair at `path` (private, 0600) and `path.pub`."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", "badged-test", "-f",
                    str(path)], check=True, capture_output=True, timeout=30)
    path.chmod(0o600)
    return path


class SshServer:
    def __init__(self, root: Path, *, user: str | None = None) -> None:
        self.root = root
        self.user = user or getpass.getuser()
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(root / "ssh_host_ed25519_key")
        self.client_key = keygen(root / "client_key")
        self.authorized = root / "authorized_keys"
        self.authorized.write_text((root / "client_key.pub").read_text())
        self.authorized.chmod(0o600)
        self.log = root / "sshd.log"
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {self.authorized}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\n"
            f"AllowUsers {self.user}\nSubsystem sftp internal-sftp\n"
            "LogLevel VERBOSE\nMaxStartups 50\n")

    def known_hosts_line(self) -> str:
        key = (self.root / "ssh_host_ed25519_key.pub").read_text().split()
        return f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n"

    def start(self) -> SshServer:
        if not SSHD.exists():
            raise RuntimeError(f"{SSHD} is missing: install openssh-server "
                               "(scripts/setup.sh test)")
        privsep = Path("/run/sshd")
        if not privsep.is_dir():
            with contextlib.suppress(OSError):
                privsep.mkdir(mode=0o755, parents=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.proc.returncode}):\n"
                                   f"{self.log.read_text(errors='replace')}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd not listening on {self.port}:\n"
                                   f"{self.log.read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
