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

from ..config.model import PICC_AID, CardProfile, CsnSource, Decode, Meaning, ProfileApplication
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
        # An ESCN file is 16 bytes: a longer answer is not a UUID with something after it
        # (a profile that wants part of a file says so with `length`).
        if len(data) != 16:
            raise DecodeError(f"{len(data)} bytes is not a UUID (16 bytes)")
        text = str(uuid.UUID(bytes=data))
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
        self._plans: dict[tuple[str, int | None], tuple[AuthMode, list[tuple[Any, CommMode]]]] = {}

    def _plan(self, app: ProfileApplication, uid_key: int | None
              ) -> tuple[AuthMode, list[tuple[Any, CommMode]]]:
        """How an application is read (the same for every card): its authentication mode
        and its files with their communication modes, grouped by key so each distinct key
        authenticates once: free files first, read before any authentication (a free file
        is then answered plain by every card, whatever its communication setting and
        however a card treats free access inside a session), then the GetCardUID key's
        files, so its session also serves GetCardUID."""
        key = (app.aid, uid_key)
        if (plan := self._plans.get(key)) is None:
            order = sorted(app.files,
                           key=lambda f: (f.read_key != "free", f.read_key != uid_key))
            plan = self._plans[key] = (AuthMode(app.effective_auth.value), [
                (f, CommMode.PLAIN if f.read_key == "free" else CommMode.parse(f.comm.value))
                for f in order])
        return plan

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

        uid_auth = profile.csn.card_uid_auth if profile.csn.source is CsnSource.CARD_UID else None
        if uid_auth is None and random_uid:
            self._refuse_random_uid(reader, uid)
        # The real UID comes first, whatever the order of the applications: a key
        # diversified from the UID must never be derived from a random id.
        apps = list(enumerate(profile.applications))
        csn = uid
        version_wanted = profile.read_version
        if uid_auth is not None and uid_auth.aid == PICC_AID:
            card.select_application(PICC_AID)
            if version_wanted:
                read_version()  # before authenticating: the reply is then plain
                version_wanted = False
            picc = profile.picc
            assert picc is not None  # the config rules make sure of it
            card.authenticate(uid_auth.key_no,
                              self.keyring.key_for(PICC_AID, uid_auth.key_no, uid),
                              AuthMode(picc.effective_auth.value))
            csn = card.get_card_uid()
            uid_auth = None
        elif uid_auth is not None:
            apps.sort(key=lambda item: item[1].aid != uid_auth.aid)
        # GetVersion runs right after a SelectApplication: a card left on the reader may
        # still be in an authenticated session from an earlier read, and would then MAC
        # the reply; selecting ends any session, at no extra APDU when there is an app.
        if version_wanted and not apps:
            card.select_application(PICC_AID)
            read_version()
        files: list[tuple[int, FileValue]] = []
        for n, (index, app) in enumerate(apps):
            wants_uid = uid_auth is not None and uid_auth.aid == app.aid
            found: list[FileValue] = []
            real_uid = self._read_application(
                card,
                app,
                csn,
                found,
                uid_key=uid_auth.key_no if wants_uid and uid_auth else None,
                on_selected=read_version if version_wanted and n == 0 else None,
            )
            files += [(index, f) for f in found]
            if real_uid is not None:
                csn = real_uid
        files.sort(key=lambda item: item[0])  # the profile's order of applications
        values = [f for _, f in files]
        desfire = _version_json(versions[0]) if versions else None
        by_meaning = {f.meaning: f.value for f in values}
        return CardRead(
            reader=reader,
            atr=atr.hex().upper(),
            **csn_forms(csn),
            random_uid=random_uid,
            desfire=desfire,
            crous_number=by_meaning.get(Meaning.CROUS_NUMBER.value),
            escn=by_meaning.get(Meaning.ESCN.value),
            files=values,
        )

    def _refuse_random_uid(self, reader: str, uid: bytes) -> None:
        """A random-UID card, a key derived from the UID, and no way to the real UID: say
        so, rather than fail an authentication with a key derived from the random id."""
        for app in self.profile.applications:
            for f in app.files:
                if f.read_key != "free" and self.keyring.from_uid(app.aid, f.read_key):
                    raise CardReadError(
                        reader, f"random-UID card (id {uid.hex().upper()}): key "
                        f"{f.read_key} of application {app.aid} is diversified from the "
                        "real UID, which this profile does not read: set csn: {source: "
                        "card_uid, card_uid_auth: {aid, key_no}}", reason="profile")

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
        mode, order = self._plan(app, uid_key)
        authenticated: int | None = None
        real_uid = None
        for f, comm in order:  # free files first: read with no session open
            if f.read_key != "free" and authenticated is None and uid_key is not None:
                # The real UID before any keyed file: its key may be diversified from it.
                card.authenticate(uid_key, self.keyring.key(app, uid_key, uid), mode)
                authenticated, real_uid = uid_key, card.get_card_uid()
            if f.read_key != "free" and f.read_key != authenticated:
                key = self.keyring.key(app, f.read_key, real_uid or uid)
                card.authenticate(f.read_key, key, mode)
                authenticated = f.read_key
            data = card.read_data(f.id, f.offset, f.length, comm)
            value = decode(data, f.effective_decode, f.meaning)
            out.append(FileValue(app.aid, f.id, f.meaning.value, value))
        if uid_key is not None and real_uid is None:  # only free files: GetCardUID last
            card.authenticate(uid_key, self.keyring.key(app, uid_key, uid), mode)
            real_uid = card.get_card_uid()
        return real_uid
