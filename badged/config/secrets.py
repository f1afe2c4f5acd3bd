"""Read secrets from their references, refusing files that others could read.

Only the runtime calls this (a card read, the SMTP sender): `config validate` never needs
the secrets themselves, so Ansible can validate a tree on a host without credentials.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import SecretError
from .model import CredentialSecret, FileSecret

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def secret_path(ref: FileSecret | CredentialSecret, base_dir: Path) -> Path:
    if isinstance(ref, FileSecret):
        return base_dir / ref.file
    directory = os.environ.get(CREDENTIALS_ENV)
    if not directory:
        raise SecretError(f"credential {ref.credential!r}: ${CREDENTIALS_ENV} is not set "
                          "(use LoadCredential= in the unit)")
    return Path(directory) / ref.credential


def read_secret(ref: FileSecret | CredentialSecret, base_dir: Path) -> bytes:
    """The secret's bytes, stripped of surrounding whitespace."""
    path = secret_path(ref, base_dir)
    try:
        st = path.stat()
    except OSError as exc:
        raise SecretError(f"secret file {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"secret file {path} is readable by group or others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}): chmod 600 it")
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise SecretError(f"secret file {path}: {exc.strerror}") from None


def read_hex_key(ref: FileSecret | CredentialSecret, base_dir: Path, lengths: set[int]) -> bytes:
    """A key stored as hex text; its length must fit the key type."""
    raw = read_secret(ref, base_dir)
    text = raw.decode("ascii", "replace").replace(" ", "").replace(":", "")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SecretError(f"key {secret_path(ref, base_dir)}: not hex") from None
    if len(key) not in lengths:
        want = " or ".join(str(n) for n in sorted(lengths))
        raise SecretError(f"key {secret_path(ref, base_dir)}: {len(key)} bytes, expected "
                          f"{want}")
    return key
