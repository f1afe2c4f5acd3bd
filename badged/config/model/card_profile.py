"""The files of `card-profiles/` (docs/contracts.md): what is on a card and how to read it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from .common import Aid, Model
from .references import KeyRef


class Technology(StrEnum):
    DESFIRE_EV1 = "desfire-ev1"


class KeyType(StrEnum):
    AES = "aes"
    TK3DES = "3k3des"
    TDES2K = "2k3des"
    DES = "des"


class AuthMode(StrEnum):
    AES = "aes"
    ISO = "iso"
    LEGACY = "legacy"


DEFAULT_AUTH = {KeyType.AES: AuthMode.AES, KeyType.TK3DES: AuthMode.ISO,
                KeyType.TDES2K: AuthMode.ISO, KeyType.DES: AuthMode.LEGACY}
ALLOWED_AUTH = {KeyType.AES: {AuthMode.AES}, KeyType.TK3DES: {AuthMode.ISO},
                KeyType.TDES2K: {AuthMode.ISO, AuthMode.LEGACY},
                KeyType.DES: {AuthMode.ISO, AuthMode.LEGACY}}


class CommMode(StrEnum):
    PLAIN = "plain"
    MAC = "mac"
    ENCIPHERED = "enciphered"


class Meaning(StrEnum):
    CROUS_NUMBER = "crous_number"
    ESCN = "escn"
    RAW = "raw"


class Decode(StrEnum):
    ASCII = "ascii"
    BCD = "bcd"
    HEX = "hex"
    UUID = "uuid"


DEFAULT_DECODE = {Meaning.CROUS_NUMBER: Decode.ASCII, Meaning.ESCN: Decode.UUID,
                  Meaning.RAW: Decode.HEX}


KeyNo = Annotated[int, Field(ge=0, le=13)]


class ProfileFile(Model):
    """One file to read in an application, and what its content means."""

    id: Annotated[int, Field(ge=0, le=31)] = Field(description=(
        "File number in the application (0-31)."))
    comm: CommMode = Field(description="Communication mode of the file: plain, mac or enciphered.")
    read_key: KeyNo | Literal["free"] = Field(description=(
        "Key number that reads the file, or free."))
    offset: Annotated[int, Field(ge=0, lt=1 << 24)] = Field(0, description="First byte to read.")
    length: Annotated[int, Field(ge=0, lt=1 << 24)] = Field(0, description=(
        "Bytes to read; 0 reads the whole file."))
    meaning: Meaning = Field(Meaning.RAW, description=(
        "What the content is: crous_number, escn or raw (named in the CardRead)."))
    decode: Decode | None = Field(None, description=(
        "How to decode the bytes: ascii, bcd, hex or uuid (default from the meaning)."))

    @property
    def effective_decode(self) -> Decode:
        return self.decode or DEFAULT_DECODE[self.meaning]


class ProfileApplication(Model):
    aid: Aid = Field(description=(
        "Application id: 3 bytes as 6 hex digits, MSB first as people write it."))
    key_type: KeyType = Field(KeyType.AES, description=(
        "Key type of the application: aes, 3k3des, 2k3des or des."))
    keys: dict[KeyNo, KeyRef] = Field({}, description=(
        "Key number → key reference ({file: …}, {credential: …}, {diversify: …} or {sam: …}); "
        "never a literal value."))
    auth: AuthMode | None = Field(None, description=(
        "Authentication command: aes (AA), iso (1A) or legacy (0A); default from key_type."))
    files: list[ProfileFile] = Field(min_length=1, description=(
        "The files to read in this application."))

    @property
    def effective_auth(self) -> AuthMode:
        return self.auth or DEFAULT_AUTH[self.key_type]


class CsnSource(StrEnum):
    UID = "uid"
    CARD_UID = "card_uid"


PICC_AID = "000000"


class ProfilePicc(Model):
    """The card-level (PICC) master key, for a profile that reveals the real UID of a
    random-UID card with it alone (`card_uid_auth: {aid: "000000", key_no: 0}`)."""

    key_type: KeyType = Field(KeyType.AES, description="Type of the PICC master key.")
    keys: dict[KeyNo, KeyRef] = Field(min_length=1, description=(
        "Key 0, the PICC master key, by reference (file, credential, diversify)."))
    auth: AuthMode | None = Field(None, description=(
        "Authentication command: aes | iso | legacy; default from key_type."))

    @property
    def effective_auth(self) -> AuthMode:
        return self.auth or DEFAULT_AUTH[self.key_type]


class CardUidAuth(Model):
    """Which key opens GetCardUID: one of an application's, or with `aid: "000000"` the
    PICC master key of the profile's `picc:` (an application-less step)."""

    aid: Aid = Field(description=(
        'Application whose key opens GetCardUID; "000000": the PICC master key (picc).'))
    key_no: KeyNo = Field(description="Key number that opens GetCardUID.")


class CsnSpec(Model):
    source: CsnSource = Field(CsnSource.UID, description=(
        "Where the CSN comes from: uid (FF CA 00 00 00) or card_uid (GetCardUID after "
        "authentication, for random-UID cards)."))
    card_uid_auth: CardUidAuth | None = Field(None, description=(
        "With source card_uid: which application key opens GetCardUID."))


class CardProfile(Model):
    """What is on a card and how to read it."""

    technology: Technology = Field(Technology.DESFIRE_EV1, description="Card technology.")
    csn: CsnSpec = Field(CsnSpec(), description="How to read the card's serial number.")
    read_version: bool = Field(False, description=(
        "Whether to read GetVersion (3 more APDUs per read)."))
    picc: ProfilePicc | None = Field(None, description=(
        "The PICC master key, to read the real UID of a random-UID card with it alone."))
    applications: list[ProfileApplication] = Field([], description=(
        "The applications to read, in order."))
