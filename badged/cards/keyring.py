"""A card profile's keys, resolved from their references.

Static keys and diversification masters are read once, when the profile is loaded, so a
missing or too-open key file is reported before any card is tapped; diversified keys are
derived per card (AN10922) from the card's UID and the application's AID.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..config.errors import SecretError
from ..config.model import (
    PICC_AID,
    CardProfile,
    CredentialSecret,
    DiversifiedKey,
    FileSecret,
    ProfileApplication,
    SamKey,
)
from ..config.secrets import read_hex_key
from .desfire.aid import aid_to_wire
from .desfire.crypto import an10922_aes128
from .desfire.keys import DesfireKey, KeyType

DES_LENGTHS = {KeyType.DES: {8, 16}}


def diversification_input(parts: list[str], uid: bytes, aid: str) -> bytes:
    """AN10922 input from its configured parts: `uid`, `aid` (LSB first), `aid_msb`, hex.

    The 0x01 prefix and the padding are added by the diversification itself.
    """
    out = b""
    for part in parts:
        if part == "uid":
            out += uid
        elif part == "aid":
            out += aid_to_wire(aid)
        elif part == "aid_msb":
            out += bytes.fromhex(aid)
        else:
            out += bytes.fromhex(part)
    return out


class Keyring:
    """The keys of one profile: `key(app, key_no, uid)` gives the key to authenticate with."""

    def __init__(self, profile: CardProfile, base_dir: Path) -> None:
        self._static: dict[tuple[str, int], DesfireKey] = {}
        self._masters: dict[tuple[str, int], bytes] = {}
        self._diversified: dict[tuple[str, int], DiversifiedKey] = {}
        self._base_dir = base_dir
        for app in profile.applications:
            self._load(app.aid, app.key_type.value, app.keys)
        if profile.picc is not None:
            self._load(PICC_AID, profile.picc.key_type.value, profile.picc.keys)

    def _load(self, aid: str, key_type_name: str, keys: Mapping[int, object]) -> None:
        key_type = KeyType(key_type_name)
        lengths = DES_LENGTHS.get(key_type, {key_type.key_length})
        for key_no, ref in keys.items():
            slot = (aid, key_no)
            if isinstance(ref, FileSecret | CredentialSecret):
                self._static[slot] = DesfireKey(key_type,
                                                read_hex_key(ref, self._base_dir, lengths))
            elif isinstance(ref, DiversifiedKey):
                self._masters[slot] = read_hex_key(ref.diversify.master, self._base_dir, {16})
                self._diversified[slot] = ref
            elif isinstance(ref, SamKey):  # refused by the config rules already
                where = "PICC" if aid == PICC_AID else f"application {aid}"
                raise SecretError(f"{where} key {key_no}: reading through a SAM is not "
                                  "supported yet")

    def from_uid(self, aid: str, key_no: int) -> bool:
        """This key is derived from the card's UID (AN10922 input with `uid`)."""
        ref = self._diversified.get((aid, key_no))
        return ref is not None and "uid" in ref.diversify.input

    def key(self, app: ProfileApplication, key_no: int, uid: bytes) -> DesfireKey:
        return self.key_for(app.aid, key_no, uid)

    def key_for(self, aid: str, key_no: int, uid: bytes) -> DesfireKey:
        """The key `key_no` of application `aid` (PICC_AID: the PICC's) for this UID."""
        slot = (aid, key_no)
        if slot in self._static:
            return self._static[slot]
        ref = self._diversified[slot]
        data = diversification_input(ref.diversify.input, uid, aid)
        return DesfireKey(KeyType.AES, an10922_aes128(self._masters[slot], data))
