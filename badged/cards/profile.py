"""Apply a card profile to a card: the fewest APDUs that give every CSN form and file.

The plan: `FF CA` for the UID (1 APDU), GetVersion only when the profile asks (3), then per
application one SelectApplication, one authentication per distinct read key (2 APDUs
each), GetCardUID where the profile takes the CSN from it, and one ReadData per file.
A typical CROUS card (UID, AES-enciphered CROUS number, plain ESCN) takes 7 APDUs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config.model import CardProfile, CsnSource, Decode, Meaning, ProfileApplication
from .desfire.aid import PICC_AID
from .desfire.commands import DesfireCard, Transmit
from .desfire.errors import DesfireError
from .desfire.info import AuthMode, CommMode, VersionInfo, VersionPart
from .keyring import Keyring


class CardReadError(Exception):
    """A read failed; the message names the reader and, for a card error, the status word."""

    def __init__(self, reader: str, detail: str, *, reason: str = "card") -> None:
        # A PcscError's text already starts with "reader '…': ": name the reader once.
        detail = detail.removeprefix(f"reader {reader!r}: ")
        self.reader, self.detail, self.reason = reader, detail, reason
        super().__init__(f"reader {reader!r}: {detail}")


class DecodeError(ValueError):
    """A file's content does not fit its declared meaning (e.g. a CROUS number not digits)."""


@dataclass(frozen=True)
class FileValue:
    aid: str
    id: int
    meaning: str
    value: str


@dataclass
class CardRead:
    """One card read (docs/contracts.md, CardRead): the contract of `badged card read --json`."""

    reader: str
    atr: str
    csn: str
    csn_reversed: str
    csn_decimal: str
    csn_reversed_decimal: str
    random_uid: bool
    desfire: dict[str, Any] | None
    crous_number: str | None
    escn: str | None
    files: list[FileValue] = field(default_factory=list)
    person: dict[str, Any] | None = None
    apdus: int = 0
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def csn_forms(csn: bytes) -> dict[str, str]:
    """The four CSN forms consumers use: hex, byte-reversed hex, and both as decimal."""
    reversed_csn = csn[::-1]
    return {
        "csn": csn.hex().upper(),
        "csn_reversed": reversed_csn.hex().upper(),
        "csn_decimal": str(int.from_bytes(csn, "big")),
        "csn_reversed_decimal": str(int.from_bytes(reversed_csn, "big")),
    }


def decode(data: bytes, how: Decode, meaning: Meaning) -> str:
    """A file's bytes as text: ASCII (NUL padding dropped), BCD (F padding), hex or UUID."""
    if how is Decode.UUID:
        if len(data) < 16:
            raise DecodeError(f"{len(data)} bytes cannot hold a UUID (16)")
        text = str(uuid.UUID(bytes=data[:16]))
    elif how is Decode.HEX:
        text = data.hex().upper()
    elif how is Decode.BCD:
        text = data.hex().upper().rstrip("F")
    else:
        try:
            text = data.rstrip(b"\x00").decode("ascii").strip()
        except UnicodeDecodeError:
            raise DecodeError("not ASCII text") from None
    if meaning is Meaning.CROUS_NUMBER and not text.isdigit():
        raise DecodeError(f"{text!r} is not a CROUS card number (decimal digits)")
    return text


def _version_json(v: VersionInfo) -> dict[str, Any]:
    def part(p: VersionPart) -> dict[str, Any]:
        return {
            "vendor_id": p.vendor_id,
            "type": p.type,
            "subtype": p.subtype,
            "version": f"{p.major}.{p.minor}",
            "generation": p.generation,
            "storage_bytes": p.storage_size,
        }

    return {
        "hardware": part(v.hardware),
        "software": part(v.software),
        "batch": v.batch.hex().upper(),
        "production": f"week {v.production_week:02X} of 20{v.production_year:02X}",
    }


def _is_random_id(uid: bytes) -> bool:
    return len(uid) == 4 and uid[0] == 0x08


