"""Secrets are read by reference only, and a file others can read is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from badged.config.errors import SecretError
from badged.config.model import CredentialSecret, FileSecret
from badged.config.secrets import read_hex_key, read_secret


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_private_file_is_read(tmp_path: Path) -> None:
    write(tmp_path / "k", "00112233445566778899aabbccddeeff\n", 0o600)
    key = read_hex_key(FileSecret(file="k"), tmp_path, {16})
    assert key == bytes.fromhex("00112233445566778899AABBCCDDEEFF")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_file_is_refused(tmp_path: Path, mode: int) -> None:
    write(tmp_path / "k", "00" * 16, mode)
    with pytest.raises(SecretError, match=rf"readable by group or others \(mode {mode:04o}\): "
                       "chmod 600 it"):
        read_secret(FileSecret(file="k"), tmp_path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="No such file"):
        read_secret(FileSecret(file="absent"), tmp_path)


def test_credential_from_credentials_directory(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "smtp", "s3cret\n", 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret(CredentialSecret(credential="smtp"), Path("/")) == b"s3cret"


def test_credential_without_directory(monkeypatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(SecretError, match=r"\$CREDENTIALS_DIRECTORY is not set"):
        read_secret(CredentialSecret(credential="smtp"), Path("/"))


def test_key_of_wrong_length(tmp_path: Path) -> None:
    write(tmp_path / "k", "0011", 0o600)
    with pytest.raises(SecretError, match="2 bytes, expected 16"):
        read_hex_key(FileSecret(file="k"), tmp_path, {16})
