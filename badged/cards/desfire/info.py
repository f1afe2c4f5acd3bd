"""Structures the card reports (version, file and key settings), parsed and built.

Both directions live here so that the reader and the simulator agree on the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

__all__ = [
    "ACCESS_FREE",
    "ACCESS_NEVER",
    "AccessRights",
    "AuthMode",
    "CommMode",
    "FileSettings",
    "FileType",
    "KeySettings",
    "VersionInfo",
    "VersionPart",
]

ACCESS_FREE = 0xE
ACCESS_NEVER = 0xF


class CommMode(IntEnum):
    """File communication setting as the card encodes it (2 also means plain)."""

    PLAIN = 0
    MAC = 1
    ENCIPHERED = 3

    @classmethod
    def parse(cls, value: CommMode | str | int) -> CommMode:
        if isinstance(value, CommMode):
            return value
        if isinstance(value, str):
            names = {"plain": cls.PLAIN, "mac": cls.MAC, "enciphered": cls.ENCIPHERED}
            try:
                return names[value]
            except KeyError:
                raise ValueError(
                    f"comm mode must be plain, mac or enciphered, not {value!r}"
                ) from None
        if value & 3 == 2:
            return cls.PLAIN
        return cls(value & 3)

    @property
    def label(self) -> str:
        return {0: "plain", 1: "mac", 3: "enciphered"}[self.value]


class AuthMode(StrEnum):
    """Which authentication command: AES (AA), ISO (1A) or legacy (0A)."""

    AES = "aes"
    ISO = "iso"
    LEGACY = "legacy"


class FileType(IntEnum):
    STANDARD = 0
    BACKUP = 1
    VALUE = 2
    LINEAR_RECORD = 3
    CYCLIC_RECORD = 4


@dataclass(frozen=True)
class AccessRights:
    """Four nibbles: a key number 0..13, 0xE free, 0xF never."""

    read: int
    write: int
    read_write: int
    change: int

    @classmethod
    def from_wire(cls, data: bytes) -> AccessRights:
        v = int.from_bytes(data, "little")
        return cls((v >> 12) & 0xF, (v >> 8) & 0xF, (v >> 4) & 0xF, v & 0xF)

    def to_wire(self) -> bytes:
        v = (self.read << 12) | (self.write << 8) | (self.read_write << 4) | self.change
        return v.to_bytes(2, "little")

    @staticmethod
    def label(nibble: int) -> str:
        return {ACCESS_FREE: "free", ACCESS_NEVER: "never"}.get(nibble, str(nibble))


# GetFileSettings length per EV1 file type: type, comm, access (4), then data files a
# 3-byte size; value files lower and upper limits, limited credit (4 bytes each) and its
# flag; record files record size, max and current records (3 bytes each).
_SETTINGS_LENGTH = {
    FileType.STANDARD: 7,
    FileType.BACKUP: 7,
    FileType.VALUE: 17,
    FileType.LINEAR_RECORD: 13,
    FileType.CYCLIC_RECORD: 13,
}


@dataclass(frozen=True)
class FileSettings:
    """``size``: a data file's size, a record file's record size (None for value files)."""

    file_type: int
    comm: CommMode
    access: AccessRights
    size: int | None
    raw: bytes

    @classmethod
    def from_wire(cls, data: bytes) -> FileSettings:
        if len(data) < 4:
            raise ValueError(f"file settings need at least 4 bytes, got {len(data)}")
        expected = _SETTINGS_LENGTH.get(data[0])
        if expected is None:
            raise ValueError(f"file type {data[0]:#04x} is not an EV1 file type (0 to 4)")
        if len(data) != expected:
            kind = FileType(data[0]).name.lower().replace("_", " ")
            raise ValueError(f"{kind} file settings are {expected} bytes, got {len(data)}")
        size = None if data[0] == FileType.VALUE else int.from_bytes(data[4:7], "little")
        return cls(data[0], CommMode.parse(data[1]), AccessRights.from_wire(data[2:4]), size, data)

    @staticmethod
    def data_file_wire(comm: CommMode, access: AccessRights, size: int) -> bytes:
        return bytes([FileType.STANDARD, comm]) + access.to_wire() + size.to_bytes(3, "little")


@dataclass(frozen=True)
class KeySettings:
    settings: int
    key_count: int
    crypto: str  # "des/2k3des", "3k3des" or "aes" (from the max-keys byte's high bits)

    @classmethod
    def from_wire(cls, data: bytes) -> KeySettings:
        if len(data) != 2:
            raise ValueError(f"key settings are 2 bytes, got {len(data)}")
        crypto = {0x80: "aes", 0x40: "3k3des"}.get(data[1] & 0xC0, "des/2k3des")
        return cls(data[0], data[1] & 0x0F, crypto)


@dataclass(frozen=True)
class VersionPart:
    vendor_id: int
    type: int
    subtype: int
    major: int
    minor: int
    storage_byte: int
    protocol: int

    @property
    def storage_size(self) -> int:
        """Bytes: ``1 << (b >> 1)``; an odd byte means "between that and twice it"."""
        return 1 << (self.storage_byte >> 1)

    @property
    def generation(self) -> str:
        return {0x00: "D40", 0x01: "EV1", 0x12: "EV2", 0x33: "EV3"}.get(
            self.major, f"major {self.major:#04x}"
        )


@dataclass(frozen=True)
class VersionInfo:
    """GetVersion: hardware and software parts, then UID, batch, production week/year.

    Week and year are the raw bytes (cards write them in BCD, e.g. 0x20 0x19).
    """

    hardware: VersionPart
    software: VersionPart
    uid: bytes
    batch: bytes
    production_week: int
    production_year: int
    raw: bytes

    @classmethod
    def from_wire(cls, data: bytes) -> VersionInfo:
        if len(data) != 28:
            raise ValueError(f"version is 7 + 7 + 14 bytes, got {len(data)}")
        return cls(
            VersionPart(*data[0:7]),
            VersionPart(*data[7:14]),
            bytes(data[14:21]),
            bytes(data[21:26]),
            data[26],
            data[27],
            bytes(data),
        )