class ProfileReader:
    """A loaded profile: keys resolved now (key errors surface before any tap)."""

    def __init__(self, profile: CardProfile, base_dir: Path) -> None:
        self.profile = profile
        self.keyring = Keyring(profile, base_dir)

    def read(self, transmit: Transmit, *, reader: str, atr: bytes) -> CardRead:
        """Read one present card; DESFire and decoding failures become CardReadError."""
        started = time.perf_counter()
        card = DesfireCard(transmit)
        try:
            result = self._read(card, reader, atr)
        except DesfireError as exc:
            raise CardReadError(reader, str(exc)) from exc
        except DecodeError as exc:
            raise CardReadError(reader, f"bad file content: {exc}", reason="decode") from exc
        result.apdus = card.apdu_count
        result.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return result

    def _read(self, card: DesfireCard, reader: str, atr: bytes) -> CardRead:
        profile = self.profile
        uid = card.get_uid()
        random_uid = _is_random_id(uid)
        versions: list[VersionInfo] = []

        def read_version() -> None:
            versions.append(card.get_version())

        # GetVersion runs right after a SelectApplication: a card left on the reader may
        # still be in an authenticated session from an earlier read, and would then MAC
        # the reply; selecting ends any session, at no extra APDU when there is an app.
        if profile.read_version and not profile.applications:
            card.select_application(PICC_AID)
            read_version()
        csn = uid
        uid_auth = profile.csn.card_uid_auth if profile.csn.source is CsnSource.CARD_UID else None
        files: list[FileValue] = []
        for i, app in enumerate(profile.applications):
            wants_uid = uid_auth is not None and uid_auth.aid == app.aid
            real_uid = self._read_application(
                card,
                app,
                csn,
                files,
                uid_key=uid_auth.key_no if wants_uid else None,
                on_selected=read_version if profile.read_version and i == 0 else None,
            )
            if real_uid is not None:
                csn = real_uid
        desfire = _version_json(versions[0]) if versions else None
        by_meaning = {f.meaning: f.value for f in files}
        return CardRead(
            reader=reader,
            atr=atr.hex().upper(),
            **csn_forms(csn),
            random_uid=random_uid,
            desfire=desfire,
            crous_number=by_meaning.get(Meaning.CROUS_NUMBER.value),
            escn=by_meaning.get(Meaning.ESCN.value),
            files=files,
        )

    def _read_application(
        self,
        card: DesfireCard,
        app: ProfileApplication,
        uid: bytes,
        out: list[FileValue],
        uid_key: int | None,
        on_selected: Callable[[], None] | None = None,
    ) -> bytes | None:
        card.select_application(app.aid)
        if on_selected is not None:
            on_selected()
        mode = AuthMode(app.effective_auth.value)
        # Group reads by key so each distinct key authenticates once; free files first,
        # then the GetCardUID key's files, so its session also serves GetCardUID.
        order = sorted(app.files, key=lambda f: (f.read_key != "free", f.read_key != uid_key))
        authenticated: int | None = None
        real_uid = None
        if uid_key is not None and all(f.read_key != uid_key for f in app.files):
            card.authenticate(uid_key, self.keyring.key(app, uid_key, uid), mode)
            authenticated, real_uid = uid_key, card.get_card_uid()
        for f in order:
            if f.read_key != "free" and f.read_key != authenticated:
                key = self.keyring.key(app, f.read_key, real_uid or uid)
                card.authenticate(f.read_key, key, mode)
                authenticated = f.read_key
                if f.read_key == uid_key:
                    real_uid = card.get_card_uid()
            comm = CommMode.PLAIN if f.read_key == "free" else CommMode.parse(f.comm.value)
            data = card.read_data(f.id, f.offset, f.length, comm)
            value = decode(data, f.effective_decode, f.meaning)
            out.append(FileValue(app.aid, f.id, f.meaning.value, value))
        return real_uid
