"""A school's door-system exports (`access_exports:` of a school file, see
docs/access-control.md): format, CSN form, schedule and destination.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from .common import Id, Model, Name, ScheduleText
from .references import SecretRef


class AccessFormat(StrEnum):
    """The door-system file formats (docs/access-control.md)."""

    TIL = "til"
    SYNCHRONIC = "synchronic"
    P2S = "p2s"
    GENERIC = "generic"


class CsnForm(StrEnum):
    """How the CSN is written in the card column: the form the door system's readers send."""

    HEX = "hex"
    REVERSED_HEX = "reversed_hex"
    DECIMAL = "decimal"
    REVERSED_DECIMAL = "reversed_decimal"


def _file_mode(value: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3}", value):
        raise ValueError(f"{value!r} is not an octal file mode (e.g. '0640')")
    if int(value, 8) & 0o007:
        raise ValueError(f"mode {value} lets others read or write the file: the cards of "
                         "the school are never world-readable (e.g. '0640')")
    return value.zfill(4)


def _file_name(value: str) -> str:
    if "/" in value or "\0" in value or value.startswith(".") or value != value.strip():
        raise ValueError(f"{value!r} is not a plain file name (no '/', no leading '.')")
    return value


FileMode = Annotated[str, AfterValidator(_file_mode)]
PlainFileName = Annotated[str, StringConstraints(min_length=1, max_length=200),
                          AfterValidator(_file_name)]


class DirectoryDestination(Model):
    """A folder the door system reads: relative paths are under the host's state_dir."""

    path: Name = Field(description=(
        "The folder: absolute (it must exist, e.g. a mounted share) or relative to the host's "
        "state_dir (created)."))
    keep: Annotated[int, Field(ge=1, le=1000)] = Field(5, description=(
        "Versions kept: NAME and NAME.1 … NAME.<keep-1>; for P2S, the numbered files of the "
        "last `keep` deliveries."))
    mode: FileMode = Field("0640", description=(
        "Mode of the files (octal; others may never read them)."))


class SftpDestination(Model):
    """An SFTP server: host key checked against `known_hosts`, key-based auth only."""

    host: Name = Field(description="The SFTP server's host name or address.")
    port: Annotated[int, Field(gt=0, lt=65536)] = Field(22, description="Its SSH port.")
    user: Name = Field(description="The account badged logs in as.")
    key: SecretRef = Field(description=(
        "The private key (unencrypted OpenSSH or PEM, 0600), by reference: {file: PATH} or "
        "{credential: NAME}."))
    known_hosts: SecretRef = Field(description=(
        "A known_hosts file holding the server's host key, by reference; a server showing "
        "another key is refused."))
    path: Name = Field(".", description=(
        "The folder on the server (relative: from the account's home)."))
    mode: FileMode = Field("0640", description=(
        "Mode of the uploaded files (octal; others may never read them)."))
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = Field(10.0, description=(
        "Seconds allowed for each step (connect, handshake, login, each transfer)."))


class AccessDestination(Model):
    """Exactly one of `directory` and `sftp`."""

    directory: DirectoryDestination | None = Field(None, description=(
        "Write the files into a folder the door system reads."))
    sftp: SftpDestination | None = Field(None, description=(
        "Upload the files to the door system's SFTP server."))


class AccessExport(Model):
    """One file (or set of files) of the school's cards for a door system."""

    format: AccessFormat = Field(description=(
        "The door system's file format: til, synchronic, p2s, or generic (a layout)."))
    csn: CsnForm = Field(CsnForm.HEX, description=(
        "How the CSN is written in the card column: hex, reversed_hex, decimal or "
        "reversed_decimal."))
    schedule: ScheduleText = Field(description=(
        "When to run: 'every N minutes|hours|days|weeks', 'every day at HH:MM', 'every "
        "<weekday> at HH:MM' or 'every hour at :MM'."))
    on_change: bool = Field(False, description=(
        "Also run within seconds of a card state change (a lost or stolen card blocked at "
        "once)."))
    destination: AccessDestination = Field(description=(
        "Where the files go: directory or sftp."))
    file_name: PlainFileName | None = Field(None, description=(
        "The file's name (P2S: the end of the numbered names); default: <export name>.csv."))
    layout: Id | None = Field(None, description=(
        "Generic format only: the layout (an id of layouts/) giving the columns."))
    max_lines: Annotated[int, Field(ge=1)] | None = Field(None, description=(
        "P2S only: at most this many lines per file (default 1000)."))
