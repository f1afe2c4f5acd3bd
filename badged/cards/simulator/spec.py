"""What a simulated card holds: its identity, its PICC key and its applications with their
keys and files, as the engine serves them (built from a card file by `cardfile.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from badged.cards.desfire.info import AccessRights, CommMode
from badged.cards.desfire.keys import DesfireKey, KeyType

DEFAULT_ATR = bytes.fromhex("3B8180018080")
MAX_FILE_SIZE = 8192


@dataclass(frozen=True)
class FileSpec:
    file_no: int
    comm: CommMode
    access: AccessRights
    data: bytes


@dataclass(frozen=True)
class AppSpec:
    aid: int
    key_type: KeyType
    key_settings: int
    keys: tuple[DesfireKey, ...]
    files: tuple[FileSpec, ...]

    def file(self, file_no: int) -> FileSpec | None:
        return next((f for f in self.files if f.file_no == file_no), None)


@dataclass(frozen=True)
class VersionSpec:
    """GetVersion content; the defaults describe an 4 KB EV1 (storage byte 0x18)."""

    hardware: bytes = bytes.fromhex("04010101001805")
    software: bytes = bytes.fromhex("04010101041805")
    batch: bytes = bytes.fromhex("BA5E1D8040")
    production: bytes = bytes.fromhex("2619")  # week 26 of 2019, BCD as on real cards


@dataclass(frozen=True)
class CardSpec:
    name: str
    uid: bytes
    random_uid: bool = False
    picc_key: DesfireKey = field(default_factory=lambda: DesfireKey(KeyType.DES, bytes(8)))
    picc_key_settings: int = 0x0F
    applications: tuple[AppSpec, ...] = ()
    atr: bytes = DEFAULT_ATR
    version: VersionSpec = field(default_factory=VersionSpec)
    free_memory: int | None = None

    def application(self, aid: int) -> AppSpec | None:
        return next((a for a in self.applications if a.aid == aid), None)

    @property
    def computed_free_memory(self) -> int:
        """Stated free memory, else capacity minus files rounded to 32-byte blocks."""
        if self.free_memory is not None:
            return self.free_memory
        capacity = 1 << (self.version.hardware[5] >> 1)
        used = sum(-(-len(f.data) // 32) * 32 for a in self.applications for f in a.files)
        return max(0, capacity - used)
